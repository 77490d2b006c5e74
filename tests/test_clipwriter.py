"""The clip writer with the real ffmpeg: an MP4 that repeats is encoded once and its stream copied, GIF and
WebP hold each frame once, and MP4 clips are scaled to fit (MP4_MAX_SIZE, H.264 level 5.1) unless a
max_size says otherwise, while a still and a folder of frames keep the full size."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import Interrupted, tiny_model
from PIL import Image

from blur2clip import clipwriter, media
from blur2clip.extract import Extractor
from blur2clip.job import make_clip

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def moving(f: int = 7, h: int = 41, w: int = 61) -> np.ndarray:
    """FxHxWx3 uint8 frames that all differ: a dark bar moving across a colour ramp."""
    frames = np.zeros((f, h, w, 3), np.uint8)
    frames[..., 0] = np.linspace(30, 250, w, dtype=np.uint8)
    frames[..., 1] = np.linspace(200, 40, h, dtype=np.uint8)[:, None]
    frames[..., 2] = 120
    for i in range(f):
        frames[i, :, i * w // f : i * w // f + 4] = 10
    return frames


def probe(path: Path) -> dict:
    """What `ffmpeg -i` says of an MP4 (size, fps, duration) and every frame decoded (FxHxWx3 uint8)."""
    info = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    stream = next(line for line in info.splitlines() if "Video:" in line)
    w, h = map(int, re.search(r", (\d+)x(\d+)", stream).groups())
    hh, mm, ss = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info).groups()
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return {"stream": stream, "size": (w, h), "fps": float(re.search(r", ([\d.]+) fps", stream).group(1)),
            "seconds": int(hh) * 3600 + int(mm) * 60 + float(ss),
            "frames": np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)}


@pytest.fixture
def logged_ffmpeg(tmp_path, monkeypatch) -> Path:
    """The real ffmpeg behind a script that first appends its command line to a log: returns the log."""
    log, script = tmp_path / "ffmpeg.log", tmp_path / "ffmpeg"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{FFMPEG}" "$@"\n')
    script.chmod(0o755)
    monkeypatch.setattr(clipwriter, "_ffmpeg", lambda: str(script))
    log.touch()
    return log


def test_a_repeated_mp4_is_encoded_once_and_its_stream_copied(tmp_path, logged_ffmpeg):
    seq = moving(7)
    played = seq[media.play_order(7, pingpong=True)]  # 12 frames, forward and back
    out = clipwriter.write_clip(played, tmp_path / "c.mp4", "mp4", fps=12, loops=3)
    runs = logged_ffmpeg.read_text().splitlines()
    assert sum("libx264" in run for run in runs) == 1  # one encoding process ...
    assert any("-stream_loop 2" in run and "-c copy" in run for run in runs)  # ... its output copied 3 times
    assert len(runs) == 2

    clip = probe(out)
    assert "h264" in clip["stream"] and "yuv420p(tv, bt709" in clip["stream"] and clip["fps"] == 12
    assert len(clip["frames"]) == 36 and clip["seconds"] == pytest.approx(3.0, abs=0.01)  # 3 x 12 at 12 fps
    got = clip["frames"][:, :41, :61]
    assert np.abs(got[:12].astype(int) - played).mean() < 4  # good quality, in play order
    np.testing.assert_array_equal(got[12:24], got[:12])  # the same stream, bit for bit, each time
    np.testing.assert_array_equal(got[24:], got[:12])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "ffmpeg", "ffmpeg.log"]  # no temporaries


def test_one_loop_is_one_process_and_gif_and_webp_hold_each_frame_once(tmp_path, logged_ffmpeg):
    out = clipwriter.write_clip(moving(5), tmp_path / "c.mp4", "mp4", fps=10, loops=1)
    assert len(logged_ffmpeg.read_text().splitlines()) == 1
    assert len(probe(out)["frames"]) == 5
    for fmt in ("gif", "webp"):  # they loop by themselves: loops changes nothing
        with Image.open(clipwriter.write_clip(moving(5), tmp_path / f"c.{fmt}", fmt, loops=4)) as im:
            assert im.n_frames == 5 and im.info.get("loop") == 0


def test_mp4_sizes_fit_4k_and_h264_level_5_1():
    assert clipwriter.MP4_MAX_SIZE == 3840
    assert clipwriter.mp4_size(2160, 3840, 24) == (2160, 3840)  # UHD fits as it is
    assert clipwriter.mp4_size(21, 37, 24) == (22, 38)  # small: odd sides padded, never scaled
    for h, w, fps in [(4000, 6000, 24), (6000, 4000, 30), (5000, 5000, 24), (2160, 3840, 60), (10, 9000, 24)]:
        eh, ew = clipwriter.mp4_size(h, w, fps)
        assert eh % 2 == ew % 2 == 0 and max(eh, ew) <= 3840
        macroblocks = -(-eh // 16) * -(-ew // 16)
        assert macroblocks <= 36864 and macroblocks * fps <= 983040  # level 5.1
        assert ew / eh == pytest.approx(w / h, rel=0.01 if min(h, w) > 100 else 0.5)
    assert clipwriter.mp4_size(4000, 6000, 24) == (2496, 3744)  # 3:2, as large as level 5.1 allows
    assert clipwriter.mp4_size(4000, 6000, 24, max_size=5000) == (3334, 5000)  # max_size overrides both
    assert clipwriter.mp4_size(4000, 6000, 24, max_size=6000) == (4000, 6000)


def test_mp4_scaled_to_the_cap_or_to_max_size(tmp_path, monkeypatch):
    frames = moving(4, 41, 61)
    monkeypatch.setattr(clipwriter, "MP4_MAX_SIZE", 32)  # a low cap, so a small clip takes the scaling path
    clip = probe(clipwriter.write_clip(frames, tmp_path / "cap.mp4", "mp4", fps=8, loops=2))
    assert clip["size"] == (32, 22) and len(clip["frames"]) == 8  # 61x41 -> 32x21.5, even
    expect = np.stack([np.asarray(Image.fromarray(f).resize((32, 22), Image.LANCZOS)) for f in frames])
    assert np.abs(clip["frames"][:4].astype(int) - expect).mean() < 5  # the whole picture, scaled
    assert probe(clipwriter.write_clip(frames, tmp_path / "big.mp4", "mp4", max_size=64))["size"] == (62, 42)
    assert probe(clipwriter.write_clip(frames, tmp_path / "small.mp4", "mp4", max_size=20))["size"] == (20, 14)
    assert probe(clipwriter.write_clip(frames, tmp_path / "tiny.mp4", "mp4", max_size=1))["size"] == (2, 2)
    gif = clipwriter.write_clip(frames, tmp_path / "c.gif", "gif")  # only an MP4 is capped
    assert Image.open(gif).size == (61, 41)


def test_the_still_and_a_folder_of_frames_keep_the_full_size(tmp_path, monkeypatch):
    monkeypatch.setattr(clipwriter, "MP4_MAX_SIZE", 32)
    photo = tmp_path / "photo.png"
    Image.fromarray(moving(1, 41, 61)[0]).save(photo)
    ex = Extractor(model=tiny_model(), device="cpu", tile=0)
    res = make_clip(photo, tmp_path / "c.mp4", still=tmp_path / "mid.png", extractor=ex, frames=None, loops=1)
    assert probe(res.output)["size"] == (32, 22) and Image.open(res.still).size == (61, 41)
    folder = make_clip(photo, tmp_path / "f", extractor=ex, fmt="frames", frames=None).output
    assert {Image.open(p).size for p in folder.glob("frame_*.png")} == {(61, 41)}
    kept = make_clip(photo, tmp_path / "k.mp4", extractor=ex, frames=None, loops=1, max_size=100)  # override
    assert probe(kept.output)["size"] == (62, 42)


@pytest.mark.parametrize("loops", [1, 3])
def test_interrupted_or_failed_mp4_leaves_nothing(tmp_path, loops):
    with pytest.raises(KeyboardInterrupt):
        clipwriter.write_clip(Interrupted(moving(7), at=5), tmp_path / "c.mp4", "mp4", loops=loops)
    with pytest.raises(ValueError, match="frame 2"):  # a frame of another size, found while encoding
        clipwriter.write_clip([moving(1)[0]] * 2 + [moving(1, 9, 9)[0]], tmp_path / "c.mp4", "mp4", loops=loops)
    assert list(tmp_path.iterdir()) == []
