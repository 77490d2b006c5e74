"""Camera RAW files: refused in one line naming the file and the extra when rawpy is missing (always
tested, with rawpy hidden), listed as such by batch; decoded with the camera's white balance when rawpy is
installed, from a DNG the test writes (16-bit RGGB sensor data, camera = linear sRGB, AsShotNeutral)."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

from blur2clip import batch, media, raw
from blur2clip.media import MediaError
from conftest import error_line, write_photo

HAVE_RAWPY = raw.available()


def write_dng(path, cfa: np.ndarray, neutral=(1.0, 1.0, 1.0), orientation: int = 1):
    """A minimal DNG: 16-bit RGGB Bayer data, uncompressed; ColorMatrix1 maps XYZ to linear sRGB (so the
    camera's colours are sRGB's), AsShotNeutral is the camera's white balance, Make/Model as a camera's."""
    h, w = cfa.shape
    data = cfa.astype("<u2").tobytes()
    xyz_to_srgb = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]
    entries = []

    def tag(number, kind, values):
        if kind == 2:  # ASCII
            body = values.encode() + b"\0"
        elif kind in (5, 10):  # (signed) rationals
            body = b"".join(struct.pack("<II" if kind == 5 else "<ii", *v) for v in values)
        else:
            body = struct.pack("<" + {1: "B", 3: "H", 4: "I"}[kind] * len(values), *values)
        count = len(body) if kind == 2 else len(values)
        entries.append((number, kind, count, body))

    tag(254, 4, [0]), tag(256, 4, [w]), tag(257, 4, [h]), tag(258, 3, [16]), tag(259, 3, [1])
    tag(262, 3, [32803]), tag(271, 2, "blur2clip"), tag(272, 2, "test camera"), tag(273, 4, [0])
    tag(274, 3, [orientation]), tag(277, 3, [1]), tag(278, 4, [h]), tag(279, 4, [len(data)]), tag(284, 3, [1])
    tag(33421, 3, [2, 2]), tag(33422, 1, [0, 1, 1, 2])  # CFA: 2x2 RGGB
    tag(50706, 1, [1, 4, 0, 0]), tag(50708, 2, "blur2clip test camera"), tag(50714, 4, [0])
    tag(50717, 4, [65535]), tag(50721, 10, [(round(v * 10000), 10000) for v in xyz_to_srgb])
    tag(50728, 5, [(round(v * 10000), 10000) for v in neutral]), tag(50778, 3, [21])  # D65
    entries.sort()
    offset = 8 + 2 + 12 * len(entries) + 4
    table, extra = struct.pack("<H", len(entries)), b""
    for number, kind, count, body in entries:
        if number == 273:  # StripOffsets: after everything else
            table += struct.pack("<HHI", number, kind, count) + b"@@@@"
        elif len(body) <= 4:
            table += struct.pack("<HHI", number, kind, count) + body.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", number, kind, count, offset + len(extra))
            extra += body + b"\0" * (len(body) % 2)
    table = table.replace(b"@@@@", struct.pack("<I", offset + len(extra))) + struct.pack("<I", 0)
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + table + extra + data)
    return path


def grey_ramp_seen_by(h: int, w: int, gains=(0.5, 1.0, 0.5)) -> np.ndarray:
    """RGGB sensor data of a grey ramp (dark left, light right) through a camera whose red, green and blue
    photosites answer with these gains."""
    level = np.linspace(2000, 30000, w)[None, :].repeat(h, 0)
    cfa = level * gains[1]
    cfa[0::2, 0::2] = level[0::2, 0::2] * gains[0]
    cfa[1::2, 1::2] = level[1::2, 1::2] * gains[2]
    return cfa.astype(np.uint16)


@pytest.fixture
def no_rawpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "rawpy", None)  # import rawpy raises ImportError, find_spec gives None
    assert not raw.available()  # the real check sees it missing


@pytest.mark.parametrize("suffix", sorted(raw.RAW_SUFFIXES))
def test_without_rawpy_a_raw_file_is_refused_naming_it_and_the_extra(tmp_path, no_rawpy, suffix):
    path = write_dng(tmp_path / f"IMG_0001{suffix.upper()}", grey_ramp_seen_by(16, 24))
    with pytest.raises(MediaError) as e:
        media.read_photo(path)
    assert str(e.value) == f"{path}: RAW photos need an extra: pip install 'blur2clip[raw]'"


def test_without_rawpy_batch_lists_raw_files_as_such(tmp_path, no_rawpy):
    write_dng(tmp_path / "a.dng", grey_ramp_seen_by(16, 24))
    (tmp_path / "b.nef").write_bytes(b"raw data")
    jpg = write_photo(tmp_path / "c.jpg")
    found = batch.find_photos(tmp_path)
    assert found.photos == [jpg]
    assert found.others == [(tmp_path / "a.dng", raw.NEEDS_EXTRA), (tmp_path / "b.nef", raw.NEEDS_EXTRA)]


def test_without_rawpy_the_command_line_refuses_in_one_line(tmp_path):
    path = write_dng(tmp_path / "a.dng", grey_ramp_seen_by(16, 24))
    code = ("import sys; sys.modules['rawpy'] = None; from blur2clip.cli import main; "
            f"sys.exit(main([{str(path)!r}, '--device', 'cpu']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 3 and proc.stdout == ""
    assert error_line(proc) == f"blur2clip: error: {path}: RAW photos need an extra: pip install 'blur2clip[raw]'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dng"]


@pytest.mark.skipif(not HAVE_RAWPY, reason="rawpy (the raw extra) is not installed")
def test_a_dng_is_decoded_with_the_cameras_white_balance(tmp_path):
    path = write_dng(tmp_path / "a.dng", grey_ramp_seen_by(48, 64), neutral=(0.5, 1.0, 0.5))
    photo = media.read_photo(path)
    assert photo.pixels.shape == (48, 64, 3) and photo.pixels.dtype == np.float32 and photo.bit_depth == 16
    middle = photo.pixels[8:40, 16:48].reshape(-1, 3).mean(0)
    assert middle.min() > 0.1 and np.ptp(middle) < 0.02  # grey, although the sensor saw green twice as bright
    row = photo.pixels[24, 4:-4, 1]
    assert (np.diff(row) >= -1e-3).all() and row[-1] > row[0] + 0.2  # the ramp, dark to light
    assert photo.capture.make == "blur2clip" and photo.capture.model == "test camera"

    tinted = media.read_photo(write_dng(tmp_path / "b.dng", grey_ramp_seen_by(48, 64), neutral=(1.0, 1.0, 1.0)))
    r, g, b = tinted.pixels[8:40, 16:48].reshape(-1, 3).mean(0)
    assert g > r + 0.05 and g > b + 0.05  # as shot "neutral" says the green is real


@pytest.mark.skipif(not HAVE_RAWPY, reason="rawpy (the raw extra) is not installed")
def test_a_dng_is_turned_upright_and_found_by_batch(tmp_path):
    path = write_dng(tmp_path / "a.dng", grey_ramp_seen_by(32, 48), neutral=(0.5, 1.0, 0.5), orientation=6)
    photo = media.read_photo(path)
    assert photo.pixels.shape == (48, 32, 3)  # turned a quarter
    column = photo.pixels[4:-4, 16, 1]
    assert column[-1] > column[0] + 0.2  # the ramp's light end (right) is now at the bottom
    assert batch.find_photos(tmp_path).photos == [path]


def test_a_broken_raw_file_is_one_line(tmp_path):
    if not HAVE_RAWPY:
        pytest.skip("rawpy (the raw extra) is not installed")
    path = tmp_path / "broken.cr2"
    path.write_bytes(b"II*\0" + bytes(200))
    with pytest.raises(MediaError, match=r"broken\.cr2: unreadable RAW file"):
        media.read_photo(path)
