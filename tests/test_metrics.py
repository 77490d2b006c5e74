"""Metrics: order invariance, perfect and baseline scores, reblur."""

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
    a, b = metrics.evaluate(pred, gt, blurred), metrics.evaluate(mixed, gt, blurred)
    assert abs(a["ppsnr"] - b["ppsnr"]) < 1e-4 and abs(a["outer"] - b["outer"]) < 1e-4


def test_ground_truth_scores_the_maximum_and_reblurs_to_the_input():
    gt = clip()
    blurred = metrics.reblur(gt)
    m = metrics.evaluate(gt, gt, blurred)
    assert m["ppsnr"] == m["middle"] == m["outer"] == 100.0  # MSE floored at 1e-10
    assert m["reblur"] > 60


def test_baseline_is_the_input_copied_to_every_frame():
    gt = clip()
    blurred = metrics.reblur(gt)
    base = metrics.baseline(gt, blurred)
    copies = blurred.unsqueeze(1).expand_as(gt)
    assert base == metrics.evaluate(copies, gt, blurred)
    assert base["ppsnr"] < 20  # random frames are far from their average


def test_meter_weights_by_batch_size():
    m = metrics.Meter()
    m.add({"x": 1.0}, 1)
    m.add({"x": 4.0}, 3)
    assert m.mean() == {"x": 13 / 4}
