"""Quality figures for predicted frames, shared by training, `blur2clip eval` and the tests.

All inputs are float tensors in sRGB 0..1: frames BxFx3xHxW, blurred inputs Bx3xHxW. PSNR figures are in
dB, SSIM figures 0..1, all averaged over the batch. The direction of time cannot be known from one photo,
so frame-wise figures take the better of forward and reversed order per sample (chosen by PSNR; SSIM is
measured on the frames in that same order).

SSIM is torchmetrics' `structural_similarity_index_measure` (Gaussian window of 11 px, sigma 1.5, data
range 1) on the RGB frames, averaged over the channels and the image.
"""

from __future__ import annotations

import torch

GAMMA = 2.2
NO_BASELINE = ("reblur",)  # the input copied to every frame averages back to itself: no baseline to beat


def psnr(a: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """PSNR over `dims` (values clamped to 0..1, floored at 1e-10 MSE)."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean(dim=dims)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def frame_psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """BxF PSNR of each frame."""
    return psnr(pred, gt, dims=(2, 3, 4))


def ssim(a: torch.Tensor, b: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """SSIM of each image of ...x3xHxW `a` against `b` (values clamped to 0..1): a tensor of the leading
    shape. Images go through `chunk` at a time, which bounds the memory the SSIM maps take."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    lead = a.shape[:-3]
    a, b = a.reshape(-1, *a.shape[-3:]).clamp(0, 1), b.reshape(-1, *b.shape[-3:]).clamp(0, 1)
    out = [structural_similarity_index_measure(a[i:i + chunk], b[i:i + chunk], data_range=1.0, reduction="none")
           for i in range(0, len(a), chunk)]
    return torch.cat(out).reshape(lead)


def oriented(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Pred with its frames put in the direction of time (forward or reversed) that matches gt best."""
    fwd = frame_psnr(pred, gt).mean(1)
    rev = frame_psnr(pred.flip(1), gt).mean(1)
    flip = (rev > fwd).view(-1, 1, 1, 1, 1)
    return torch.where(flip, pred.flip(1), pred)


def reblur(frames: torch.Tensor) -> torch.Tensor:
    """The photo the frames make when averaged in linear light: BxFx3xHxW -> Bx3xHxW."""
    return frames.clamp(0, 1).pow(GAMMA).mean(1).pow(1 / GAMMA)


def score(pred: torch.Tensor, gt: torch.Tensor, blurred: torch.Tensor) -> dict[str, float]:
    """All figures for one batch: pPSNR and its SSIM, middle-frame PSNR and SSIM, outer-frame pPSNR, reblur
    PSNR (keys ppsnr, ssim, middle, middle_ssim, outer, reblur).

    gt with a single frame is the middle frame alone (GoPro_Large, pairs): then only middle, middle_ssim
    and reblur."""
    if gt.shape[1] == 1 and pred.shape[1] > 1:
        mid = pred[:, pred.shape[1] // 2]
        return {"middle": psnr(mid, gt[:, 0], dims=(1, 2, 3)).mean().item(),
                "middle_ssim": ssim(mid, gt[:, 0]).mean().item(),
                "reblur": psnr(reblur(pred), blurred, dims=(1, 2, 3)).mean().item()}
    pred = oriented(pred, gt)
    per_frame = frame_psnr(pred, gt)  # BxF
    per_frame_ssim = ssim(pred, gt)  # BxF
    mid = gt.shape[1] // 2
    return {
        "ppsnr": per_frame.mean().item(),
        "ssim": per_frame_ssim.mean().item(),
        "middle": per_frame[:, mid].mean().item(),
        "middle_ssim": per_frame_ssim[:, mid].mean().item(),
        "outer": per_frame[:, [0, -1]].mean().item(),
        "reblur": psnr(reblur(pred), blurred, dims=(1, 2, 3)).mean().item(),
    }


def baseline(gt: torch.Tensor, blurred: torch.Tensor) -> dict[str, float]:
    """The same figures for the trivial answer: the blurred input copied to every frame (its reblur is the
    input itself, 100 dB: NO_BASELINE lists such figures, which have no baseline to show)."""
    frames = gt.shape[1] if gt.shape[1] > 1 else 7  # a middle frame alone is still scored against a clip
    copies = blurred.unsqueeze(1).expand(-1, frames, -1, -1, -1)
    return score(copies, gt, blurred)


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
