"""`blur2clip batch` against one `blur2clip PHOTO` per photo: photos per minute and peak memory.

    python benchmarks/batch_speed.py [--count 20] [--size 1280x720] [--threads 2] [--weights PATH]

COUNT JPEGs of SIZE are made in a temporary folder (a real blurred GoPro frame when ../shared has one,
else a Kodak photo or texture; each one shifted a little so that no two are the same), then turned into
MP4 clips twice, each as a user would, with the same options (--device cpu --threads N, the CLI's
defaults otherwise):
  single: COUNT processes of `blur2clip PHOTO -o OUT -q`, one after the other;
  batch:  one process of `blur2clip batch DIR -o OUTDIR -q`.
Floor: the batch takes at most 1 / 1.3 of the single runs' time per photo. Peak memory is the largest
resident set of a process or of the ffmpeg it ran (from wait4). Without shipped weights a random
ModelConfig() network, saved to the temporary folder, stands in (same cost).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOOR_SPEEDUP = 1.3


def weights_file(name: str | None, folder: Path) -> tuple[str, str]:
    """(path for --weights, what it is): the asked-for or shipped weights, else a random network."""
    sys.path.insert(0, str(HERE))
    from model_speed import load_network

    from blur2clip import weights

    try:
        return str(weights.resolve(name)), f"weights {name or 'default'}"
    except weights.WeightsError:
        if name:
            raise
    model, source = load_network(None)
    return str(weights.save(model, folder / "random.safetensors")), source


def make_photos(folder: Path, count: int, w: int, h: int) -> list[Path]:
    sys.path.insert(0, str(HERE))
    from clip_speed import make_photo
    from PIL import Image

    folder.mkdir(parents=True)
    base = make_photo(folder.parent / "base.jpg", w + count, h)
    with Image.open(base) as im:
        photos = []
        for i in range(count):  # each a different crop: no two files alike
            path = folder / f"shot{i:03d}.jpg"
            im.crop((i, 0, i + w, h)).save(path, quality=90)
            photos.append(path)
    base.unlink()
    return photos


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run cmd; (seconds, peak RSS in GiB of it or the largest child it waited for)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(stderr.decode(errors="replace"))
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return seconds, usage.ru_maxrss * 1024 / 2**30  # ru_maxrss is in KiB on Linux


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--size", default="1280x720", help="WxH of the photos")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--tile", type=int, default=None, help="--tile for both (default: the CLI's)")
    ap.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    args = ap.parse_args(argv)
    w, h = map(int, args.size.lower().split("x"))

    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUR2CLIP_")}
    env.update(OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory(prefix="blur2clip-batch-bench-") as tmp:
        tmp = Path(tmp)
        weights, source = weights_file(args.weights, tmp)
        photos = make_photos(tmp / "shots", args.count, w, h)
        common = ["--weights", weights, "--device", "cpu", "--threads", str(args.threads), "-q"]
        common += ["--tile", str(args.tile)] if args.tile is not None else []
        python = [sys.executable, "-m", "blur2clip"]
        print(f"{args.count} photos of {w}x{h} -> MP4, {args.threads} CPU threads, {source}", flush=True)

        single_s, single_gb = 0.0, 0.0
        for photo in photos:
            s, gb = timed([*python, str(photo), "-o", str(tmp / "single" / f"{photo.stem}.mp4"), *common], env)
            single_s, single_gb = single_s + s, max(single_gb, gb)
        batch_s, batch_gb = timed([*python, "batch", str(tmp / "shots"), "-o", str(tmp / "batch"), *common], env)
        for name in ("single", "batch"):
            made = len(list((tmp / name).glob("*.mp4")))
            if made != args.count:
                raise SystemExit(f"{name}: {made} clips made of {args.count}")

    n = args.count
    speedup = single_s / batch_s
    print(f"single: {single_s / n:6.2f} s/photo = {60 * n / single_s:6.1f} photos/min, peak {single_gb:.2f} GB")
    print(f"batch:  {batch_s / n:6.2f} s/photo = {60 * n / batch_s:6.1f} photos/min, peak {batch_gb:.2f} GB")
    print(f"batch is {speedup:.2f}x faster per photo ({'meets' if speedup >= FLOOR_SPEEDUP else 'misses'} "
          f"the {FLOOR_SPEEDUP}x floor)")
    if args.json:
        print(json.dumps({"count": n, "size": f"{w}x{h}", "threads": args.threads, "source": source,
                          "single_s": single_s, "batch_s": batch_s, "speedup": speedup,
                          "single_peak_gb": single_gb, "batch_peak_gb": batch_gb}))
    return 0 if speedup >= FLOOR_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
