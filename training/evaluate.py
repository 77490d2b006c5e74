"""Figures for the model card: every stage file on the synthetic validation set and the GoPro pairs.

Run from the repository root:
    python training/evaluate.py [WEIGHTS ...] [--val runs/w16/validation.safetensors] [--sheet sheet.png]

Prints a markdown table per weights file: pPSNR, middle, outer and reblur PSNR beside the blurred-input
baseline on the fixed validation set (photos never trained on), and the middle-frame PSNR on
../shared/data/blurred/gopro_pairs beside the blurred input. `--sheet` writes a contact sheet of real
blurred photos (input, then frames 1, 4 and 7) for checks by eye.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blur2clip import metrics, weights  # noqa: E402
from blur2clip.data import open_data  # noqa: E402
from blur2clip.model import render  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def to_tensor(img: Image.Image) -> torch.Tensor:
    """1x3xHxW float tensor in 0..1."""
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]


def load_rgb(path: Path) -> torch.Tensor:
    return to_tensor(Image.open(path))


@torch.no_grad()
def run(model, x: torch.Tensor, tile: int = 384) -> torch.Tensor:
    """Frames of a big image, tile by tile with a plain overlap crop (enough for scoring the middle frame)."""
    _, _, h, w = x.shape
    if h * w <= tile * tile * 4:
        return model(x)
    out = torch.zeros(1, model.config.frames, 3, h, w)
    pad = 48
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            ys, xs = max(0, y0 - pad), max(0, x0 - pad)
            ye, xe = min(h, y0 + tile + pad), min(w, x0 + tile + pad)
            f = model(x[:, :, ys:ye, xs:xe])
            out[..., y0:min(h, y0 + tile), x0:min(w, x0 + tile)] = \
                f[..., y0 - ys:y0 - ys + min(tile, h - y0), x0 - xs:x0 - xs + min(tile, w - x0)]
    return out


@torch.no_grad()
def validation_figures(model, val: dict) -> dict:
    """The validation set's figures; a travel head's frames rendered at the set's instants (its 7 true
    frames: the centres of 7 windows), whatever count it was trained on."""
    n = val["frames"].shape[1]
    if model.config.head != "travel" and model.config.frames != n:
        raise SystemExit(f"a frames head of {model.config.frames} frames cannot be scored against {n}")
    meter = metrics.Meter()
    for s in range(0, len(val["blurred"]), 8):
        b, f = val["blurred"][s:s + 8], val["frames"][s:s + 8]
        pred = render(*model.motion(b), n) if model.config.head == "travel" else model(b)
        meter.add(metrics.score(pred, f, b), len(b))
    return meter.mean()


def gopro_figures(model) -> dict:
    d = SHARED / "blurred" / "gopro_pairs"
    out = {}
    for blur in sorted(d.glob("*_blur1.png")) if d.is_dir() else []:
        name = blur.name.split("_")[0]
        x, sharp = load_rgb(blur), load_rgb(blur.with_name(blur.name.replace("blur", "sharp")))
        mid = run(model, x)[:, model.config.frames // 2]
        out[name] = (metrics.psnr(mid, sharp, (1, 2, 3)).item(), metrics.psnr(x, sharp, (1, 2, 3)).item())
    return out


def contact_sheet(model, path: Path, count: int = 6, width: int = 320) -> None:
    photos = sorted((SHARED / "blurred" / "gopro_blurred").glob("*.png"))[:count]
    photos += sorted((SHARED / "blurred" / "real_classic" / "ircnn_deblur_set3").glob("*.png"))[:2]
    rows = []
    for p in photos:
        img = Image.open(p).convert("RGB")
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        x = to_tensor(img)
        f = run(model, x)[0].clamp(0, 1)
        cells = [x[0], f[0], f[f.shape[0] // 2], f[-1]]
        rows.append(torch.cat(cells, 2))
    sheet = torch.cat(rows, 1).permute(1, 2, 0).numpy()
    Image.fromarray((sheet * 255 + 0.5).astype(np.uint8)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="*", default=["stage1", "stage2", "stage3"])
    ap.add_argument("--val", default=str(ROOT / "runs" / "w16" / "validation.safetensors"))
    ap.add_argument("--sheet", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = open_data(SHARED / "photos", layout="photos")
    held_out, val = data.val, data.validation(Path(args.val))
    base = metrics.baseline(val["frames"], val["blurred"])
    print(f"validation: {len(val['blurred'])} samples of {val['blurred'].shape[-1]} px from "
          f"{len(held_out)} held-out photos\n")
    print("| weights | pPSNR | middle | outer | reblur | GoPro middle (blurred) |")
    print("|---|---|---|---|---|---|")
    print(f"| blurred input | {base['ppsnr']:.2f} | {base['middle']:.2f} | {base['outer']:.2f} | "
          f"{base['reblur']:.2f} | |")
    for w in args.weights:
        model = weights.load_model(w)
        v = validation_figures(model, val)
        g = gopro_figures(model)
        gtxt = ", ".join(f"{k} {a:.2f} ({b:.2f})" for k, (a, b) in g.items())
        cells = " | ".join(f"{v[k]:.2f} ({v[k] - base[k]:+.2f})" for k in ("ppsnr", "middle", "outer", "reblur"))
        print(f"| {w} | {cells} | {gtxt} |", flush=True)
        if args.sheet:
            contact_sheet(model, Path(args.sheet).with_name(f"{Path(args.sheet).stem}-{Path(w).stem}.png"))


if __name__ == "__main__":
    main()
