"""What more frames cost: a 1280x720 photo through the network (default tiling) and on to N frames.

    python benchmarks/frames_speed.py [--threads 2] [--repeat 3] [--frames 21] [--clip 48]

Times, on the CPU, with networks of random weights (the cost does not depend on the values):
  - today's network shape, ModelConfig() (7 frames per pass): the reference;
  - the same network predicting --frames frames per pass (only its head grows);
  - each of them followed by making --clip frames at instants of the exposure (blur2clip.timeline,
    guarded) as uint8, as a clip writer takes them;
  - the travel head (ModelConfig(head="travel")): its middle frame and travel, then 7 and --clip instants
    rendered from them (blur2clip.rendering, exact instants, the still guard decided once).
It prints each figure, its ratio to the reference, and the floors: the network at most 1.3x today's, and
--clip frames at most 2x the time of 7 frames. Ratios are measured in one run, so they hold across
machines; say which CPU they came from (printed first). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name  # noqa: E402
from model_speed import test_image  # noqa: E402


def network(frames: int, head: str = "frames"):
    from blur2clip.model import Blur2Clip, ModelConfig

    torch.manual_seed(0)
    model = Blur2Clip(ModelConfig(frames=frames, head=head))
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--clip", type=int, default=48)
    args = ap.parse_args(argv)

    from blur2clip.extract import Extractor
    from blur2clip.timeline import resample

    torch.set_num_threads(args.threads)
    image = test_image(1280, 720)
    print(f"{cpu_name()}, {args.threads} threads, "
          f"torch {torch.__version__}; 1280x720, default tiling")

    def run(k: int, clip: int | None, head: str = "frames"):
        ex = Extractor(model=network(k, head), device="cpu", precision="fp32")

        def once():
            frames = ex(image, dtype=np.uint8)
            if clip:
                for f in resample(frames, clip):  # made one by one, as a writer takes them
                    np.asarray(f)
        return once

    cases = [("7 frames per pass (today's ModelConfig())", 7, None),
             (f"{args.frames} frames per pass", args.frames, None),
             (f"7 per pass, then {args.clip} instants", 7, args.clip),
             (f"{args.frames} per pass, then {args.clip} instants", args.frames, args.clip),
             ("travel head, 7 instants rendered", args.frames, 7, "travel"),
             (f"travel head, {args.clip} instants rendered", args.frames, args.clip, "travel")]
    fns = [run(*case[1:]) for case in cases]
    for f in fns:
        f()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(args.repeat):  # rounds interleave the cases, so a passing load hits them alike
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    ref = best[0]
    for (name, *_), s in zip(cases, best):
        print(f"{name:<42} {s:6.2f} s  {s / ref:5.2f}x")
    print(f"\nnetwork: {args.frames} frames per pass at {best[1] / ref:.2f}x today's (floor 1.3x)")
    print(f"{args.clip} frames: {best[3] / ref:.2f}x the time of 7 frames (floor 2x)")
    print(f"travel head: {args.clip} instants at {best[5] / best[4]:.2f}x the time of its 7 (floor 2x), "
          f"{best[5] / ref:.2f}x today's 7 frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
