"""How fast the network turns a 1280x720 photo into 7 frames on the CPU, whole and in tiles.

    python benchmarks/model_speed.py [--weights PATH] [--threads 2] [--repeat 2]

Uses the shipped default weights when they exist (else --weights, else a ModelConfig() network with a
random non-zero head: same cost, meaningless pictures). For each tiling it prints the best of
`repeat` timed runs after one warm-up, the ratio to the target (7 frames from 1280x720 in
<= 2 s on 2 CPU threads), and how far the tiled frames are from the whole-image frames. The fastest
tiling whose frames match the whole image (mean |diff| < 1e-3, 99.9th percentile < 2/255) is the one
to use as the default; with a random network that only checks the blending, so judge the overlap with
trained weights. Run it on an idle machine: beside other work the figures say little.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

# Idle OpenMP threads sleep instead of spinning. On a shared machine (here: beside a training run) a
# spinning thread that lost its core stalls every barrier, which punished many small tiles 2-5x; on an
# idle machine this costs little. Set OMP_WAIT_POLICY=ACTIVE to measure the other way.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
FLOOR_S = 2.0
SETTINGS = [(0, 0), (256, 32), (256, 64), (384, 32), (384, 64), (448, 64), (512, 32), (512, 64), (768, 64)]


def load_network(path: str | None):
    from blur2clip import weights
    from blur2clip.model import Blur2Clip, ModelConfig

    try:
        return weights.load_model(path), f"weights {weights.resolve(path)}"
    except weights.WeightsError as e:
        if path:
            raise
        torch.manual_seed(0)
        model = Blur2Clip(ModelConfig())
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0, 0.05)
        return model.eval(), f"random ModelConfig() network ({e})"


def test_image(w: int, h: int) -> np.ndarray:
    """A real photo scaled to WxH (synthetic texture if ../shared has none), float32 0..1."""
    from PIL import Image

    path = ROOT.parent / "shared" / "data" / "photos" / "kodak24" / "kodim08.png"
    if path.is_file():
        return np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.LANCZOS), np.float32) / 255
    rng = np.random.default_rng(0)
    return rng.random((h, w, 3), dtype=np.float32)


def timed(extractors: list, image, repeat: int) -> tuple[list[float], list[np.ndarray]]:
    """Best seconds of each extractor over `repeat` rounds (after a warm-up round), and its frames.
    Rounds interleave the settings, so a load that comes and goes hits them all alike."""
    frames = [ex(image) for ex in extractors]  # warm-up: allocator, oneDNN kernels
    best = [float("inf")] * len(extractors)
    for _ in range(repeat):
        for i, ex in enumerate(extractors):
            t = time.perf_counter()
            ex(image)
            best[i] = min(best[i], time.perf_counter() - t)
    return best, frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--bf16", action="store_true", help="also time bf16 autocast (CPUs with native bf16)")
    args = ap.parse_args(argv)

    from blur2clip.extract import Extractor, tile_spans

    torch.set_num_threads(args.threads)
    w, h = map(int, args.size.split("x"))
    model, source = load_network(args.weights)
    image = test_image(w, h)
    print(f"{w}x{h}, {args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"torch {torch.__version__}, {source}")
    print(f"floor: 7 frames in <= {FLOOR_S:.1f} s\n")
    print(f"{'tile':>6} {'overlap':>7} {'tiles':>5} {'seconds':>8} {'x floor':>8} "
          f"{'mean|d|':>9} {'p99.9|d|':>9}")

    settings = SETTINGS + ([("bf16", 0)] if args.bf16 else [])
    extractors = [
        Extractor(model=model, device="cpu", precision="bf16" if tile == "bf16" else "fp32",
                  tile=0 if tile == "bf16" else tile, overlap=overlap)
        for tile, overlap in settings
    ]
    times, outputs = timed(extractors, image, args.repeat)
    whole = outputs[0]
    results = []
    for (tile, overlap), seconds, frames in zip(settings, times, outputs):
        d = np.abs(frames - whole)
        mean, p999 = float(d.mean()), float(np.quantile(d[:, ::4, ::4], 0.999))
        ok = tile != "bf16" and mean < 1e-3 and p999 < 2 / 255
        if tile != "bf16":
            results.append((seconds, tile, overlap, ok))
        name = {0: "whole"}.get(tile, str(tile))
        note = "" if ok or tile == "bf16" else "  (differs from whole: not a candidate)"
        n = 1 if tile in (0, "bf16") else len(tile_spans(h, tile, overlap, 16)) * len(
            tile_spans(w, tile, overlap, 16))
        print(f"{name:>6} {overlap:>7} {n:>5} {seconds:8.2f} {seconds / FLOOR_S:8.2f} "
              f"{mean:9.2e} {p999:9.2e}{note}")

    seconds, tile, overlap, _ = min(r for r in results if r[3])
    verdict = "meets" if seconds <= FLOOR_S else "misses"
    print(f"\nbest: {'whole image' if tile == 0 else f'tile {tile}, overlap {overlap}'}: {seconds:.2f} s, "
          f"{seconds / FLOOR_S:.2f}x the {FLOOR_S:.1f} s floor ({verdict} it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
