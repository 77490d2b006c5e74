"""A travel head's frames rendered in numpy (rendering.py) from its middle frame and travel: the same as
torch's model.render and keep_still, any number of instants, tiles, clips with a still, and the ONNX files
made before this output."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import write_photo
from test_extract import photo_like

from blur2clip import rendering
from blur2clip.errors import WeightsError
from blur2clip.extract import Extractor
from blur2clip.model import render
from blur2clip.rendering import Motion, guard_weight
from blur2clip.torchnet import keep_still


def test_rendering_is_torchs_render():
    """Bilinear, edge pixels repeated (travel that reaches past the border), at odd and even counts."""
    rng = np.random.default_rng(0)
    middle = rng.random((37, 53, 3), np.float32)
    travel = rng.normal(0, 9, (37, 53, 2)).astype(np.float32)
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    for n in (2, 7, 48):
        want = render(t(middle), t(travel), n)[0].permute(0, 2, 3, 1).numpy()
        motion = Motion(middle, middle, travel, n)
        got = np.stack([motion.render((k + 0.5) / n - 0.5) for k in range(n)])
        assert np.abs(got - want).max() < 1e-4
        assert np.array_equal(np.asarray(motion), np.clip(got, 0, 1))  # no guard: the frames clamped


def test_the_guard_is_keep_stills():
    """The still guard's weight, from the photo and a few frames, is torchnet.keep_still's."""
    rng = np.random.default_rng(1)
    photo = rng.random((30, 41, 3), np.float32)
    moving = (np.arange(41) > 20)[None, :, None]
    frames = [photo + (rng.random(photo.shape, np.float32) - 0.5) * 0.3 * moving for _ in range(3)]
    weight = guard_weight(np.max([np.abs(f - photo).mean(-1) for f in frames], 0))
    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)  # noqa: E731
    want = keep_still(t(photo)[None], torch.stack([t(f) for f in frames])[None])[0].permute(0, 2, 3, 1).numpy()
    got = np.stack([photo + weight * (f - photo) for f in frames])
    assert np.abs(got - want).max() < 1e-6
    assert weight[:, :10].max() == 0 and weight[:, 30:].min() > 0.5  # still on the left, moving on the right


def test_a_still_photo_stays_itself_and_a_moving_part_moves():
    """Motion.guarded: where the middle frame and travel change the photo by less than STILL_BELOW (a
    shimmer), every frame is the photo exactly; a part that travels is rendered moving."""
    rng = np.random.default_rng(2)
    photo = rng.random((40, 60, 3), np.float32)
    middle = photo + 0.01 * np.sin(np.arange(60, dtype=np.float32))[None, :, None]
    travel = np.zeros((40, 60, 2), np.float32)
    travel[:, 40:, 0] = 12.0  # the right part moves 12 px to the right
    motion = Motion.guarded(photo, middle, travel, 7, np.uint8)
    frames = np.asarray(motion.at(24))
    assert frames.shape == (24, 40, 60, 3) and frames.dtype == np.uint8
    assert (frames[:, :, :28] == (photo[:, :28] * 255 + 0.5).astype(np.uint8)).all()
    assert np.abs(frames[0, :, 45:].astype(int) - frames[-1, :, 45:]).mean() > 20


def test_a_few_moving_pixels_are_rendered_alone_to_the_same_frames(monkeypatch):
    """A subject moving before a still background: the frames made by rendering only the pixels the guard
    lets move (into the photo) are the frames of rendering every pixel, to the last bit, in uint8 and
    float32, at the middle instant too; with most of the photo moving, every pixel is rendered."""
    rng = np.random.default_rng(3)
    photo = rng.random((45, 70, 3), np.float32)
    middle, travel = photo.copy(), np.zeros((45, 70, 2), np.float32)
    middle[10:20, 30:42] = rng.random((10, 12, 3), np.float32)  # a subject, travelling 6 px right, 2 up
    travel[10:20, 30:42] = (6.0, -2.0)
    for dtype in (np.uint8, np.float32):
        motion = Motion.guarded(photo, middle, travel, 7, dtype)
        assert motion._moving is not None and 0 < len(motion._moving) < 0.4 * 45 * 70
        sparse = np.asarray(motion.at(9))
        monkeypatch.setattr(rendering, "SPARSE_BELOW", 0.0)
        dense = motion.at(9)
        assert dense._moving is None
        assert np.array_equal(sparse, np.asarray(dense))
        assert np.abs(sparse[0].astype(np.float32) - sparse[-1]).max() > 0.1 * (255 if dtype == np.uint8 else 1)
        monkeypatch.undo()
    everywhere = Motion.guarded(photo, middle + 0.2, travel + 5.0, 7, np.uint8)
    assert everywhere._moving is None


def test_the_percentile_and_the_colour_mean_are_numpys():
    rng = np.random.default_rng(4)
    a = rng.random((33, 47, 3), np.float32) * 2 - 0.5
    assert np.array_equal(rendering._colour_mean(a), a.mean(-1))  # to the last bit: the guard's departure
    for n in (1, 2, 3, 100, 10_001):
        a = rng.gamma(1.0, 3.0, (n,)).astype(np.float32)
        for q in (0, 50, 99, 100):
            assert rendering.percentile(a, q) == pytest.approx(float(np.percentile(a, q)), rel=1e-6, abs=1e-6)


def test_any_count_of_instants_tiled_as_whole(travel_weights):
    """48 instants rendered exactly; the tiled result matches the whole one within the tolerance of the
    frames head (test_extract.test_tiled_matches_untiled); the middle instant is the middle frame."""
    image = photo_like(150, 200)
    whole = Extractor(travel_weights, device="cpu", tile=0)(image)
    tiled = Extractor(travel_weights, device="cpu", tile=96, overlap=32)(image)
    a, b = np.asarray(whole.at(48)), np.asarray(tiled.at(48))
    assert a.shape == (48, 150, 200, 3)
    diff = np.abs(a - b)
    assert diff.mean() < 1e-4 and diff.max() < 1e-2  # measured: 5.6e-5 and 3.8e-3
    assert np.abs(a[0] - a[-1]).mean() > 0.01  # they move
    assert np.array_equal(whole.at(49)[24], whole.frame(0.0))
    odd = Extractor(travel_weights, device="cpu", tile=0)(image[:101, :77])
    assert np.asarray(odd.at(3)).shape == (3, 101, 77, 3)


def test_a_clip_and_its_still_from_a_travel_head(tmp_path, travel_weights, monkeypatch):
    """Through make_clip: a folder of 30 instants; and with a still, the network runs at the photo's size
    and the clip's frames (a GIF, capped at media.ANIMATED_MAX_SIZE, made small here) are rendered from the
    shrunk middle frame and travel."""
    from PIL import Image

    from blur2clip import media
    from blur2clip.job import make_clip

    photo = write_photo(tmp_path / "p.png")
    result = make_clip(photo, tmp_path / "f/", frames=30, pingpong=False, weights=travel_weights, device="cpu")
    assert result.frames == 30 and len(list((tmp_path / "f").glob("frame_*.png"))) == 30
    Image.fromarray((photo_like(300, 400) * 255).astype(np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(media, "ANIMATED_MAX_SIZE", 200)
    result = make_clip(tmp_path / "big.png", tmp_path / "c.gif", still=tmp_path / "still.png", frames=12,
                       pingpong=False, weights=travel_weights, device="cpu")
    assert Image.open(tmp_path / "still.png").size == (400, 300)
    gif = Image.open(tmp_path / "c.gif")
    assert gif.size == (200, 150) and gif.n_frames == 12 and result.frames == 12


def test_an_older_travel_onnx_file_is_not_used(tmp_path, travel_weights, caplog):
    """A travel head's ONNX file from before its output became the middle frame and travel: auto uses
    torch (with a warning), --engine onnx says in one line to export it again."""
    import shutil

    import onnx

    path = tmp_path / "old.safetensors"
    shutil.copy(travel_weights, path)
    graph = onnx.load(str(travel_weights.with_suffix(".onnx")))
    kept = [p for p in graph.metadata_props if p.key != "outputs"]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    onnx.save(graph, str(path.with_suffix(".onnx")))
    with caplog.at_level(logging.WARNING):
        assert Extractor(path, device="cpu").engine == "torch"
    assert "made by an older blur2clip" in caplog.text
    with pytest.raises(WeightsError, match="made by an older blur2clip; export it again"):
        Extractor(path, device="cpu", engine="onnx")


def test_the_motion_score_of_a_travel_head_is_its_subjects_travel():
    """motion_px of a rendering.Motion reads the travel: a subject on 10% of a still photo scores its own
    travel between the first and last instants (where phase correlation of whole tiles may see only the
    still background); a photo the guard keeps whole scores 0."""
    from blur2clip.motion import motion_px

    rng = np.random.default_rng(4)
    photo = rng.random((60, 80, 3), np.float32)
    travel = np.zeros((60, 80, 2), np.float32)
    travel[20:44, 30:50] = (6.0, 8.0)  # a subject travelling 10 px over the exposure, 10% of the photo
    assert motion_px(Motion(photo, photo, travel, 21)) == pytest.approx(10 * 20 / 21, rel=1e-4)
    assert motion_px(Motion(photo, photo, travel, 21, weight=np.zeros((60, 80, 1), np.float32))) == 0.0
    assert motion_px(Motion(photo, photo, np.zeros_like(travel), 21)) == 0.0
