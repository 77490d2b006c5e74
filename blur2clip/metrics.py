"""Quality figures for predicted frames, shared by training, `blur2clip eval` and the tests.

All inputs are float tensors in sRGB 0..1: frames BxFx3xHxW, blurred inputs Bx3xHxW. Every figure is in dB
and averaged over the batch. The direction of time cannot be known from one photo, so frame-wise figures
take the better of forward and reversed order per sample.
"""

from __future__ import annotations

import torch

GAMMA = 2.2


def psnr(a: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """PSNR over `dims` (values clamped to 0..1, floored at 1e-10 MSE)."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean(dim=dims)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def frame_psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """BxF PSNR of each frame."""
    return psnr(pred, gt, dims=(2, 3, 4))


def oriented(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Pred with its frames put in the direction of time (forward or reversed) that matches gt best."""
    fwd = frame_psnr(pred, gt).mean(1)
    rev = frame_psnr(pred.flip(1), gt).mean(1)
    flip = (rev > fwd).view(-1, 1, 1, 1, 1)
    return torch.where(flip, pred.flip(1), pred)


def reblur(frames: torch.Tensor) -> torch.Tensor:
    """The photo the frames make when averaged in linear light: BxFx3xHxW -> Bx3xHxW."""
    return frames.clamp(0, 1).pow(GAMMA).mean(1).pow(1 / GAMMA)


def evaluate(pred: torch.Tensor, gt: torch.Tensor, blurred: torch.Tensor) -> dict[str, float]:
    """All figures for one batch: pPSNR, middle-frame PSNR, outer-frame pPSNR, reblur PSNR.

    gt with a single frame is the middle frame alone (GoPro_Large): then only middle and reblur."""
    if gt.shape[1] == 1 and pred.shape[1] > 1:
        return {"middle": psnr(pred[:, pred.shape[1] // 2], gt[:, 0], dims=(1, 2, 3)).mean().item(),
                "reblur": psnr(reblur(pred), blurred, dims=(1, 2, 3)).mean().item()}
    pred = oriented(pred, gt)
    per_frame = frame_psnr(pred, gt)  # BxF
    mid = gt.shape[1] // 2
    return {
        "ppsnr": per_frame.mean().item(),
        "middle": per_frame[:, mid].mean().item(),
        "outer": per_frame[:, [0, -1]].mean().item(),
        "reblur": psnr(reblur(pred), blurred, dims=(1, 2, 3)).mean().item(),
    }


def baseline(gt: torch.Tensor, blurred: torch.Tensor) -> dict[str, float]:
    """The same figures for the trivial answer: the blurred input copied to every frame."""
    frames = gt.shape[1] if gt.shape[1] > 1 else 7  # a middle frame alone is still scored against a clip
    copies = blurred.unsqueeze(1).expand(-1, frames, -1, -1, -1)
    return evaluate(copies, gt, blurred)


class Meter:
    """Sums figures over batches weighted by batch size; `mean()` gives the averages."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, figures: dict[str, float], n: int = 1) -> None:
        for k, v in figures.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def mean(self) -> dict[str, float]:
        return {k: v / max(1, self.count) for k, v in self.sums.items()}
