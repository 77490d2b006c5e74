"""How fast training samples are synthesized: on the CPU, and rendered on a GPU when there is one.

    python benchmarks/synth_speed.py [--count 24] [--workers 0]

The long run's sample (training/long.py: 192 px, 21 frames, its motion statistics) from the training
photos of ../shared/data/photos (textured test pictures when they are absent). Prints samples per second
in one process on one CPU thread, then with `device="cuda"` (the random draws, resizing and JPEG still on
that one thread, the warping and averaging on the GPU) and the ratio, and the largest difference between
the two renderings of the same draws (float rounding; the input's JPEG can round a value to the next
level). --workers N also times the training loader: N processes each driving the GPU (spawned), as
`train --synth-device cuda --workers N` runs them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))
from long import MODEL, SYNTH  # noqa: E402  (the long run's recipe, one place)

from blur2clip.samples import StreamSampler, SyntheticBlur  # noqa: E402
from blur2clip.synth import SynthConfig  # noqa: E402
from blur2clip.train import _worker_init, shut_down  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def photos(tmp: Path) -> list[Path]:
    found = sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if found:
        return found[::max(1, len(found) // 64)]  # a spread over every folder
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(8):  # blocks of colour over gradients, 640x480
        small = rng.random((30, 40, 3))
        Image.fromarray((np.kron(small, np.ones((16, 16, 1))) * 255).astype(np.uint8)).save(tmp / f"{i}.png")
    return sorted(tmp.glob("*.png"))


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")


def rate(ds: SyntheticBlur, count: int, start: int = 1000) -> tuple[float, list]:
    for i in range(2):  # decoded photos cached, the device warm
        ds[i]
    t = time.perf_counter()
    samples = [ds[start + i] for i in range(count)]
    return count / (time.perf_counter() - t), samples


def loader_rate(ds: SyntheticBlur, workers: int, batches: int = 20) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=8, sampler=StreamSampler(), num_workers=workers,
                                         worker_init_fn=_worker_init, multiprocessing_context="spawn")
    it = iter(loader)
    try:
        for _ in range(workers):  # every worker started and made its first batch
            next(it)
        t = time.perf_counter()
        n = sum(len(next(it)[0]) for _ in range(batches))
        return n / (time.perf_counter() - t)
    finally:
        shut_down(it)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = photos(Path(tmp))
        cfg = SynthConfig(size=192, frames=MODEL.frames, **SYNTH)
        cpu_rate, cpu = rate(SyntheticBlur(files, cfg, seed=7), args.count)
        row = {"cpu": cpu_model(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "photos": len(files), "samples_per_s_cpu_1_thread": round(cpu_rate, 2)}
        if torch.cuda.is_available():
            gpu_rate, gpu = rate(SyntheticBlur(files, cfg, seed=7, device="cuda"), args.count)
            row["samples_per_s_cuda"] = round(gpu_rate, 2)
            row["ratio"] = round(gpu_rate / cpu_rate, 2)
            for name in ("blurred", "frames", "clean", "travel"):
                diff = max(float((getattr(a, name) - getattr(b, name)).abs().max()) for a, b in zip(cpu, gpu))
                row[f"max_diff_{name}"] = diff
            if args.workers:
                ds = SyntheticBlur(files, cfg, seed=7, device="cuda")
                row[f"samples_per_s_cuda_{args.workers}_workers"] = round(loader_rate(ds, args.workers), 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
