"""Any number of frames: instants of the exposure, frames made between the network's, staged frames by
time, and a network adapted to another frame count."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import blur2clip
from blur2clip import timeline
from blur2clip.model import stage_frames, with_frames
from conftest import tiny_model, write_photo


def moving_square(k: int, size: int = 64, side: int = 8, travel: int = 40) -> np.ndarray:
    """k frames (float32 sRGB) of a white square crossing a grey background, `travel` px in all."""
    frames = np.full((k, size, size, 3), 0.3, np.float32)
    for i in range(k):
        x = int(round(8 + travel * (i + 0.5) / k))
        frames[i, 28:28 + side, x:x + side] = 1.0
    return frames


def test_instants_are_the_centres_of_equal_windows():
    assert np.allclose(timeline.instants(4), [0.125, 0.375, 0.625, 0.875])
    assert timeline.neighbours(7, 0.5) == (3, 4, 0.0)  # the middle instant is frame 4 of 7 itself
    a, b, u = timeline.neighbours(7, 0.25)  # between frames 1 (t=1.5/7) and 2 (t=2.5/7)
    assert (a, b) == (1, 2) and u == pytest.approx(0.25 * 7 - 1.5)
    assert timeline.neighbours(7, 0.01) == (0, 1, 0.0)  # before the first frame's centre: the first frame
    assert timeline.neighbours(7, 0.99)[:2] == (6, 6)


def test_the_same_count_is_the_frames_themselves_and_nearest_repeats_them():
    f = moving_square(7)
    assert timeline.resample(f, 7) is f
    held = timeline.resample(f, 21, "nearest")
    assert len(held) == 21 and all(np.array_equal(held[3 * i + 1], f[i]) for i in range(7))
    assert all(np.array_equal(held[3 * i + 1], held[3 * i + 2]) or np.array_equal(held[3 * i + 1], held[3 * i])
               for i in range(7))


def test_guarded_frames_never_show_a_moving_thing_twice_where_linear_ones_do():
    f = moving_square(7)  # the square moves ~6 px between frames: more than its blend can hide
    guarded = np.stack(list(timeline.resample(f, 48, "guarded")))
    linear = np.stack(list(timeline.resample(f, 48, "linear")))

    def ghosts(frames):  # pixels neither background nor square: a half-bright copy
        return int(((frames[..., 0] > 0.4) & (frames[..., 0] < 0.9)).sum())

    assert ghosts(linear) > 1000 and ghosts(guarded) == 0
    # each guarded frame shows the square once, whole
    assert all(int((g[..., 0] > 0.9).sum()) == 64 for g in guarded)


def test_where_frames_agree_the_blend_is_smooth_and_averages_back_in_linear_light():
    base = np.linspace(0.2, 0.8, 64, dtype=np.float32)[None, :, None].repeat(64, 0).repeat(3, 2)
    f = np.stack([base + 0.002 * i for i in range(7)])  # a slow fade: every pixel agrees between frames
    out = np.stack(list(timeline.resample(f, 48)))
    steps = np.abs(np.diff(out[:, 10, 10, 0]))
    assert steps.max() < 0.002  # no jump: in-between values
    lin = lambda x: np.clip(x, 0, 1) ** 2.2  # noqa: E731
    assert np.abs(lin(out).mean(0) - lin(f).mean(0)).max() < 1e-3


def test_uint8_frames_stay_uint8_and_the_timeline_is_lazy():
    f = (moving_square(7) * 255).astype(np.uint8)
    t = timeline.resample(f, 30)
    assert isinstance(t, timeline.Timeline) and len(t) == 30
    assert t[5].dtype == np.uint8 and t[-1].shape == (64, 64, 3) and len(t[2:6]) == 4
    with pytest.raises(IndexError):
        t[30]
    with pytest.raises(ValueError, match="unknown interpolation"):
        timeline.resample(f, 30, "cubic")


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("mode", ["guarded", "linear"])
def test_frames_blended_in_bands_are_the_frames_blended_whole(monkeypatch, dtype, mode):
    f = np.random.default_rng(1).random((7, 96, 80, 3), dtype=np.float32)  # every row different
    f = (f * 255).astype(np.uint8) if dtype == np.uint8 else f
    whole = np.stack(list(timeline.resample(f, 20, mode)))
    monkeypatch.setattr(timeline, "BAND_PIXELS", 80 * 5)  # bands of 5 rows, the last one of 1
    banded = np.stack(list(timeline.resample(f, 20, mode)))
    assert banded.dtype == dtype and np.array_equal(banded, whole)


def test_stage_frames_follow_the_time_of_each_frame():
    assert stage_frames(1, 7) == [3] and stage_frames(2, 7) == [2, 3, 4] and stage_frames(3, 7) == list(range(7))
    assert stage_frames(1, 21) == [10] and stage_frames(2, 21) == list(range(6, 15))


def test_a_network_adapted_to_more_frames_keeps_its_frames_at_their_instants():
    model = tiny_model()
    more = with_frames(model, 21)
    assert more.config.frames == 21 and model.config.frames == 7
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), more(x)
    assert b.shape == (1, 21, 3, 32, 32)
    for i in range(7):  # frame i of 7 sits where frame 3i+1 of 21 does
        assert torch.allclose(a[0, i], b[0, 3 * i + 1], atol=1e-6)
    assert not torch.allclose(b[0, 0], b[0, 20])
    assert with_frames(model, 7) is model


# ---------------------------------------------------------------- through the library and the command line

def blur2clip_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "blur2clip", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_extract_frames_gives_any_number_of_instants(tiny_weights):
    image = np.random.default_rng(0).random((40, 56, 3), dtype=np.float32)
    own = blur2clip.extract_frames(image, weights=tiny_weights, device="cpu")
    many = blur2clip.extract_frames(image, weights=tiny_weights, device="cpu", frames=21)
    assert own.shape == (7, 40, 56, 3) and many.shape == (21, 40, 56, 3) and many.dtype == np.float32
    assert all(np.array_equal(many[3 * i + 1], own[i]) for i in range(7))  # the same instants, the same frames
    assert blur2clip.extract_frames(image, weights=tiny_weights, device="cpu", frames=48).shape[0] == 48
    for n in (2, 97, 7.5, True):  # outside 3-96, or not a whole number: refused before the network runs
        with pytest.raises(blur2clip.SettingsError, match=f"frames: {n!r} is not a whole number from 3 to 96"):
            blur2clip.extract_frames(image, weights="no-such-weights", frames=n)
    for bad, says in ((image * 255, "image values run from .* to .*: give floats 0..1"),  # came out white
                      (image - 5, "image values run from -4.9"), ((image * 255).astype(np.int64), "image of int64")):
        with pytest.raises(ValueError, match=says):
            blur2clip.extract_frames(bad, weights=tiny_weights, device="cpu")
    deep = blur2clip.extract_frames((image * 65535).astype(np.uint16), weights=tiny_weights, device="cpu")
    np.testing.assert_allclose(deep, own, atol=2e-4)  # 16 bits per channel, scaled as a PNG's
    image[5, 7, 1] = np.nan
    image[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="image has 2 values that are not finite"):
        blur2clip.extract_frames(image, weights=tiny_weights, device="cpu")


def test_a_clip_of_n_frames_and_its_motion_score(tmp_path, tiny_weights):
    src = write_photo(tmp_path / "a.png")
    proc = blur2clip_cli(src, "-o", tmp_path / "f/", "--frames", "30", "--no-pingpong", "--weights", tiny_weights)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "f").glob("frame_*.png"))) == 30
    assert "30 frames at 24 fps, motion " in proc.stderr
    for bad in ("2", "97"):
        proc = blur2clip_cli(src, "-o", tmp_path / "g.gif", "--frames", bad, "--weights", tiny_weights)
        assert proc.returncode == 2 and "--frames" in proc.stderr


def test_batch_reports_motion_and_skips_photos_below_min_motion(tmp_path, tiny_weights):
    for i in range(2):
        write_photo(tmp_path / "shots" / f"p{i}.png", seed=i)
    proc = blur2clip_cli("batch", tmp_path / "shots", "--json", "--weights", tiny_weights, "--format", "gif",
                         "--max-size", "32", "--min-motion", "1000")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in lines] == ["skipped", "skipped"]
    assert all(r["error"].startswith("no motion blur (the frames move ") and r["motion_px"] >= 0 for r in lines)
    assert all(r["output"] is None and r["seconds"] > 0 for r in lines)  # no clip; the network's time
    assert not (tmp_path / "shots" / "clips").exists() or not any((tmp_path / "shots" / "clips").iterdir())
    proc = blur2clip_cli("batch", tmp_path / "shots", "--json", "--weights", tiny_weights, "--format", "gif",
                         "--max-size", "32", "--min-motion", "0")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and [r["status"] for r in lines] == ["done", "done"]
    assert all(isinstance(r["motion_px"], float) for r in lines)
