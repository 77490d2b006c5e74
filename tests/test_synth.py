"""Synthesis invariants: frames average to the clean blur, seeds repeat, no motion means no change."""

import numpy as np
import pytest
import torch

from blur2clip.synth import SynthConfig, _swarm, synthesize, to_linear


def photo(seed=0, h=120, w=160):
    """A textured test photo: gradients plus random blocks, HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (w + h)], -1)
    blocks = rng.random((h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
    return ((0.5 * base + 0.5 * blocks) * 255).astype(np.uint8)


@pytest.mark.parametrize("seed", range(4))
def test_frames_average_to_clean_blur_in_linear_light(seed):
    s = synthesize(photo(seed), np.random.default_rng(seed), SynthConfig(size=48))
    assert s.frames.shape == (7, 3, 48, 48) and s.blurred.shape == s.clean.shape == (3, 48, 48)
    mean_lin = to_linear(s.frames).mean(0)
    assert torch.allclose(mean_lin, to_linear(s.clean), atol=1e-5)
    assert s.frames.float().min() >= 0 and s.frames.max() <= 1


def test_same_seed_same_sample_other_seed_other_sample():
    cfg = SynthConfig(size=40)
    a = synthesize(photo(), np.random.default_rng(7), cfg)
    b = synthesize(photo(), np.random.default_rng(7), cfg)
    c = synthesize(photo(), np.random.default_rng(8), cfg)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.blurred, b.blurred)
    assert not torch.equal(a.frames, c.frames)


def test_no_motion_gives_frames_equal_to_the_input():
    s = synthesize(photo(), np.random.default_rng(3), SynthConfig(size=40).still())
    for f in s.frames:
        assert torch.allclose(f, s.blurred, atol=1e-5)


def test_defocus_is_scene_content_not_motion():
    """p_defocus: the background seen out of focus, alike in the input and in every frame (without motion
    the frames equal the input), with less fine detail than in focus; a point spreads over a disc."""
    from dataclasses import replace

    from blur2clip.synth import _defocus

    point = torch.zeros(1, 1, 21, 21)
    point[..., 10, 10] = 1.0
    spread = _defocus(point, 3.0)[0, 0]
    assert spread.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert spread[10, 10] == spread[10, 12] > 0 and spread[10, 13] > 0 and spread[10, 15] == 0
    assert torch.allclose(_defocus(torch.full((1, 3, 16, 16), 0.3), 2.5), torch.tensor(0.3), atol=1e-6)

    def detail(x):
        return ((x[..., 1:] - x[..., :-1]) ** 2).mean().item()

    still = SynthConfig(size=40).still()
    sharp, soft = [], []
    for seed in range(4):
        for p, out in ((0.0, sharp), (1.0, soft)):
            cfg = replace(still, p_defocus=p, defocus_px=(2.0, 3.0))
            s = synthesize(photo(seed), np.random.default_rng(seed), cfg)
            assert all(torch.allclose(f, s.blurred, atol=1e-5) for f in s.frames)
            out.append(detail(s.blurred))
    assert sum(soft) < 0.6 * sum(sharp), (soft, sharp)


def test_motion_moves_the_frames_and_blurs_the_input():
    cfg = SynthConfig(size=64, camera_px=20, camera_tail=0.01, p_static_camera=0.0, layer_probs=(0, 0, 1),
                      p_noise=0, p_jpeg=0, p_highlights=0)
    s = synthesize(photo(), np.random.default_rng(0), cfg)
    first_last = (s.frames[0] - s.frames[-1]).abs().mean()
    assert first_last > 0.02  # the outer frames differ: things moved
    assert torch.allclose(to_linear(s.frames).mean(0), to_linear(s.clean), atol=1e-5)  # linear light
    assert (s.frames.mean(0) - s.clean).abs().mean() > 1e-3  # not sRGB: that average is another image
    sharp = (s.frames[3][:, 1:] - s.frames[3][:, :-1]).abs().mean() + (s.frames[3][..., 1:] - s.frames[3][..., :-1]).abs().mean()
    blur = (s.blurred[:, 1:] - s.blurred[:, :-1]).abs().mean() + (s.blurred[..., 1:] - s.blurred[..., :-1]).abs().mean()
    assert blur < sharp  # averaging over the motion removes detail


def test_degradations_touch_the_input_only():
    cfg = SynthConfig(size=48, p_noise=1.0, p_jpeg=1.0, p_highlights=0.0)
    s = synthesize(photo(), np.random.default_rng(1), cfg)
    assert torch.allclose(to_linear(s.frames).mean(0), to_linear(s.clean), atol=1e-5)
    assert (s.blurred - s.clean).abs().mean() > 1e-3


def test_the_travel_says_where_the_middle_frame_moves():
    """Moved along the synthesis' travel, the middle frame becomes the first and the last frames (camera
    motion: one straight-ish path); a still sample travels nowhere."""
    from blur2clip.model import render

    cfg = SynthConfig(size=96, camera_px=12, camera_tail=0.01, p_static_camera=0.0, layer_probs=(1.0,),
                      p_noise=0, p_jpeg=0, p_highlights=0, camera_rotation=0, camera_zoom=0,
                      camera_perspective=0)
    for seed in range(3):
        s = synthesize(photo(seed, 200, 240), np.random.default_rng(seed), cfg)
        assert s.travel.shape == (2, 96, 96)
        assert 8 < float(s.travel.norm(dim=0).mean()) < 18
        moved = render(s.frames[3][None], s.travel[None], 7)[0]
        inner = (slice(None), slice(12, -12), slice(12, -12))
        for k in (0, 6):
            still_err = (s.frames[3] - s.frames[k])[inner].abs().mean()
            moved_err = (moved[k] - s.frames[k])[inner].abs().mean()
            assert moved_err < still_err / 3, (seed, k, float(moved_err), float(still_err))
    still = synthesize(photo(), np.random.default_rng(3), SynthConfig(size=40).still())
    assert not still.travel.any()


def test_a_long_camera_share_moves_the_camera_far_and_leaves_other_streams_alone():
    """p_long_camera: of the moving-camera samples, that share travels log-uniform in long_camera_px; at 0
    nothing is drawn for it, so the samples of a recipe without it stay the same."""
    flat = dict(size=64, p_static_camera=0.0, layer_probs=(1.0,), p_noise=0, p_jpeg=0, p_highlights=0,
                camera_rotation=0, camera_zoom=0, camera_perspective=0)
    long = SynthConfig(**flat, p_long_camera=1.0, long_camera_px=(40.0, 60.0))
    short = SynthConfig(**flat)
    for seed in range(3):
        s = synthesize(photo(seed, 200, 240), np.random.default_rng(seed), long)
        assert 34 < float(s.travel.norm(dim=0).median()) < 66, seed  # the camera's path, curved a little
        a = synthesize(photo(seed), np.random.default_rng(seed), short)
        b = synthesize(photo(seed), np.random.default_rng(seed), SynthConfig(**flat, p_long_camera=0.0))
        assert torch.equal(a.blurred, b.blurred) and float(a.travel.norm(dim=0).median()) < 30


def test_a_swarm_moves_small_things_each_its_own_way_and_leaves_other_streams_alone():
    """p_swarm: small things around one spot, each with its own travel (a still camera: the rest of the
    picture stays, and the frames still average to the clean blur); at 0 nothing is drawn for it."""
    flat = dict(size=96, p_static_camera=1.0, layer_probs=(1.0,), p_noise=0, p_jpeg=0, p_highlights=0)
    for seed in range(3):
        s = synthesize(photo(seed, 200, 240), np.random.default_rng(seed), SynthConfig(**flat, p_swarm=1.0))
        assert torch.allclose(to_linear(s.frames).mean(0), to_linear(s.clean), atol=1e-5)
        moving = s.travel.norm(dim=0) > 0.5
        assert 0.002 < float(moving.float().mean()) < 0.5, seed  # confined to small regions
        assert (s.frames[0] != s.frames[-1]).any()
        plain = synthesize(photo(seed, 200, 240), np.random.default_rng(seed), SynthConfig(**flat))
        assert not plain.travel.any()  # without it, nothing moves on a still camera with no layers
    swarm = _swarm(np.random.default_rng(0), SynthConfig(size=96, swarm_count=(30, 30), swarm_size=(4.0, 6.0)))
    assert len(swarm) == 30 and all(4 <= t["size"] <= 6 for t in swarm)
    headings = np.array([t["end"] / t["length"] for t in swarm])  # unit vectors
    assert np.linalg.norm(headings.mean(0)) < 0.99  # each its own direction, not one for all
    for seed in range(3):
        a = synthesize(photo(seed), np.random.default_rng(seed), SynthConfig(size=48))
        b = synthesize(photo(seed), np.random.default_rng(seed), SynthConfig(size=48, p_swarm=0.0))
        assert torch.equal(a.blurred, b.blurred) and torch.equal(a.frames, b.frames)


def test_a_layers_footprint_holds_every_pixel_it_shows():
    """synthesize works on a layer only inside _footprint's box: every output pixel where the layer's
    square lands at some sub-frame (by _layer_map itself) lies in it."""
    from blur2clip.synth import _footprint, _layer_map

    rng = np.random.default_rng(3)
    n = 64
    ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs, ys], -1)
    for _ in range(200):
        size = int(rng.integers(4, 48))
        centre = rng.uniform(-0.3 * n, 1.3 * n, 2)
        path = np.cumsum(rng.normal(0, [6, 6, 0.1, 0.05], (9, 4)), 0).astype(np.float32)
        lgrid = _layer_map(grid - torch.from_numpy(centre.astype(np.float32)), torch.from_numpy(path)[:, None, None])
        lgrid = lgrid + (size - 1) / 2
        shown = ((lgrid >= -0.5) & (lgrid <= size - 0.5)).all(-1).any(0)  # n x n
        (y0, y1), (x0, x1) = _footprint(path, centre, size, n)
        outside = shown.clone()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()
    still = np.zeros((9, 4), np.float32)  # a 10 px layer that stays at (20, 40): a box of 10 px and the margins
    assert _footprint(still, np.array([20.0, 40.0]), 10, n) == ((33, 48), (13, 28))


def test_a_still_camera_samples_its_background_once_with_the_values_of_a_moving_one_at_rest():
    from blur2clip.synth import _background

    n = 24
    bg = torch.rand(1, 6, 60, 70, generator=torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    p, c = torch.stack([xs, ys], -1) - (n - 1) / 2, torch.tensor([33.3, 29.6])
    at_rest = torch.zeros(14, 6)
    subs, flow = _background(bg, p, c, at_rest, n, still=False)
    once, no_flow = _background(bg, p, c, at_rest, n, still=True)
    assert once.shape == subs.shape == (14, 6, n, n) and torch.equal(once, subs)
    assert torch.equal(no_flow, flow) and not flow.any()
    moving = at_rest.clone()
    moving[:, 0] = torch.linspace(-3, 3, 14)
    assert not torch.equal(_background(bg, p, c, moving, n, still=False)[0], subs)


@pytest.mark.parametrize("kw", [dict(), dict(p_still=1.0),
                                dict(p_defocus=1.0, layer_warp=0.3, camera_depth=0.3, p_highlights=1.0, p_noise=1.0,
                                     p_jpeg=1.0)])
def test_the_synthesis_makes_its_tensors_on_the_device_it_is_given(kw):
    """A GPU renders a sample only if no tensor is made on the default device: with meta as the default,
    such a tensor (torch.zeros, arange, randn... without the device) fails to mix with the CPU's or shows in
    the result, and the draws stay the same. (torch.from_numpy is not caught: it makes CPU tensors anyway;
    benchmarks/synth_speed.py compares a GPU's samples with the CPU's.)"""
    cfg = SynthConfig(size=48, frames=7, **kw)
    photos = [photo(s) for s in range(3)]
    for i in range(3):
        plain = synthesize(photos[0], np.random.default_rng(i), cfg, photos)
        with torch.device("meta"):
            placed = synthesize(photos[0], np.random.default_rng(i), cfg, photos, device="cpu")
        for name in ("blurred", "frames", "clean", "travel"):
            a, b = getattr(plain, name), getattr(placed, name)
            assert b.device.type == "cpu" and torch.equal(a, b), name
