"""Pack the training photos for a GPU lease: the device machine cannot reach ../shared, and what travels
there (the working tree and the carried folders) must fit in 64 MiB.

    python training/gpu_pack.py [--src ../shared/data/photos] [--dest .gpu/photos] [--mb 32]

Every photo keeps its path and name (so the sorted list, and with it the held-out photos, stay the same)
and is written as JPEG: at the highest quality of 90, 80 and 70 that fits the budget with the photos at full
size, else with their long side capped as well. The destination's folder is added to .git/info/exclude
(ignored, so carried, not committed). Then: `run` with carry [".gpu"] and training/gpu_lease.sh.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def encode(path: Path, quality: int, long_side: int | None) -> bytes:
    with Image.open(path) as img:
        img = img.convert("RGB")
        if long_side and max(img.size) > long_side:
            s = long_side / max(img.size)
            img = img.resize((round(img.width * s), round(img.height * s)), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "photos")
    ap.add_argument("--dest", type=Path, default=ROOT / ".gpu" / "photos")
    ap.add_argument("--mb", type=float, default=32.0, help="budget for the packed photos, MB")
    args = ap.parse_args()
    from blur2clip.layouts import list_photos

    photos = list_photos(args.src)
    budget = args.mb * 1e6
    for long_side in (None, 1024, 768, 512):  # the first size and quality that fit
        for quality in (90, 80, 70):
            packed = {p: encode(p, quality, long_side) for p in photos}
            total = sum(map(len, packed.values()))
            if total <= budget:
                break
        if total <= budget:
            break
    else:
        raise SystemExit(f"{args.src}: {len(photos)} photos do not fit in {args.mb} MB even at 512 px, quality 70")
    if args.dest.exists():
        shutil.rmtree(args.dest)
    for p, data in packed.items():
        out = args.dest / p.relative_to(args.src)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    top = args.dest.resolve().relative_to(ROOT).parts[0]
    exclude = Path(subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout.strip())
    exclude = exclude if exclude.is_absolute() else ROOT / exclude
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    if f"/{top}/" not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join(lines + [f"/{top}/"]) + "\n")
    print(f"{len(packed)} photos -> {args.dest}: {total / 1e6:.1f} MB, JPEG quality {quality}"
          + (f", long side at most {long_side} px" if long_side else ", full size"))


if __name__ == "__main__":
    main()
