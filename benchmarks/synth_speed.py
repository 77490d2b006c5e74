"""How fast training samples are synthesized: on the CPU, and rendered on a GPU when there is one.

    python benchmarks/synth_speed.py [--data ../shared/data/photos] [--count 24] [--workers 0]

The long run's sample (training/long.py: 192 px, 21 frames, its motion statistics) from a spread of the
photos in --data (textured test pictures when it is absent). Prints samples per second
in one process on one CPU thread, then with `device="cuda"` (the random draws, resizing and JPEG still on
that one thread, the warping and averaging on the GPU) and the ratio, and the largest difference between
the two renderings of the same draws (float rounding; the input's JPEG can round a value to the next
level); that line is printed first. --workers N then also times the training loader (training/gpu.py's
sample_rate over the whole photos folder): N processes each driving the GPU (spawned), as
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
from gpu import sample_rate  # noqa: E402
from long import MODEL, SYNTH  # noqa: E402  (the long run's recipe, one place)
from machine import cpu_name  # noqa: E402

from blur2clip.samples import SyntheticBlur  # noqa: E402
from blur2clip.synth import SynthConfig  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def photos(root: Path, tmp: Path) -> list[Path]:
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if found:
        return found[::max(1, len(found) // 64)]  # a spread over every folder
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(8):  # blocks of colour over gradients, 640x480
        small = rng.random((30, 40, 3))
        Image.fromarray((np.kron(small, np.ones((16, 16, 1))) * 255).astype(np.uint8)).save(tmp / f"{i}.png")
    return sorted(tmp.glob("*.png"))


def rate(ds: SyntheticBlur, count: int, start: int = 1000) -> tuple[float, list]:
    for j in range(len(ds.photos)):  # every photo decoded and cached: the synthesis alone is timed
        ds._photo(j)
    for i in range(2):  # the device warm
        ds[i]
    t = time.perf_counter()
    samples = [ds[start + i] for i in range(count)]
    return count / (time.perf_counter() - t), samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=PHOTOS)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        files = photos(args.data, Path(tmp))
        cfg = SynthConfig(size=192, frames=MODEL.frames, **SYNTH)
        cpu_rate, cpu = rate(SyntheticBlur(files, cfg, seed=7), args.count)
        row = {"cpu": cpu_name(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "photos": len(files), "samples_per_s_cpu_1_thread": round(cpu_rate, 2)}
        if torch.cuda.is_available():
            gpu_rate, gpu = rate(SyntheticBlur(files, cfg, seed=7, device="cuda"), args.count)
            row["samples_per_s_cuda"] = round(gpu_rate, 2)
            row["ratio"] = round(gpu_rate / cpu_rate, 2)
            for name in ("blurred", "frames", "clean", "travel"):
                diff = max(float((getattr(a, name) - getattr(b, name)).abs().max()) for a, b in zip(cpu, gpu))
                row[f"max_diff_{name}"] = diff
        print(json.dumps(row), flush=True)
        if torch.cuda.is_available() and args.workers:
            data = args.data if args.data.is_dir() else Path(tmp)
            print(json.dumps({f"samples_per_s_cuda_{args.workers}_workers":
                              round(sample_rate(str(data), 192, args.workers, 15.0, "cuda"), 1)}), flush=True)


if __name__ == "__main__":
    main()
