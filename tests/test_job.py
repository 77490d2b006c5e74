"""One photo file -> one clip file (job.py): make_clip with the real media and writers, end to end; the
options object and the two forms of the extractor."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_model
from imageio_ffmpeg import count_frames_and_secs
from PIL import Image

from blur2clip import CLIP_FRAMES, media
from blur2clip.errors import MediaError
from blur2clip.extract import Extractor
from blur2clip.job import ClipOptions, ClipResult, make_clip

Ex = functools.partial(Extractor, device="cpu")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.4 * np.sin(np.stack([9 * xx, 7 * yy, 5 * (xx + yy)], -1) * 6)
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def pngs(folder) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("frame_*.png"))]


@pytest.fixture
def real_photo(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "blurred.jpg"
    Image.fromarray((photo_like(72, 96) * 255 + 0.5).astype(np.uint8)).save(path, quality=92)
    return path


def test_make_clip_flow(real_photo, model):
    """The network's own 7 frames (frames=None), shrunk to max_size, forward and back, twice: an mp4 of
    2 x 12 frames; the same frames as a folder hold each once; the still is the middle frame."""
    ex = Ex(model=model, tile=0)
    res = make_clip(real_photo, still=real_photo.with_name("mid.png"), extractor=ex, frames=None, fps=12, loops=2,
                    max_size=48)
    assert isinstance(res, ClipResult)
    assert res.output == real_photo.with_name("blurred.mp4") and res.still == real_photo.with_name("mid.png")
    assert (res.frames, res.width, res.height) == (12, 48, 36)  # pingpong 7 -> 12
    assert count_frames_and_secs(str(res.output))[0] == 24  # loops=2
    assert set(res.timings) >= {"load", "decode", "model", "encode"}
    assert res.seconds >= sum(res.timings.values()) * 0.99

    options = ClipOptions(fmt="frames", frames=None, max_size=48)
    folder = make_clip(real_photo, real_photo.with_name("f"), options, extractor=ex).output
    frames = pngs(folder)
    assert len(frames) == 7 and frames[0].shape == (36, 48, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(res.still).convert("RGB")), frames[3])
    assert np.abs(frames[0].astype(int) - frames[6]).mean() > 0.5  # the ends differ: one direction of time

    back = make_clip(real_photo, real_photo.with_name("r"), options.with_(reverse=True), extractor=ex)
    np.testing.assert_array_equal(np.stack(pngs(back.output)), np.stack(frames[::-1]))
    assert back.frames == 7


def test_options_as_an_object_or_keywords_and_the_extractor_as_a_factory(real_photo, model):
    made = []

    def factory():
        made.append(1)
        return Ex(model=model, tile=0)

    options = ClipOptions(fmt="frames", frames=9, max_size=40)
    a = make_clip(real_photo, real_photo.with_name("a"), options, extractor=factory)
    b = make_clip(real_photo, real_photo.with_name("b"), extractor=factory, fmt="frames", frames=9, max_size=40)
    assert made == [1, 1] and a.frames == b.frames == 9
    np.testing.assert_array_equal(np.stack(pngs(a.output)), np.stack(pngs(b.output)))
    with pytest.raises(TypeError, match="colour"):
        make_clip(real_photo, extractor=factory, colour="red")


def test_a_refused_output_never_loads_the_network(real_photo, model):
    link = real_photo.with_name("link.jpg")
    os.link(real_photo, link)  # another name for the same file
    before = real_photo.read_bytes()
    cases = [dict(out=real_photo), dict(out=real_photo.parent / "." / real_photo.name, overwrite=True),
             dict(still=real_photo), dict(out=link, fmt="mp4", overwrite=True),
             dict(out=real_photo.with_name("same.mp4"), still=real_photo.with_name("same.mp4"))]
    for kw in cases:
        with pytest.raises(MediaError) as e:
            make_clip(real_photo, extractor=lambda: pytest.fail("loaded for a refused output"), **kw)
        assert e.value.kind == "output"
    existing = real_photo.with_name("taken.mp4")
    existing.write_bytes(b"keep")
    with pytest.raises(MediaError, match="taken.mp4: already exists") as e:
        make_clip(real_photo, existing, extractor=lambda: pytest.fail("loaded"))
    assert e.value.kind == "output" and existing.read_bytes() == b"keep" and real_photo.read_bytes() == before
    with pytest.raises(MediaError, match="missing.jpg: no such file") as e:
        make_clip(real_photo.with_name("missing.jpg"), extractor=Ex(model=model, tile=0))
    assert e.value.kind == "input"
    # a bad photo is reported as a bad photo before any weights load (they might be missing too)
    bad = real_photo.with_name("bad.jpg")
    bad.write_bytes(b"not a jpeg")
    for photo in (real_photo.with_name("missing.jpg"), bad):
        with pytest.raises(MediaError) as e:
            make_clip(photo, extractor=lambda: pytest.fail("loaded before the photo was read"))
        assert e.value.kind == "input"


@pytest.mark.parametrize("settings, message", [
    (dict(fps=5000), "fps: 5000 is not a number from 0.1 to 1000"),
    (dict(fps=float("nan")), "fps: nan is not a number from 0.1 to 1000"),
    (dict(fps=0.05), "fps: 0.05 is not a number from 0.1 to 1000"),  # as the command line's --fps
    (dict(frames=200), "frames: 200 is not a whole number from 3 to 96"),
    (dict(frames=7.5), "frames: 7.5 is not a whole number from 3 to 96"),
    (dict(loops=0), "loops: 0 is not a whole number from 1 to 1000"),
    (dict(crf=True), "crf: True is not a whole number from 0 to 51"),
    (dict(max_size=0), "max_size: 0 is not a whole number of 1 or more"),
    (dict(quality="best"), "quality: 'best' is not one of high, medium, low"),
    (dict(fmt="avi"), "fmt: 'avi' is not one of mp4, gif, webp, frames"),
    (dict(overwrite="false"), "overwrite: 'false' is not True or False"),  # a string is true: it overwrote
    (dict(pingpong=0), "pingpong: 0 is not True or False"),
])
def test_settings_that_cannot_make_a_clip_are_refused_before_any_work(real_photo, settings, message):
    from blur2clip.errors import SettingsError

    with pytest.raises(SettingsError) as e:
        ClipOptions(**settings)
    assert str(e.value) == f"ClipOptions {message}"
    out = real_photo.with_name("never.gif")
    with pytest.raises(SettingsError):  # as keywords too, before the photo is read or a network loads
        make_clip(real_photo.with_name("missing.jpg"), out, extractor=lambda: pytest.fail("loaded"), **settings)
    assert not out.exists()
    assert ClipOptions(frames=np.int64(7), fps=np.float32(12.5), crf=0, max_size=1).frames == 7  # numpy numbers


def test_an_output_folder_or_a_suffix_with_a_format_as_the_command_line_takes_them(real_photo, model, tmp_path):
    ex = Ex(model=model, tile=0)
    made = make_clip(real_photo, f"{tmp_path}/clips/", extractor=ex, fmt="gif", max_size=32)  # a folder: into it
    assert made.output == tmp_path / "clips" / f"{real_photo.stem}.gif" and made.output.is_file()
    with pytest.raises(MediaError, match="y.mp4: its name says mp4, the format asked is gif"):  # a GIF named .mp4
        make_clip(real_photo, tmp_path / "y.mp4", extractor=lambda: pytest.fail("loaded"), fmt="gif")
    assert not (tmp_path / "y.mp4").exists()


def test_the_size_reported_is_the_size_of_the_file(tmp_path, model):
    """An MP4 scaled to fit H.264 level 5.1 (at 1000 fps a 640x480 frame is too many macroblocks a
    second) reports the size the file holds, not the network's."""
    import imageio_ffmpeg

    photo = tmp_path / "wide.png"
    Image.fromarray((photo_like(480, 640) * 255 + 0.5).astype(np.uint8)).save(photo)
    res = make_clip(photo, extractor=Ex(model=model, tile=0), frames=3, fps=1000)
    meta = next(imageio_ffmpeg.read_frames(str(res.output)))
    assert (res.width, res.height) == tuple(meta["size"]) and res.width < 640


class Seen:
    """The real extractor, noting the size of each image it is given."""

    def __init__(self, extractor):
        self.extractor, self.sizes = extractor, []

    def __call__(self, image, dtype=np.float32):
        self.sizes.append(image.shape[:2])
        return self.extractor(image, dtype)


def test_a_shrunk_clip_runs_the_network_at_its_size_unless_a_still_wants_the_photos(tmp_path, model):
    """Without a still the network works at the clip's size; with one, at the photo's: the still keeps
    it (the middle frame itself) and the clip's frames are shrunk to the same clip."""
    import imageio_ffmpeg

    photo = tmp_path / "wide.png"
    pixels = (photo_like(480, 640) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(pixels).save(photo)
    seen = Seen(Ex(model=model, tile=0))
    res = make_clip(photo, tmp_path / "a.mp4", extractor=seen, frames=3, fps=1000)  # over level 5.1's rate
    assert res.capped and res.width < 640 and seen.sizes == [(res.height, res.width)]
    kept = tmp_path / "b.png"
    both = make_clip(photo, tmp_path / "b.mp4", still=kept, extractor=seen, frames=3, fps=1000)
    assert seen.sizes[-1] == (480, 640) and both.capped
    frames = Ex(model=model, tile=0)(pixels, dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(kept)), frames[len(frames) // 2])
    meta = next(imageio_ffmpeg.read_frames(str(both.output)))
    assert tuple(meta["size"]) == (both.width, both.height) == (res.width, res.height)
    same = make_clip(photo, tmp_path / "c.mp4", extractor=seen, frames=3)  # 24 fps: fits, not shrunk
    assert not same.capped and seen.sizes[-1] == (480, 640) and (same.width, same.height) == (640, 480)


@pytest.mark.parametrize("fmt", ["mp4", "frames"])
def test_make_clip_end_to_end(real_photo, tiny_weights, fmt):
    out = real_photo.with_name("clip.mp4" if fmt == "mp4" else "clip_frames")
    still = real_photo.with_name("middle.jpg")
    res = make_clip(real_photo, out, fmt=fmt, still=still, weights=tiny_weights, device="cpu", tile=64)
    assert res.output.exists() and res.still == still and still.is_file()
    # the default instants, forward and back; a folder of frames holds each instant once
    played = CLIP_FRAMES if fmt == "frames" else len(media.play_order(CLIP_FRAMES, pingpong=True))
    assert (res.width, res.height) == (96, 72) and res.frames == played and res.motion >= 0
    if fmt == "frames":
        assert res.output.is_dir() and len([p for p in res.output.iterdir() if p.is_file()]) == played
        distinct = {p.read_bytes() for p in res.output.iterdir() if p.is_file()}
        assert len(distinct) > played // 2  # instants, not copies
    else:
        assert res.output.stat().st_size > 0
    with pytest.raises(media.MediaError):
        make_clip(real_photo, out, fmt=fmt, weights=tiny_weights, device="cpu")  # exists, no overwrite


def test_make_clip_refuses_photo_for_real(real_photo, tiny_weights):
    before = real_photo.read_bytes()
    with pytest.raises(media.MediaError, match="blurred.jpg"):
        make_clip(real_photo, real_photo, fmt="mp4", weights=tiny_weights, device="cpu", overwrite=True)
    with pytest.raises(media.MediaError, match="blurred.jpg"):
        make_clip(real_photo, still=real_photo, weights=tiny_weights, device="cpu", overwrite=True)
    assert real_photo.read_bytes() == before


def test_on_tile_reports_each_pass_over_tiles(tiny_weights):
    ex = Extractor(tiny_weights, device="cpu", tile=64, overlap=16)
    seen = []
    ex.on_tile = lambda done, total: seen.append((done, total))
    ex(np.random.default_rng(0).random((100, 150, 3), dtype=np.float32))
    total = seen[0][1]
    assert total > 1 and seen == [(i, total) for i in range(1, total + 1)]


class _Counted:
    """Frames made on demand (as a travel head's rendering.Motion makes them), counting each making."""

    def __init__(self, n: int, side: int):
        self.n, self.side, self.made = n, side, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> np.ndarray:
        self.made.append(k)
        return np.full((self.side, self.side, 3), k, np.uint8)


def test_a_ping_pong_makes_each_frame_once_while_they_fit(monkeypatch):
    from blur2clip import job

    order = media.play_order(7, pingpong=True)
    frames = _Counted(7, 8)
    played = job._Played(frames, order)
    assert [int(played[i][0, 0, 0]) for i in range(len(played))] == order
    assert sorted(frames.made) == list(range(7))  # the first one too: made once to learn the size
    monkeypatch.setattr(job, "PLAYED_BYTES", 8 * 8 * 3 * 3)  # room for 3 of the 7: none kept
    frames = _Counted(7, 8)
    played = job._Played(frames, order)
    assert [int(played[i][0, 0, 0]) for i in range(len(played))] == order
    assert frames.made == order  # each made when played, the first one not twice
