"""End to end: a blurred JPEG in, a 7-frame MP4 out, timed step by step, with peak memory.

    python benchmarks/clip_speed.py [--weights PATH] [--threads 2] [--skip-24mp]

Two cases, each in a fresh process so that its peak RSS is its own:
  720p: a 1280x720 JPEG -> MP4 (floor: 3 s end to end on 2 CPU threads; the model is loaded once
        beforehand, as a batch run or the CLI's own timing would count it);
  24mp: a 6000x4000 JPEG -> MP4 with the default tiles (floor: 3 GB peak memory), and its time.
The photos are made in a temporary folder (a real blurred GoPro frame when ../shared has one, else a
Kodak photo or synthetic texture, scaled up) and deleted afterwards. Without shipped weights a random
ModelConfig() network stands in (same cost).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Idle OpenMP threads sleep instead of spinning (see model_speed.py): fair figures on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
FLOOR_720P_S = 3.0
FLOOR_24MP_GB = 3.0


def make_photo(path: Path, w: int, h: int) -> Path:
    """A JPEG of WxH: a real blurred photo if there is one, else a sharp one, else texture."""
    from PIL import Image

    candidates = sorted((SHARED / "blurred" / "gopro_blurred").glob("*.png")) + sorted(
        (SHARED / "blurred" / "gopro_blurred").glob("*.jpg")
    ) + sorted((SHARED / "photos" / "kodak24").glob("*.png"))
    if candidates:
        img = Image.open(candidates[0]).convert("RGB").resize((w, h), Image.LANCZOS)
    else:
        rng = np.random.default_rng(0)
        img = Image.fromarray((rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)).resize((w, h))
    img.save(path, quality=90)
    return path


def run_case(photo: Path, weights: str | None, threads: int) -> dict:
    """Runs in the child process: load the extractor, make the clip, report times and peak memory."""
    sys.path.insert(0, str(HERE))
    from model_speed import load_network

    from blur2clip.extract import Extractor
    from blur2clip.job import make_clip

    t = time.perf_counter()
    model, source = load_network(weights)
    extractor = Extractor(model=model, device="cpu", threads=threads)
    load = time.perf_counter() - t
    res = make_clip(photo, photo.with_suffix(".mp4"), extractor=extractor, overwrite=True)
    kb = 1024  # ru_maxrss is in KiB on Linux
    return {
        "source": source,
        "size": f"{res.width}x{res.height}",
        "frames": res.frames,
        "load": load,
        **res.timings,
        "total": res.seconds,
        "tile": extractor.tile,
        "overlap": extractor.overlap,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kb / 2**30,
        "ffmpeg_peak_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kb / 2**30,
        "mp4_mb": photo.with_suffix(".mp4").stat().st_size / 2**20,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-24mp", action="store_true")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = ap.parse_args(argv)

    if args.case:
        print(json.dumps(run_case(Path(args.case), args.weights, args.threads)))
        return 0

    cases = [("720p", 1280, 720)] + ([] if args.skip_24mp else [("24mp", 6000, 4000)])
    results = {}
    with tempfile.TemporaryDirectory(prefix="blur2clip-bench-") as tmp:
        for name, w, h in cases:
            photo = make_photo(Path(tmp) / f"{name}.jpg", w, h)
            cmd = [sys.executable, __file__, "--case", str(photo), "--threads", str(args.threads)]
            if args.weights:
                cmd += ["--weights", args.weights]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            results[name] = r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["process"] = time.perf_counter() - t
            print(f"{name}: {r['size']} -> {r['frames']}-frame MP4 ({r['mp4_mb']:.1f} MB), "
                  f"tile {r['tile']}/{r['overlap']}, {args.threads} threads, {r['source']}")
            print(f"  load {r['load']:.2f} s | decode {r['decode']:.2f} s | model {r['model']:.2f} s | "
                  f"encode {r['encode']:.2f} s | clip total {r['total']:.2f} s "
                  f"(process {r['process']:.1f} s)")
            print(f"  peak RSS {r['peak_gb']:.2f} GB; child processes (ffmpeg) at most "
                  f"{r['ffmpeg_peak_gb']:.2f} GB (a forked child first counts its parent's pages)")

    if "720p" in results:
        s = results["720p"]["total"]
        print(f"\n720p end to end: {s:.2f} s = {s / FLOOR_720P_S:.2f}x the {FLOOR_720P_S:.0f} s floor "
              f"({'meets' if s <= FLOOR_720P_S else 'misses'} it)")
    if "24mp" in results:
        g = results["24mp"]["peak_gb"]
        print(f"24 MP peak memory: {g:.2f} GB = {g / FLOOR_24MP_GB:.2f}x the {FLOOR_24MP_GB:.0f} GB floor "
              f"({'meets' if g <= FLOOR_24MP_GB else 'misses'} it); {results['24mp']['total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
