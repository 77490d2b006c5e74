"""CUDA inference against the CPU: the same frames, and the time per 1280x720 photo in fp32, bf16 and fp16.

    python benchmarks/cuda_check.py [WEIGHTS ...]     (the default weights when none is named)

Prints one JSON line per weights file: for each precision the seconds per photo (median of 5 after 2
warm-ups, synchronised), the largest difference from the CPU's fp32 frames, and the peak GPU memory.
Needs a CUDA device; measures the Extractor the command line uses (tiling, blending, conversion).
"""

import json
import statistics
import sys
import time

import numpy as np
import torch

from blur2clip.extract import Extractor


def timed(ex: Extractor, image: np.ndarray, repeats: int = 5) -> tuple[float, np.ndarray]:
    for _ in range(2):
        out = np.asarray(ex(image))
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = np.asarray(ex(image))  # a travel head's frames are rendered here
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    rng = np.random.default_rng(0)
    # A smooth random picture with edges: noise blurred by upsampling, so the network sees structure.
    small = rng.random((45, 80, 3)).astype(np.float32)
    image = np.ascontiguousarray(np.repeat(np.repeat(small, 16, 0), 16, 1))
    for name in sys.argv[1:] or ["default"]:
        torch.set_num_threads(4)
        reference = np.asarray(Extractor(weights=name, device="cpu")(image))
        row = {"weights": name, "gpu": torch.cuda.get_device_name(), "frames": int(reference.shape[0])}
        for precision in ("fp32", "bf16", "fp16"):
            torch.cuda.reset_peak_memory_stats()
            ex = Extractor(weights=name, device="cuda", precision=precision)
            sec, out = timed(ex, image)
            row[precision] = {"s": round(sec, 4), "max_diff_vs_cpu": float(np.abs(out - reference).max()),
                              "mean_diff_vs_cpu": float(np.abs(out - reference).mean()),
                              "peak_mb": round(torch.cuda.max_memory_allocated() / 2**20)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
