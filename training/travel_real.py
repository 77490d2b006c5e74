"""How far networks see things move on real blurred photos, beside a reference network.

For each photo (the real GoPro frames of ../shared/data/blurred/gopro_blurred by default), shrunk to fit
--size px as the end-to-end test does, every network's travel (the travel head's px over the exposure, the
still guard off so that the guard is not what differs) is compared where the first network, the
reference, sees more than 1 px: the share of such pixels, and the median travel there of each network.
A network distilled from the reference should match it there; the model card's comparison of the
centre-levels networks was measured with this. Run from the repository root:
    python training/travel_real.py REFERENCE OTHER [OTHER ...] [--size PX] [--photos GLOB]
e.g. python training/travel_real.py stage3 training/distil-centre1.safetensors
"""

import glob
import sys

import numpy as np
from PIL import Image

from blur2clip.extract import Extractor

args = sys.argv[1:]


def option(name: str, default):
    if name not in args:
        return default
    i = args.index(name)
    value = args.pop(i + 1)
    args.pop(i)
    return type(default)(value)


size = option("--size", 320)
photos = sorted(glob.glob(option("--photos", "../shared/data/blurred/gopro_blurred/*.png")))
if len(args) < 2 or not photos:
    sys.exit(__doc__)
nets = [Extractor(w, keep_still=False, threads=2) for w in args]
for i, w in enumerate(args):
    print(f"[{i}] {w}")
print(f"{'photo':40s} {'moving':>7s}  " + "  ".join(f"[{i}] px" for i in range(len(args))))
for path in photos:
    image = Image.open(path).convert("RGB")
    image.thumbnail((size, size), Image.LANCZOS)
    x = np.asarray(image, np.float32) / 255
    travel = [np.linalg.norm(np.asarray(net(x).travel, np.float32), axis=-1) for net in nets]
    moving = travel[0] > 1.0
    there = [float(np.median(t[moving])) if moving.any() else 0.0 for t in travel]
    print(f"{path.split('/')[-1][:40]:40s} {moving.mean():7.3f}  " + "  ".join(f"{v:6.2f}" for v in there))
