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
predicted travel is scored against the true one turned the same way (`w_travel`; `travel_over` says over
which pixels it is averaged: every pixel whose travel is known, or only those that moved, so that a small
moving object is not outweighed by the still pixels around it); elsewhere (real frames) the order is the
"local" rule's. `w_still` adds the travel predicted where the true one is under
STILL_PX, in px: what a sharp photo or a still background must not get. `w_fft` adds the middle frame's
error in the frequency domain (the mean absolute real and imaginary parts of its orthonormal 2-D Fourier
transform): the same energy as the error in pixels, but a blur's loss of fine detail spread over few pixels
is spread over many coefficients there, so it weighs more than in a per-pixel mean. `w_harm` adds, per
pixel of every frame, how much further the frame is from the true one than the blur itself is (zero where
it is nearer): harm done where the blur was the better answer (a still part, drops of a spray) weighs
twice. `rec` says how a
frame's error is measured: Charbonnier per pixel (a smooth L1), or the frame's root mean square error.
"""

from __future__ import annotations

import warnings
from functools import cache, partial

import torch
import torch.nn.functional as F

from .model import TRAVEL_PX, stage_frames
from .synth import to_linear

CELL = 32  # px: the order is chosen per cell of this side
SCALE = 4  # the motion is measured at 1/SCALE size (a blur of 64 px becomes a few px between frames)
STILL_PX = 0.5  # true travel under this is still (w_still)
TILT = 0.5  # canonical direction (1, TILT): its boundary, motion along (-TILT, 1), is neither a pan nor a tilt


def charbonnier(a: torch.Tensor, b: torch.Tensor, dims) -> torch.Tensor:
    return torch.sqrt((a - b) ** 2 + 1e-6).mean(dim=dims)


def rmse(a: torch.Tensor, b: torch.Tensor, dims) -> torch.Tensor:
    """The root of the mean square error over `dims`: a frame's error as PSNR sees it. Where a frame cannot
    be told, its minimum is the mean of what the frame could be; Charbonnier's, like L1's, is their median."""
    return torch.sqrt(((a - b) ** 2).mean(dim=dims) + 1e-8)


RECS = {"charbonnier": charbonnier, "rmse": rmse}  # TrainConfig.rec -> the frames' distance


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


def canonical_travel(gt: torch.Tensor, true: torch.Tensor, all_known: bool | None = None):
    """(against Bx1x1xHxW bool, the true travel turned to the canonical direction Bx2xHxW). The true
    travel (Bx2xHxW px) decides where it is known; where it is NaN, `against_canonical` measures the order
    from the true frames (the travel there stays NaN). all_known: whether no travel is NaN, when the
    caller knows it (a compiled graph cannot ask)."""
    against = (true[:, :1] + TILT * true[:, 1:]) < 0
    if not (bool(true.isfinite().all()) if all_known is None else all_known):
        known = true.isfinite().all(1, keepdim=True)  # Bx1xHxW
        against = torch.where(known, against, against_canonical(gt)[:, 0])
    return against.unsqueeze(2), torch.where(against, -true, true)


def staged_loss(pred, gt, clean, stage: int, cfg, progress: float, travel=None, true_travel=None,
                compiled: bool = False):
    """Loss of BxFx3xHxW predictions at a stage; `progress` 0..1 through the stage; cfg a TrainConfig;
    travel: the travel head's Bx2xHxW (px), with the samples' true travel (NaN where unknown; None: not
    known at all). pred and travel may be bfloat16 (autocast): the loss is computed in float32.
    compiled: the terms through torch.compile (`train --compile`). Returns (loss, parts)."""
    nf = pred.shape[1]
    if gt.shape[1] == 1:  # only the middle frame is known (GoPro_Large)
        if stage != 1:
            raise ValueError("only the middle frame is known: such data trains stage 1")
        rec = RECS[cfg.rec](pred[:, nf // 2].float(), gt[:, 0], dims=(1, 2, 3)).mean()
        return rec, {"rec": rec.item()}
    # Pairwise terms: x_i + x_j and |x_i - x_j| for symmetric pairs j = F-1-i do not depend on the order.
    fade = max(0.0, 1 - progress / cfg.pairs_fade) if cfg.pairs_fade > 0 else 1.0
    if travel is not None and true_travel is None:
        true_travel = torch.full(travel.shape, float("nan"), device=travel.device)
    known = None if travel is None else true_travel.isfinite()
    # What depends on the data is decided here, so that a compiled graph has no branch on it.
    how = dict(active=tuple(stage_frames(stage, nf)), rec=cfg.rec, w_middle=cfg.w_middle, order=cfg.order,
               w_travel=cfg.w_travel, travel_over=cfg.travel_over, w_still=cfg.w_still, w_fft=cfg.w_fft,
               w_harm=cfg.w_harm,
               w_pairs=cfg.w_pairs if fade > 0 else 0.0, w_reblur=cfg.w_reblur,
               all_known=known is not None and bool(known.all()),
               any_known=known is not None and bool(known.any()))
    with warnings.catch_warnings():  # the compiler's note that the Fourier transform stays uncompiled
        warnings.filterwarnings("ignore", "Torchinductor does not support code generation for complex")
        loss, parts = (_compiled() if compiled else _terms)(pred, gt, clean, travel, true_travel,
                                                             torch.tensor(fade), **how)
    return loss, {k: v.item() for k, v in parts.items()}


def _terms(pred, gt, clean, travel, true_travel, fade, *, active, rec, w_middle, order, w_travel, travel_over,
           w_still, w_fft, w_harm, w_pairs, w_reblur, all_known, any_known):
    """staged_loss's terms: tensors in, (loss, parts as 0-d tensors) out; the keywords are constants."""
    pred = pred.float()
    nf = pred.shape[1]
    whole = len(active) == nf
    distance = RECS[rec]

    def pick(t):  # the active frames (no copy when all are)
        return t if whole else t[:, list(active)]

    w = torch.ones(nf, device=pred.device)
    w[nf // 2] += w_middle
    w = pick(w[None])[0]
    w = w / w.sum()  # weights over the active frames
    against, d = None, None  # where the true frames run against the canonical order; the travel turned
    if travel is not None and nf >= 3:
        travel = travel.float()
        against, d = canonical_travel(gt, true_travel, all_known)
    elif order == "local" and nf >= 3:
        against = against_canonical(gt)
    target = gt
    if against is not None:
        target = torch.where(against, gt.flip(1), gt)
        rec = (distance(pick(pred), pick(target), dims=(2, 3, 4)) * w).sum(1).mean()
    else:  # per sample, the better of forward and reversed time
        per_frame_f = distance(pick(pred), pick(gt), dims=(2, 3, 4))  # B x A
        per_frame_r = distance(pick(pred), pick(gt.flip(1)), dims=(2, 3, 4))
        rec = torch.minimum((per_frame_f * w).sum(1), (per_frame_r * w).sum(1)).mean()
    parts = {"rec": rec}
    loss = rec
    if d is not None and w_travel > 0 and any_known:  # the mean over the pixels whose travel is known
        known = d.isfinite().all(1, keepdim=True).expand_as(d)
        err = torch.sqrt(((travel - torch.where(known, d, 0.0)) / TRAVEL_PX) ** 2 + 1e-6)
        if travel_over == "moving":  # ... and moved (NaN is not >=): the still ones are w_still's
            known = known & (d.norm(dim=1, keepdim=True) >= STILL_PX).expand_as(d)
        err = torch.where(known, err, 0.0).sum() / known.sum().clamp(min=1)
        loss = loss + w_travel * err
        parts["travel"] = err
    if d is not None and w_still > 0 and any_known:  # per still pixel, how far it was made to travel (px)
        still = (d.norm(dim=1, keepdim=True) < STILL_PX).float()  # NaN (unknown) is not still
        moved = torch.sqrt((travel**2).sum(1, keepdim=True) + 1e-6)
        err = (moved * still).sum() / still.sum().clamp(min=1)
        loss = loss + w_still * err
        parts["still"] = err
    if w_harm > 0:  # how much further than the blur each pixel of each frame is from the true one
        truth = pick(target)
        worse = F.relu((pick(pred) - truth).abs().mean(2) - (clean[:, None] - truth).abs().mean(2))
        err = (worse.mean((2, 3)) * w).sum(1).mean()
        loss = loss + w_harm * err
        parts["harm"] = err
    if w_fft > 0 and nf // 2 in active:  # the middle frame is the same in either direction of time
        spectrum = torch.fft.rfft2(pred[:, nf // 2] - gt[:, nf // 2], norm="ortho")
        err = torch.view_as_real(spectrum).abs().mean()
        loss = loss + w_fft * err
        parts["fft"] = err
    pairs = [(i, nf - 1 - i) for i in active if i < nf // 2]
    if w_pairs > 0 and pairs:
        i, j = zip(*pairs)
        p_i, p_j, g_i, g_j = pred[:, list(i)], pred[:, list(j)], gt[:, list(i)], gt[:, list(j)]
        pair = F.l1_loss(p_i + p_j, g_i + g_j) + F.l1_loss((p_i - p_j).abs(), (g_i - g_j).abs())
        loss = loss + w_pairs * fade * pair
        parts["pairs"] = pair
    if w_reblur > 0 and whole:
        blur = to_linear(pred).mean(1)
        rb = F.l1_loss(blur, to_linear(clean))
        loss = loss + w_reblur * rb
        parts["reblur"] = rb
    return loss, parts


def require_compiler() -> None:
    """errors.SettingsError in one line when torch.compile has no C++ compiler to build a CPU's code with
    (`$CXX`, g++, c++ or clang++ on the PATH)."""
    import os
    import shutil

    if not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        from .errors import SettingsError

        raise SettingsError("--compile: torch.compile needs a C++ compiler on a CPU (g++ or clang++, or $CXX), "
                            "and none was found; train without --compile, or install one")


@cache
def _compiled():
    """_terms through torch.compile: on a CPU, fused loops in place of the dozens of passes over every
    frame that the terms make one by one (their forward and backward took 60% of a long-run step)."""
    return torch.compile(_terms, dynamic=False)
