"""Metrics: order invariance, perfect and baseline scores, reblur, SSIM."""

import pytest
import torch

from blur2clip import metrics
from blur2clip.synth import to_linear, to_srgb


def clip(b=2, f=7, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, f, 3, h, w, generator=g)


def test_ppsnr_ignores_the_direction_of_time_per_sample():
    gt = clip()
    pred = gt + 0.01 * torch.randn_like(gt)
    mixed = torch.stack([pred[0], pred[1].flip(0)])  # the second sample played backwards
    blurred = to_srgb(to_linear(gt).mean(1))
    a, b = metrics.score(pred, gt, blurred), metrics.score(mixed, gt, blurred)
    assert abs(a["ppsnr"] - b["ppsnr"]) < 1e-4 and abs(a["outer"] - b["outer"]) < 1e-4


def test_ground_truth_scores_the_maximum_and_reblurs_to_the_input():
    gt = clip()
    blurred = metrics.reblur(gt)
    m = metrics.score(gt, gt, blurred)
    assert m["ppsnr"] == m["middle"] == m["outer"] == 100.0  # MSE floored at 1e-10
    assert m["reblur"] > 60


def test_baseline_is_the_input_copied_to_every_frame():
    """Flat frames of known values against a flat blurred input: the baseline's PSNRs are known by hand
    (frame i differs from the input by d_i everywhere, so its PSNR is -10 log10 d_i^2)."""
    values = torch.tensor([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    gt = values.view(1, 7, 1, 1, 1).expand(1, 7, 3, 16, 16).clone()
    blurred = torch.full((1, 3, 16, 16), 0.45)
    base = metrics.baseline(gt, blurred)
    expected = [-10 * torch.log10((v - 0.45) ** 2).item() for v in values]
    assert base["ppsnr"] == pytest.approx(sum(expected) / 7, abs=1e-3)
    assert base["middle"] == pytest.approx(expected[3], abs=1e-3)  # 0.05 off: 26.02 dB
    assert base["outer"] == pytest.approx((expected[0] + expected[6]) / 2, abs=1e-3)
    assert base["ppsnr"] == pytest.approx(16.886, abs=0.01)


def test_meter_weights_by_batch_size():
    m = metrics.Meter()
    m.add({"x": 1.0}, 1)
    m.add({"x": 4.0}, 3)
    assert m.mean() == {"x": 13 / 4}


def test_ssim_is_torchmetrics_on_the_frames_in_the_order_ppsnr_chose():
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    gt = clip(h=24, w=24)
    pred = (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1)
    mixed = torch.stack([pred[0], pred[1].flip(0)])  # the second sample played backwards
    blurred = metrics.reblur(gt)
    a, b = metrics.score(pred, gt, blurred), metrics.score(mixed, gt, blurred)
    assert abs(a["ssim"] - b["ssim"]) < 1e-6 and abs(a["middle_ssim"] - b["middle_ssim"]) < 1e-6
    expected = tm_ssim(pred.flatten(0, 1), gt.flatten(0, 1), data_range=1.0, reduction="none").view(2, 7)
    assert a["ssim"] == pytest.approx(expected.mean().item(), abs=1e-6)
    assert a["middle_ssim"] == pytest.approx(expected[:, 3].mean().item(), abs=1e-6)
    assert 0.2 < a["ssim"] < 0.99
    perfect = metrics.score(gt, gt, blurred)
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-6) and perfect["middle_ssim"] == pytest.approx(1.0, abs=1e-6)


def test_ssim_of_the_middle_frame_alone_and_in_chunks():
    gt = clip(h=24, w=24)
    pred = (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1)
    figures = metrics.score(pred, gt[:, 3:4], metrics.reblur(gt))
    assert set(figures) == {"middle", "middle_ssim", "reblur"}
    assert figures["middle_ssim"] == pytest.approx(metrics.ssim(pred[:, 3], gt[:, 3]).mean().item(), abs=1e-6)
    assert torch.allclose(metrics.ssim(pred, gt, chunk=3), metrics.ssim(pred, gt, chunk=100), atol=1e-6)
    assert metrics.ssim(pred, gt).shape == (2, 7)
