"""The training losses, and which direction of time a prediction is scored against.

One blurred photo cannot tell forward from reversed time: the photo of a motion is the same either way.
So a prediction is never scored against one fixed order of the true frames. Two rules (`order`):

- "sample": per sample, the better of forward and reversed order (the rule of the original method).
  While the frames are still equal (the start of training) both orders score the same, and a network
  that cannot yet tell which one a sample will pick gains most by keeping its frames together: they
  learn to deblur but hardly move apart.
- "local": the true frames are put in a canonical order, cell by cell (`CELL` px): the order in which
  the cell's content moves towards (1, TILT), i.e. right, or down when the motion is vertical. The direction is
  measured on the true frames themselves (a least-squares fit of the motion in each cell at 1/4 size,
  from the frames beside the middle one), so it applies to any data with true frames. The network can
  see the axis of a blur streak, so the canonical order is a function of the photo that it can learn,
  and each region moves on its own (objects moving in different directions do not fight over one order).

A network with the "travel" head (model.py) says how far each pixel travels over the exposure. Where the
true travel is known (synthetic samples), the canonical order is taken from it pixel by pixel, and the
predicted travel is scored against the true one turned the same way (`w_travel`); elsewhere (real
frames) the order is the "local" rule's.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from .model import TRAVEL_PX, stage_frames
from .synth import to_linear

CELL = 32  # px: the order is chosen per cell of this side
SCALE = 4  # the motion is measured at 1/SCALE size (a blur of 64 px becomes a few px between frames)
TILT = 0.5  # canonical direction (1, TILT): its boundary, motion along (-TILT, 1), is neither a pan nor a tilt


def charbonnier(a: torch.Tensor, b: torch.Tensor, dims) -> torch.Tensor:
    return torch.sqrt((a - b) ** 2 + 1e-6).mean(dim=dims)


@torch.no_grad()
def against_canonical(gt: torch.Tensor, cell: int = CELL) -> torch.Tensor:
    """Bx1x1xHxW bool: True where the true frames (BxFx3xHxW, F >= 3) run against the canonical
    direction of time of their cell, so that gt.flip(1) is the canonical order there."""
    f, h, w = gt.shape[1], gt.shape[-2], gt.shape[-1]
    m = f // 2
    lum = F.avg_pool2d(gt.float().mean(2), SCALE, ceil_mode=True)  # BxFxhxw
    mid = lum[:, m : m + 1]
    gx = F.pad(mid[..., 2:] - mid[..., :-2], (1, 1)) / 2
    gy = F.pad(mid[..., 2:, :] - mid[..., :-2, :], (0, 0, 1, 1)) / 2
    dt = lum[:, m + 1 : m + 2] - lum[:, m - 1 : m]  # content moving by d: dt ~ -(d . grad)
    pool = partial(F.avg_pool2d, kernel_size=max(1, cell // SCALE), ceil_mode=True)  # per-cell means
    sxx, sxy, syy = pool(gx * gx), pool(gx * gy), pool(gy * gy)
    bx, by = pool(-dt * gx), pool(-dt * gy)
    dx, dy = syy * bx - sxy * by, sxx * by - sxy * bx  # d times det(S) >= 0: the sign is d's
    against = (dx + TILT * dy) < 0  # Bx1xcyxcx
    against = against.repeat_interleave(cell, 2).repeat_interleave(cell, 3)[..., :h, :w]
    return against.unsqueeze(2)  # Bx1x1xHxW


def canonical_travel(gt: torch.Tensor, true: torch.Tensor):
    """(against Bx1x1xHxW bool, the true travel turned to the canonical direction Bx2xHxW). The true
    travel (Bx2xHxW px) decides where it is known; where it is NaN, `against_canonical` measures the order
    from the true frames (the travel there stays NaN)."""
    known = true.isfinite().all(1, keepdim=True)  # Bx1xHxW
    against = (true[:, :1] + TILT * true[:, 1:]) < 0
    if not known.all():
        against = torch.where(known, against, against_canonical(gt)[:, 0])
    return against.unsqueeze(2), torch.where(against, -true, true)


def staged_loss(pred, gt, clean, stage: int, cfg, progress: float, travel=None, true_travel=None):
    """Loss of BxFx3xHxW predictions at a stage; `progress` 0..1 through the stage; cfg a TrainConfig;
    travel: the travel head's Bx2xHxW (px), with the samples' true travel (NaN where unknown; None: not
    known at all). Returns (loss, parts)."""
    nf = pred.shape[1]
    if gt.shape[1] == 1:  # only the middle frame is known (GoPro_Large)
        if stage != 1:
            raise ValueError("only the middle frame is known: such data trains stage 1")
        rec = charbonnier(pred[:, nf // 2], gt[:, 0], dims=(1, 2, 3)).mean()
        return rec, {"rec": rec.item()}
    active = stage_frames(stage, nf)
    w = torch.ones(nf, device=pred.device)
    w[nf // 2] += cfg.w_middle
    w = w[active] / w[active].sum()  # weights over the active frames
    against, d = None, None  # where the true frames run against the canonical order; the travel turned
    if travel is not None and nf >= 3:
        unknown = torch.full_like(travel, float("nan"))
        against, d = canonical_travel(gt, unknown if true_travel is None else true_travel)
    elif cfg.order == "local" and nf >= 3:
        against = against_canonical(gt)
    if against is not None:
        target = torch.where(against, gt.flip(1), gt)
        rec = (charbonnier(pred[:, active], target[:, active], dims=(2, 3, 4)) * w).sum(1).mean()
    else:  # per sample, the better of forward and reversed time
        per_frame_f = charbonnier(pred[:, active], gt[:, active], dims=(2, 3, 4))  # B x A
        per_frame_r = charbonnier(pred[:, active], gt.flip(1)[:, active], dims=(2, 3, 4))
        rec = torch.minimum((per_frame_f * w).sum(1), (per_frame_r * w).sum(1)).mean()
    parts = {"rec": rec.item()}
    loss = rec
    if d is not None and cfg.w_travel > 0 and d.isfinite().any():
        known = d.isfinite().all(1, keepdim=True).expand_as(d)
        err = charbonnier(travel[known] / TRAVEL_PX, d[known] / TRAVEL_PX, dims=0)
        loss = loss + cfg.w_travel * err
        parts["travel"] = err.item()
    # Pairwise terms: x_i + x_j and |x_i - x_j| for symmetric pairs j = F-1-i do not depend on the order.
    fade = max(0.0, 1 - progress / cfg.pairs_fade) if cfg.pairs_fade > 0 else 1.0
    pairs = [(i, nf - 1 - i) for i in active if i < nf // 2]
    if cfg.w_pairs > 0 and fade > 0 and pairs:
        i, j = zip(*pairs)
        p_i, p_j, g_i, g_j = pred[:, list(i)], pred[:, list(j)], gt[:, list(i)], gt[:, list(j)]
        pair = F.l1_loss(p_i + p_j, g_i + g_j) + F.l1_loss((p_i - p_j).abs(), (g_i - g_j).abs())
        loss = loss + cfg.w_pairs * fade * pair
        parts["pairs"] = pair.item()
    if cfg.w_reblur > 0 and len(active) == nf:
        blur = to_linear(pred).mean(1)
        rb = F.l1_loss(blur, to_linear(clean))
        loss = loss + cfg.w_reblur * rb
        parts["reblur"] = rb.item()
    return loss, parts
