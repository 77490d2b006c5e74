"""Contact sheets for checks by eye: each row the photo, then frames 1, 4 and 7 of the clip (`--frames 7`).

    python training/sheets.py [WEIGHTS] [--out runs/sheets] [--width 320]

Writes into --out (ignored by git: the real photos of ../shared may not be committed):
- real.jpg: real blurred photos of ../shared/data/blurred (GoPro frames, classic camera shake);
- long.jpg: a long blur made by the project's synthesis (motion only, no noise) on the Kodak photo held
  out of training (kodim10, 384 px crops): the camera moving 80 px over the exposure (three seeds), then
  one object moving 80 px on a still camera (three seeds); these rows end with the true frames 1 and 7.
Frames 1 and 7 should be sharper than the photo and apart from each other where something moved, and equal
to the photo where nothing did.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blur2clip.extract import Extractor  # noqa: E402
from blur2clip.synth import SynthConfig, synthesize  # noqa: E402
from blur2clip.timeline import resample  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
REAL = ["gopro_blurred/deepdeblur_blur_gamma_seq1_f8.png", "gopro_blurred/deepdeblur_blur_gamma_seq11_f1.png",
        "gopro_blurred/deblurganv2_test_img_000027.png", "gopro_pairs/Istanbul_blur1.png",
        "real_classic/srn_testing_set_4c6.png", "real_classic/kohler2012_subset/Blurry1_1.png"]
KODAK = "kodim10.png"  # the Kodak photo held out of training (layouts.is_held_out)
SEEDS = (0, 1, 2)
LONG_PX = 80.0


def clip7(ex: Extractor, image: np.ndarray) -> np.ndarray:
    """7xHxWx3 float32: the clip's 7 instants, as `blur2clip PHOTO --frames 7` makes them."""
    return np.stack(list(resample(ex(image), 7)))


def row(cells: list[np.ndarray], width: int) -> np.ndarray:
    h = round(cells[0].shape[0] * width / cells[0].shape[1])
    return np.concatenate([np.asarray(Image.fromarray((np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8))
                                      .resize((width, h), Image.LANCZOS)) for c in cells], 1)


def save(rows: list[np.ndarray], path: Path) -> None:
    wide = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, wide - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    Image.fromarray(np.concatenate(rows)).save(path, quality=90)
    print(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="?", default=None)
    ap.add_argument("--out", default=str(ROOT / "runs" / "sheets"))
    ap.add_argument("--width", type=int, default=320)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ex = Extractor(args.weights, threads=2)

    rows = []
    for name in REAL:
        photo = np.asarray(Image.open(SHARED / "blurred" / name).convert("RGB"), np.float32) / 255
        f = clip7(ex, photo)
        rows.append(row([photo, f[0], f[3], f[6]], args.width))
    save(rows, out / "real.jpg")

    base = SynthConfig(size=384, frames=7, p_noise=0.0, p_jpeg=0.0, p_highlights=0.0, photo_scale=(1.0, 1.0),
                       max_sub=32)
    kinds = {"camera": replace(base, p_static_camera=0.0, camera_px=LONG_PX, camera_tail=0.0, layer_probs=(1.0,)),
             "object": replace(base, p_static_camera=1.0, layer_probs=(0.0, 1.0), layer_px=LONG_PX, layer_tail=0.0)}
    photo = np.asarray(Image.open(SHARED / "photos" / "kodak24" / KODAK).convert("RGB"))
    rows = []
    for k, cfg in enumerate(kinds.values()):
        for seed in SEEDS:
            s = synthesize(photo, np.random.default_rng([k, seed]), cfg)
            blurred, truth = s.blurred.permute(1, 2, 0).numpy(), s.frames.permute(0, 2, 3, 1).numpy()
            f = clip7(ex, blurred)
            rows.append(row([blurred, f[0], f[3], f[6], truth[0], truth[6]], args.width))
    save(rows, out / "long.jpg")


if __name__ == "__main__":
    main()
