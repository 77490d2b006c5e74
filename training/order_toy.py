"""Do the frames move apart? The direction-of-time rules of losses.py on the simplest real case.

    python training/order_toy.py [--steps 400] [--length 12] [--size 96]

Camera-only motion of one length (px over the exposure, random direction, no noise or JPEG) on photos of
../shared/data/photos; one pool of training samples and one of held-out samples, shared by every rule.
For each rule a network of the shipped shape starts from the same random weights (its head at zero, so
every frame starts equal to the photo) and trains the same steps on the same batches. Printed per rule,
on the held-out pool: pPSNR and its gain over the photo, how far the first and last frames move apart
(motion.motion_px) beside the truth's, and for the flow networks how far their field is from the true
travel (synth.py), turned to the canonical direction.

Rules: the frames head under the order rules of losses.py; "flow": the middle frame, a field and a
residual per frame; "flow, told": the field also scored against the true travel (frames in the order
of the true travel); "warp, told": no residuals (the travel head of model.py); "detached": the moved
frames do not train the middle frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blur2clip import metrics  # noqa: E402
from blur2clip.data import list_photos  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from blur2clip.losses import canonical_travel, charbonnier, staged_loss  # noqa: E402
from blur2clip.model import Blur2Clip, ModelConfig  # noqa: E402
from blur2clip.motion import motion_px  # noqa: E402
from blur2clip.runconfig import TrainConfig  # noqa: E402
from blur2clip.synth import SynthConfig, synthesize, to_linear  # noqa: E402

RULES = {
    "sample": dict(order="sample"),
    "sample, no pairs": dict(order="sample", w_pairs=0.0),
    "local": dict(order="local"),
    "flow, sample": dict(order="sample", flow=True),
    "flow, local": dict(order="local", flow=True),
    "flow, told": dict(order="sample", flow="told"),
    "warp, told": dict(order="sample", flow="told", residual=False),
    "warp, told, detached": dict(order="sample", flow="told", residual=False, detach=True),
}
W_TRAVEL = 0.1  # weight of the field's own loss (in units of FLOW_PX) beside the frames' loss
FLOW_PX = 8.0  # px of displacement per unit of the flow channels


class FlowNet(torch.nn.Module):
    """The middle frame, and every other frame the middle one moved along a predicted motion field (linear
    in time, so frame k moves t_k * field, t_k its instant from -1/2 to 1/2 of the exposure), plus a
    residual of its own for what moving cannot explain. One network of the shipped shape gives the middle
    frame's residual, the field (2 channels of an extra output) and the other frames' residuals."""

    def __init__(self, frames: int = 7, residual: bool = True, detach: bool = False):
        super().__init__()
        self.frames, self.residual, self.detach = frames, residual, detach
        self.net = Blur2Clip(ModelConfig(frames=frames + 1))

    def forward(self, x):
        out = self.net(x)  # Bx(F+1)x3xHxW: x plus residuals
        b, _, _, h, w = out.shape
        field = (out[:, -1, :2] - x[:, :2]) * FLOW_PX  # Bx2xHxW, px
        self.field = field
        mid = out[:, self.frames // 2]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
        frames = []
        for k in range(self.frames):
            t = (k + 0.5) / self.frames - 0.5
            gx = (xs - t * field[:, 0]) / (w - 1) * 2 - 1
            gy = (ys - t * field[:, 1]) / (h - 1) * 2 - 1
            src = mid.detach() if self.detach else mid  # detached: the moved frames train the field only
            moved = torch.nn.functional.grid_sample(src, torch.stack([gx, gy], -1), padding_mode="border",
                                                    align_corners=True)
            frames.append(mid if k == self.frames // 2 else moved + (out[:, k] - x if self.residual else 0))
        return torch.stack(frames, 1)


def pool(photos, count: int, cfg: SynthConfig, seed: int):
    samples = [synthesize(photos[i % len(photos)], np.random.default_rng([seed, i]), cfg) for i in range(count)]
    return (torch.stack([s.blurred for s in samples]), torch.stack([s.frames for s in samples]),
            torch.stack([s.clean for s in samples]), torch.stack([s.travel for s in samples]))


def told_loss(model, pred, gt, clean, travel, cfg):
    """Frames against the canonical order of the true travel, and the field against that travel."""
    against, d = canonical_travel(gt, travel)
    target = torch.where(against, gt.flip(1), gt)
    w = torch.ones(pred.shape[1])
    w[pred.shape[1] // 2] += cfg.w_middle
    rec = (charbonnier(pred, target, dims=(2, 3, 4)) * w / w.sum()).sum(1).mean()
    reblur = F.l1_loss(to_linear(pred).mean(1), to_linear(clean))
    return rec + cfg.w_reblur * reblur + W_TRAVEL * charbonnier(model.field / FLOW_PX, d / FLOW_PX, (1, 2, 3)).mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--length", type=float, default=12.0)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--train", type=int, default=512)
    ap.add_argument("--rules", nargs="*", default=list(RULES))
    args = ap.parse_args()
    torch.set_num_threads(2)
    from PIL import Image

    paths = list_photos(ROOT.parent / "shared" / "data" / "photos")[:200]
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    cfg = SynthConfig(size=args.size, p_static_camera=0.0, camera_px=args.length, camera_tail=0.0,
                      camera_rotation=0.0, camera_zoom=0.0, camera_perspective=0.0, layer_probs=(1.0,),
                      p_highlights=0.0, p_noise=0.0, p_jpeg=0.0)
    t = time.perf_counter()
    train_set, held = pool(photos, args.train, cfg, 1), pool(photos[::-1], 48, replace(cfg, size=160), 2)
    print(f"{len(paths)} photos; pools made in {time.perf_counter() - t:.0f} s; camera {args.length:g} px, "
          f"{args.steps} steps of 8 x {args.size} px", flush=True)
    print("| rule | pPSNR (gain) | middle | outer | frames move, model / truth (px) | field error (px) | s/step |\n"
          "|---|---|---|---|---|---|---|")
    for rule in args.rules:
        t = time.perf_counter()
        torch.manual_seed(0)
        settings = dict(RULES[rule])
        flow = settings.pop("flow", False)
        model = FlowNet(residual=settings.pop("residual", True), detach=settings.pop("detach", False)) if flow \
            else Blur2Clip()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        tcfg = TrainConfig(data="", out="", **settings)
        order = np.random.default_rng(3).integers(0, len(train_set[0]), (args.steps, 8))
        for step in range(args.steps):
            b, f, c, d = (t[order[step]] for t in train_set)
            if flow == "told":
                loss = told_loss(model, model(b), f, c, d, tcfg)
            else:
                loss, _ = staged_loss(model(b), f, c, 3, tcfg, step / args.steps)
            opt.zero_grad()
            loss.backward()
            opt.step()
        rate = (time.perf_counter() - t) / args.steps
        model.eval()
        with torch.no_grad():
            pred, err = [], []
            for i in range(0, len(held[0]), 8):
                pred.append(model(held[0][i:i + 8]))
                if flow:
                    turned = canonical_travel(held[1][i:i + 8], held[3][i:i + 8])[1]
                    err.append((model.field - turned).norm(dim=1).mean())
            pred = torch.cat(pred)
        m, base = metrics.score(pred, held[1], held[0]), metrics.baseline(held[1], held[0])
        moved = np.mean([motion_px(p.permute(0, 2, 3, 1).clamp(0, 1).numpy()) for p in pred])
        truth = np.mean([motion_px(g.permute(0, 2, 3, 1).numpy()) for g in held[1]])
        print(f"| {rule} | {m['ppsnr']:.2f} ({m['ppsnr'] - base['ppsnr']:+.2f}) | {m['middle']:.2f} "
              f"| {m['outer']:.2f} | {moved:.1f} / {truth:.1f} | {np.mean(err) if err else float('nan'):.1f} "
              f"| {rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
