"""The losses' direction-of-time rules (blur2clip/losses.py), on frames with a known motion."""

import pytest
import torch

from blur2clip import losses
from blur2clip.losses import against_canonical, staged_loss
from blur2clip.train import TrainConfig


def texture(h=160, w=224, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 40, w + 40, generator=g), 5, 1, 2)


def moving(base, dx, dy, frames=7):
    """1xFx3xHxW: base translated by (dx, dy) px per frame, cropped clear of the wrap-around."""
    shifted = [torch.roll(base, (round(dy * i), round(dx * i)), (2, 3)) for i in range(frames)]
    return torch.stack(shifted, 1)[..., 20:-20, 20:-20]


def test_the_canonical_order_follows_the_motion_towards_plus_x():
    base = texture()
    for dx, dy in [(3, 0), (0, 3), (2, -2), (6, 1)]:
        assert against_canonical(moving(base, dx, dy)).float().mean() < 0.05, (dx, dy)
        assert against_canonical(moving(base, -dx, -dy)).float().mean() > 0.9, (-dx, -dy)


def test_each_cell_gets_its_own_order():
    """Left half moving right, right half moving left: only the right half runs against the canonical order."""
    left, right = moving(texture(seed=1), 3, 0), moving(texture(seed=2), -3, 0)
    frames = torch.cat([left[..., :96], right[..., 96:]], -1)  # cells are 32 px: the seam is on a cell edge
    against = against_canonical(frames)[0, 0, 0]
    assert against[:, :96].float().mean() < 0.05 and against[:, 96:].float().mean() > 0.9


def test_the_local_loss_does_not_depend_on_the_order_the_truth_is_given_in():
    """Scored against the canonical order, a prediction has the same loss whichever way the true frames
    run; the prediction in canonical order scores far better than the reversed one."""
    gt = moving(texture(), -3, 1)
    clean = gt.mean(1)
    cfg = TrainConfig(data="d", out="o", order="local", w_pairs=0.0, w_reblur=0.0)
    canonical = gt.flip(1)
    forward, _ = staged_loss(canonical, gt, clean, 3, cfg, 0.0)
    backward, _ = staged_loss(canonical, gt.flip(1), clean, 3, cfg, 0.0)
    assert torch.isclose(forward, backward) and forward < 2e-3
    wrong, _ = staged_loss(gt, gt, clean, 3, cfg, 0.0)  # the true order, but against the canonical one
    assert wrong > 10 * forward
    per_sample, _ = staged_loss(gt, gt, clean, 3, TrainConfig(data="d", out="o", w_pairs=0.0, w_reblur=0.0), 0.0)
    assert per_sample < 2e-3  # the per-sample rule takes either order


def test_the_true_travel_decides_the_order_where_it_is_known():
    """Content moving left (travel -x): the frames run against the canonical order, and the travel turned
    is +x. Unknown travel (NaN) falls back to the order measured from the frames."""
    from blur2clip.losses import canonical_travel

    gt = moving(texture(), -3, 0)
    h, w = gt.shape[-2:]
    true = torch.tensor([-21.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, h, w).clone()
    against, turned = canonical_travel(gt, true)
    assert against.all() and torch.equal(turned, -true)
    right = torch.tensor([21.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, h, w)
    assert not canonical_travel(gt, right)[0].any()  # the known travel wins over what the frames show
    unknown = torch.full((1, 2, h, w), float("nan"))
    against, turned = canonical_travel(gt, unknown)
    assert torch.equal(against, against_canonical(gt)) and turned.isnan().all()


def test_the_travel_loss_is_least_for_the_canonical_travel():
    from blur2clip.model import render

    base = texture()[..., 20:-20, 20:-20]
    true = torch.tensor([-14.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, *base.shape[-2:]).contiguous()
    gt = render(base, true, 7)
    cfg = TrainConfig(data="d", out="o", w_pairs=0.0, w_reblur=0.0)
    turned = render(base, -true, 7)  # the canonical order: moving right
    right, parts = staged_loss(turned, gt, gt.mean(1), 3, cfg, 0.0, -true, true)
    assert parts["travel"] < 2e-3 and right < 3e-3  # the Charbonnier floor is 1e-3
    wrong, parts = staged_loss(gt, gt, gt.mean(1), 3, cfg, 0.0, true, true)  # the true order, not canonical
    assert parts["travel"] > 1.0 and wrong > 10 * right
    unknown = torch.full_like(true, float("nan"))
    _, parts = staged_loss(turned, gt, gt.mean(1), 3, cfg, 0.0, -true, unknown)
    assert "travel" not in parts


def test_the_still_term_counts_travel_only_where_the_truth_is_still():
    """w_still: the mean travel (px) predicted over the pixels whose true travel is under STILL_PX;
    pixels that truly move, or whose travel is unknown, do not count."""
    from blur2clip.model import render

    base = texture()[..., 20:-20, 20:-20]
    true = torch.zeros(1, 2, *base.shape[-2:])
    true[:, 0, :, :60] = 12.0  # the left part moves, the rest is still
    true[:, :, :10, 100:] = float("nan")  # and a corner is unknown
    gt = render(base, torch.nan_to_num(true), 7)
    cfg = TrainConfig(data="d", out="o", w_pairs=0.0, w_reblur=0.0, w_still=1.0)
    travel = torch.nan_to_num(true).clone()
    _, exact = staged_loss(gt, gt, gt.mean(1), 3, cfg, 0.0, travel, true)
    travel[:, 1, :, 60:] = 3.0  # 3 px invented over the still part
    travel[:, 1, :10, 100:] = 50.0  # the unknown corner
    travel[:, 1, :, :60] = 5.0  # an error where it truly moves (the travel term's)
    _, invented = staged_loss(gt, gt, gt.mean(1), 3, cfg, 0.0, travel, true)
    assert exact["still"] < 2e-3
    assert invented["still"] == pytest.approx(3.0, abs=1e-3)
    _, off = staged_loss(gt, gt, gt.mean(1), 3, TrainConfig(data="d", out="o"), 0.0, travel, true)
    assert "still" not in off



def test_the_travel_over_moving_pixels_is_not_diluted_by_the_still_ones():
    """travel_over="moving": the travel's error averaged over the pixels that truly moved only, so a small
    moving object weighs as much as a large one; "known" (the default) averages over every known pixel."""
    from blur2clip.model import TRAVEL_PX, render

    base = texture()[..., 20:-20, 20:-20]
    true = torch.zeros(1, 2, *base.shape[-2:])
    true[:, 0, 40:60, 40:80] = 12.0  # a small object moves right; the rest (96% of the pixels) is still
    gt = render(base, true, 7)
    travel = true.clone()
    travel[:, 0, 40:60, 40:80] = 6.0  # half its travel
    travel[:, 1, :10, :] = 0.4  # a little invented on still pixels (under STILL_PX once turned canonical)
    known = TrainConfig(data="d", out="o", w_pairs=0.0, w_reblur=0.0)
    over_moving = TrainConfig(data="d", out="o", w_pairs=0.0, w_reblur=0.0, travel_over="moving")
    _, diluted = staged_loss(gt, gt, gt.mean(1), 3, known, 0.0, travel, true)
    _, moving_only = staged_loss(gt, gt, gt.mean(1), 3, over_moving, 0.0, travel, true)
    # the object's error alone, over both components of the travel (the vertical one exact)
    assert moving_only["travel"] == pytest.approx(6.0 / TRAVEL_PX / 2, abs=1e-3)  # Charbonnier floor 1e-3
    share = 20 * 40 / true[0, 0].numel()
    assert diluted["travel"] < 2 * share * moving_only["travel"]
    _, right = staged_loss(gt, gt, gt.mean(1), 3, over_moving, 0.0, true, true)
    assert right["travel"] < 1e-2

def test_the_frequency_term_scores_the_middle_frame_alone_by_parseval():
    """w_fft: the mean absolute real and imaginary part of the middle frame's error, orthonormally
    transformed: zero for the true middle frame whatever the other frames do; a constant error c on one
    channel is one coefficient, c * sqrt(H * W), among the 2 * 3 * H * (W // 2 + 1) parts."""
    b, f, h, w = 2, 7, 24, 20
    gt = torch.rand(b, f, 3, h, w, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(data="d", out="o", w_pairs=0.0, w_reblur=0.0, w_fft=1.0)
    pred = gt.clone()
    pred[:, 0] += 0.2  # an outer frame is wrong: not this term's
    _, parts = staged_loss(pred, gt, gt.mean(1), 3, cfg, 0.0)
    assert parts["fft"] == pytest.approx(0.0, abs=1e-6)
    pred[:, f // 2, 1] += 0.1
    loss, parts = staged_loss(pred, gt, gt.mean(1), 3, cfg, 0.0)
    assert parts["fft"] == pytest.approx(0.1 * (h * w) ** 0.5 / (2 * 3 * h * (w // 2 + 1)), rel=1e-4)
    assert loss.item() == pytest.approx(parts["rec"] + parts["fft"], rel=1e-5)
    _, off = staged_loss(pred, gt, gt.mean(1), 3, TrainConfig(data="d", out="o"), 0.0)
    assert "fft" not in off


def test_the_harm_term_counts_only_what_is_further_from_the_truth_than_the_blur():
    """w_harm: per pixel of each frame, how much further the frame is from the true one than the blur is,
    averaged with the frames' weights; zero wherever the frame is at least as near as the blur."""
    b, f, h, w = 2, 7, 16, 12
    gt = torch.rand(b, f, 3, h, w, generator=torch.Generator().manual_seed(0))
    blur = gt.mean(1)
    cfg = TrainConfig(data="d", out="o", w_pairs=0.0, w_reblur=0.0, w_middle=0.0, w_harm=1.0)
    _, parts = staged_loss(gt.clone(), gt, blur, 3, cfg, 0.0)
    assert parts["harm"] == pytest.approx(0.0, abs=1e-7)  # the truth does no harm
    _, parts = staged_loss(blur[:, None].expand_as(gt).clone(), gt, blur, 3, cfg, 0.0)
    assert parts["harm"] == pytest.approx(0.0, abs=1e-7)  # nor does the blur itself
    still = blur[:, None].expand_as(gt).clone()  # a still photo: the blur is the truth in every frame
    pred = still.clone()
    pred[:, :, :, :, : w // 2] += 0.3  # half of every frame made 0.3 worse on every channel
    loss, parts = staged_loss(pred, still, blur, 3, cfg, 0.0)
    assert parts["harm"] == pytest.approx(0.3 / 2, rel=1e-5)
    assert loss.item() == pytest.approx(parts["rec"] + parts["harm"], rel=1e-5)
    assert "harm" not in staged_loss(pred, still, blur, 3, TrainConfig(data="d", out="o"), 0.0)[1]


def test_rmse_scores_a_frame_by_its_root_mean_square_error_where_charbonnier_takes_the_mean_absolute_one():
    """rec: an error c on half of the middle frame's pixels is c / 2 per pixel for Charbonnier (about L1)
    and c / sqrt(2) for the frame's RMSE, times the middle frame's share of the frames' weight."""
    b, f, h, w = 2, 7, 16, 16
    gt = torch.rand(b, f, 3, h, w, generator=torch.Generator().manual_seed(1))
    pred = gt.clone()
    pred[:, f // 2, :, : h // 2] += 0.2
    share = (1 + 9.0) / (f + 9.0)  # w_middle 9
    for rec, expected in (("charbonnier", 0.1), ("rmse", 0.2 / 2**0.5)):
        cfg = TrainConfig(data="d", out="o", rec=rec, w_middle=9.0, w_pairs=0.0, w_reblur=0.0)
        _, parts = staged_loss(pred, gt, gt.mean(1), 3, cfg, 0.0)
        _, exact = staged_loss(gt, gt, gt.mean(1), 3, cfg, 0.0)
        assert parts["rec"] - exact["rec"] == pytest.approx(share * expected, rel=1e-2), rec


def test_the_true_travel_agrees_with_the_order_measured_from_the_frames():
    """On synthetic camera blurs the synthesis' travel and `against_canonical`'s estimate pick the same
    order almost everywhere: the two rules share one sign convention."""
    import numpy as np

    from blur2clip.losses import canonical_travel
    from blur2clip.synth import SynthConfig, synthesize
    from test_synth import photo

    cfg = SynthConfig(size=96, camera_px=10, camera_tail=0.01, p_static_camera=0.0, layer_probs=(1.0,),
                      p_noise=0, p_jpeg=0, p_highlights=0)
    same = []
    for seed in range(6):
        s = synthesize(photo(seed, 200, 240), np.random.default_rng(seed), cfg)
        told = canonical_travel(s.frames[None], s.travel[None])[0]
        same.append((told == against_canonical(s.frames[None])).float().mean().item())
    assert np.mean(same) > 0.85, same


def test_known_and_unknown_travel_in_one_batch_give_finite_gradients():
    from blur2clip.model import render

    base = texture()[..., 20:-20, 20:-20].repeat(2, 1, 1, 1)
    true = torch.tensor([9.0, 3.0]).view(1, 2, 1, 1).expand(2, 2, *base.shape[-2:]).clone()
    gt = render(base, true, 7)
    true[1] = float("nan")  # the second sample comes from real frames
    travel = torch.zeros_like(true, requires_grad=True)
    pred = render(base, travel, 7)
    loss, parts = staged_loss(pred, gt, gt.mean(1), 3, TrainConfig(data="d", out="o"), 0.0, travel, true)
    loss.backward()
    assert torch.isfinite(loss) and parts["travel"] > 0.1 and torch.isfinite(travel.grad).all()
    assert travel.grad[0].abs().sum() > 0


def _cpp_compiler() -> bool:
    try:
        losses.require_compiler()
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not _cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, on importing its compiler
def test_the_compiled_loss_is_the_eager_one():
    """`train --compile`: the same loss, parts and gradients as the eager terms (to float rounding), with
    known and unknown travel in one batch, bfloat16 predictions, and the pairwise term on and faded out."""
    from blur2clip.model import render

    base = texture(72, 88)[..., 20:-20, 20:-20].repeat(2, 1, 1, 1)
    true = torch.tensor([5.0, -2.0]).view(1, 2, 1, 1).expand(2, 2, *base.shape[-2:]).clone()
    gt = render(base, true, 7)
    true[1, :, :8] = float("nan")
    true[0, :, 8:16] = 0.0  # still pixels (w_still)
    cfg = TrainConfig(data="d", out="o", w_middle=9.0, w_reblur=1.0, w_still=0.5, w_fft=0.5, w_harm=0.5)
    for progress in (0.1, 0.9):  # the pairwise term fades out by half-way
        results = []
        for compiled in (False, True):
            travel = torch.full_like(true, 1.0).requires_grad_()
            pred = render(base, travel, 7).bfloat16()
            loss, parts = staged_loss(pred, gt, gt.mean(1), 3, cfg, progress, travel, true, compiled=compiled)
            loss.backward()
            results.append((loss.item(), parts, travel.grad))
        (eager, eager_parts, eager_grad), (fast, fast_parts, fast_grad) = results
        assert fast == pytest.approx(eager, rel=1e-5) and fast_parts.keys() == eager_parts.keys()
        assert all(fast_parts[k] == pytest.approx(v, rel=1e-5, abs=1e-7) for k, v in eager_parts.items())
        assert ("pairs" in eager_parts) == (progress < 0.5)
        torch.testing.assert_close(fast_grad, eager_grad, rtol=1e-4, atol=1e-7)
    assert losses._compiled.cache_info().currsize == 1  # the compiled terms did run
