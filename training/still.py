"""Where nothing moved, does anything change? The still-content figures of the model card.

    python training/still.py [WEIGHTS ...] [--photos N] [--size 256] [--cases CASE ...]

On N Kodak photos (synthetic motion, `synth`), per weights file (the default when none is named):
- sharp: a photo with no motion and no degradation; the worst and the mean frame PSNR against the photo;
- objects L: one object moving L px over the exposure on a still camera, L = 4, 8, 16, 32, 64;
- camera L: the whole picture moving L px, no object;
- mix: the default training mix, noise, JPEG and highlights included (the other cases have none);
- defocus: a photo out of focus (a disc of 1-4 px) with no motion: blur that is not motion, to be left alone;
- swarm: a still camera and a swarm of small things moving each its own way (drops, birds, leaves).
For the moving cases, pPSNR of the model and of the blurred input copied to every frame, and the gain;
for every case, how far the first and last frames move apart (`motion.motion_px`), the model's beside the
truth's: a model that deblurs but keeps its frames together scores near 0 px.
Every case draws the same samples for every weights file (seeded by case and photo). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blur2clip import metrics  # noqa: E402
from blur2clip.motion import motion_px  # noqa: E402
from blur2clip.extract import Extractor  # noqa: E402
from blur2clip.layouts import window_centres  # noqa: E402
from blur2clip.synth import SynthConfig, synthesize  # noqa: E402

LENGTHS = (4, 8, 16, 32, 64)


def cases(size: int, frames: int) -> dict[str, SynthConfig]:
    # Motion only: no noise, JPEG or highlights in the input, so a gain is deblurring, not denoising.
    base = SynthConfig(size=size, frames=frames, p_noise=0.0, p_jpeg=0.0, p_highlights=0.0)
    out = {"sharp": base.still()}
    for n in LENGTHS:
        out[f"objects {n}"] = replace(base, p_static_camera=1.0, layer_probs=(0.0, 1.0), layer_px=float(n),
                                      layer_tail=0.0)
    for n in LENGTHS:
        out[f"camera {n}"] = replace(base, p_static_camera=0.0, camera_px=float(n), camera_tail=0.0,
                                     layer_probs=(1.0,))
    out["mix"] = SynthConfig(size=size, frames=frames)  # with the input's degradations
    out["defocus"] = replace(base.still(), p_defocus=1.0)
    out["swarm"] = replace(base, p_static_camera=1.0, layer_probs=(1.0,), p_swarm=1.0)
    return out  # new cases go last: each case's samples are seeded by its place


def scores(ex: Extractor, photos: list[np.ndarray], cfg: SynthConfig, key: int) -> dict[str, float]:
    model, base, worst, moved, true_moved = metrics.Meter(), metrics.Meter(), [], [], []
    for i, photo in enumerate(photos):
        s = synthesize(photo, np.random.default_rng([key, i]), cfg)
        # the model's own frame count (a travel head's frames rendered)
        out = np.asarray(ex(s.blurred.permute(1, 2, 0).numpy()))
        pred = torch.from_numpy(out).permute(0, 3, 1, 2)
        if len(pred) != len(s.frames):  # score the instants the truth has: window centres
            pred = pred[window_centres(len(pred), len(s.frames))]
        model.add(metrics.score(pred[None], s.frames[None], s.blurred[None]))
        base.add(metrics.baseline(s.frames[None], s.blurred[None]))
        worst.append(metrics.frame_psnr(pred[None], s.frames[None]).min().item())
        moved.append(motion_px(pred.permute(0, 2, 3, 1).numpy()))
        true_moved.append(motion_px(s.frames.permute(0, 2, 3, 1).numpy()))
    m, b = model.mean(), base.mean()
    return {"ppsnr": m["ppsnr"], "base": b["ppsnr"], "worst": min(worst), "reblur": m["reblur"],
            "moved": float(np.mean(moved)), "true_moved": float(np.mean(true_moved))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="*", default=["default"])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=7, help="true frames per sample")
    ap.add_argument("--cases", nargs="*", help="only these cases (e.g. sharp 'camera 16'); default: all")
    args = ap.parse_args()
    torch.set_num_threads(2)
    kodak = sorted((ROOT.parent / "shared" / "data" / "photos" / "kodak24").glob("*.png"))[:args.photos]
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in kodak]
    for name in args.weights:
        ex = Extractor(weights=name, device="cpu")
        print(f"\n{name} ({args.photos} Kodak photos, {args.size} px, {args.frames} true frames)\n")
        print("| case | blurred input | model | gain | worst frame | reblur | frames move, model / truth (px) |\n"
              "|---|---|---|---|---|---|---|")
        for key, (case, cfg) in enumerate(cases(args.size, args.frames).items()):
            if args.cases and case not in args.cases:
                continue
            r = scores(ex, photos, cfg, key)
            still = case in ("sharp", "defocus")  # the frames are the photo
            gain = "" if still else f"{r['ppsnr'] - r['base']:+.2f}"
            base = "identical" if still else f"{r['base']:.2f}"
            print(f"| {case} | {base} | {r['ppsnr']:.2f} | {gain} | {r['worst']:.2f} | {r['reblur']:.1f} "
                  f"| {r['moved']:.1f} / {r['true_moved']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
