"""How far a travel head's travel reaches on synthetic motion, where the true travel is known.

    python training/travel_reach.py [WEIGHTS ...] [--count 40] [--size 256]

For each weights file (a travel head; the long run's committed weights by default): the held-out photos of
../shared/data/photos given the long run's motion (training/long.py), one sample each, seeded by its place
in the list. Over the pixels whose true travel exceeds 2 px, per sample: the mean length of the predicted
travel over the true one's, and the middle frame's PSNR gain over the blurred input; over all samples:
the median of those ratios and the least-squares slope of the predicted travel onto the true one turned
to the canonical direction the loss trains it to (losses.canonical_travel). A slope and a ratio near 1 mean the
frames move as far as the truth; near 0, they keep together.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))
from long import MODEL, SYNTH  # noqa: E402  (the long run's recipe, one place)

from blur2clip.layouts import list_photos, split_photos  # noqa: E402
from blur2clip.losses import canonical_travel  # noqa: E402
from blur2clip.metrics import psnr  # noqa: E402
from blur2clip.synth import SynthConfig, synthesize  # noqa: E402
from blur2clip.weights import load_model  # noqa: E402

MOVING_PX = 2.0


@torch.no_grad()
def reach(model, photos: list[Path], size: int) -> dict:
    cfg = SynthConfig(size=size, frames=MODEL.frames, **SYNTH)
    num = den = 0.0
    ratios, gains = [], []
    for i, path in enumerate(photos):
        s = synthesize(np.asarray(Image.open(path).convert("RGB")), np.random.default_rng([11, i]), cfg)
        middle, travel = model.motion(s.blurred[None])
        true = canonical_travel(s.frames[None], s.travel[None])[1][0]  # as the loss turns it
        moving = true.norm(dim=0) > MOVING_PX
        if moving.sum() < 500:  # too little moves to say
            continue
        pred = travel[0]
        num += float((pred * true).sum(0)[moving].sum())
        den += float((true * true).sum(0)[moving].sum())
        ratios.append(float(pred.norm(dim=0)[moving].mean() / true.norm(dim=0)[moving].mean()))
        mid = s.frames[cfg.frames // 2][None]
        gains.append(float(psnr(middle.clamp(0, 1), mid, (1, 2, 3)) - psnr(s.blurred[None], mid, (1, 2, 3))))
    ratios, gains = np.array(ratios), np.array(gains)
    short = ratios < 0.3
    return {"samples": len(ratios), "median_length_ratio": float(np.median(ratios)), "slope": num / den,
            "near_zero": int((ratios <= 0.01).sum()), "middle_gain_short": float(gains[short].mean()),
            "middle_gain_others": float(gains[~short].mean()), "short": int(short.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="*", default=[str(ROOT / "training" / "long-run.safetensors")])
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, held_out = split_photos(list_photos(ROOT.parent / "shared" / "data" / "photos"))
    for w in args.weights:
        r = reach(load_model(w).float(), held_out[:args.count], args.size)
        print(f"{w}: {r['samples']} samples with motion; travel {r['median_length_ratio']:.2f}x the true length "
              f"(median), slope {r['slope']:.2f}, {r['near_zero']} near zero (0.01x or less); middle frame "
              f"{r['middle_gain_short']:+.2f} dB on the {r['short']} under 0.3x, {r['middle_gain_others']:+.2f} on "
              f"the others", flush=True)


if __name__ == "__main__":
    main()
