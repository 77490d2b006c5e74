"""media.py: every input mode read into HxWx3 float32 sRGB, every clip format written and read back.

Fixtures are made here in tmp_path; ffmpeg is the real binary imageio-ffmpeg ships.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import tracemalloc
import warnings
import zlib
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps

from blur2clip import clipwriter, media, photocheck
from blur2clip.capture import Capture
from blur2clip.media import MediaError, MediaWarning
from conftest import Interrupted
from forge import SEEDS, corrupt_exif_jpeg, forge_size, picture, seed_photos, stray_marker_tiff

RED, BLUE = (220, 30, 40), (20, 40, 200)


def two_tone(w: int = 37, h: int = 51) -> np.ndarray:
    """HxWx3 uint8: red left half, blue right half, a white top-left corner block (to see orientation)."""
    a = np.empty((h, w, 3), np.uint8)
    a[:, : w // 2], a[:, w // 2 :] = RED, BLUE
    a[: h // 4, : w // 4] = 255
    return a


def clip(f: int = 7, h: int = 21, w: int = 37) -> np.ndarray:
    """FxHxWx3 uint8 frames that all differ: a black bar moving across a grey ramp."""
    frames = np.zeros((f, h, w, 3), np.uint8)
    frames[:] = np.linspace(30, 255, w, dtype=np.uint8)[:, None]
    for i in range(f):
        frames[i, :, i * w // f : i * w // f + 3] = 0
    return frames


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name or ".old" in p.name)


def png16(path: Path, a: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> Path:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by channel count) written by hand: Pillow cannot."""
    h, w, c = a.shape
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in a)
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0))
    body += chunk(b"iCCP", b"p\0\0" + zlib.compress(icc)) if icc else b""
    body += chunk(b"eXIf", exif.removeprefix(b"Exif\0\0")) if exif else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def linear_rgb_profile(name: bytes = b"linear RGB") -> bytes:
    """An ICC v2 RGB profile: sRGB primaries with a linear (gamma 1) curve, so 50% grey becomes sRGB 0.735;
    `name` is its description."""
    s15 = lambda *v: b"".join(struct.pack(">i", round(x * 65536)) for x in v)  # noqa: E731
    xyz = lambda *v: b"XYZ \0\0\0\0" + s15(*v)  # noqa: E731
    name += b"\0"
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + bytes(4 + 4 + 2 + 1 + 67)),
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)), (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", b"curv\0\0\0\0" + bytes(4)), (b"gTRC", b"curv\0\0\0\0" + bytes(4)),
            (b"bTRC", b"curv\0\0\0\0" + bytes(4)), (b"cprt", b"text\0\0\0\0none\0")]
    table, data, offset = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = struct.pack(">I4sI4s4s4s12s4s", size, b"lcms", 0x02100000, b"mntr", b"RGB ", b"XYZ ", bytes(12),
                         b"acsp")
    header += bytes(68 - len(header)) + s15(0.9642, 1.0, 0.8249)
    return header + bytes(128 - len(header)) + struct.pack(">I", len(tags)) + table + data


def dcf_exif(space: int, index: bytes | None) -> bytes:
    """EXIF that says a colour space as cameras do: IFD0 -> Exif IFD (ColorSpace) -> Interop IFD
    (InteropIndex "R03" for Adobe RGB), written by hand (Pillow does not write the Interop IFD)."""
    def ifd(entries) -> bytes:  # (tag, type, count, 4 bytes of value or offset)
        return (struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", *e[:3]) + e[3] for e in entries)
                + bytes(4))
    exif_at = 8 + 18  # the header, then IFD0 with one entry
    entries = [(0xA001, 3, 1, struct.pack("<HH", space, 0))]
    if index is not None:
        entries.append((0xA005, 4, 1, struct.pack("<I", exif_at + 2 + 2 * 12 + 4)))
    body = ifd([(0x8769, 4, 1, struct.pack("<I", exif_at))]) + ifd(entries)
    if index is not None:
        body += ifd([(0x0001, 2, 4, index.ljust(4, b"\0"))])
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + body


def adobe_to_srgb(rgb) -> np.ndarray:
    """Adobe RGB (1998) 8-bit values -> sRGB 0..1, by the two spaces' published matrices (D65)."""
    linear = (np.asarray(rgb, np.float64) / 255) ** (563 / 256)
    to_xyz = np.array([[0.5767309, 0.1855540, 0.1881852], [0.2973769, 0.6273491, 0.0752741],
                       [0.0270343, 0.0706872, 0.9911085]])
    to_srgb = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
    v = np.clip(to_srgb @ to_xyz @ linear, 0, 1)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_camera_photo_marked_adobe_rgb_in_its_exif_alone_is_converted(tmp_path, suffix):
    colour = (100, 150, 80)
    flat = np.full((16, 16, 3), colour, np.uint8)
    for name, exif, expected in [
        ("dcf", dcf_exif(0xFFFF, b"R03"), adobe_to_srgb(colour)),  # uncalibrated + R03: Adobe RGB
        ("two", dcf_exif(2, None), adobe_to_srgb(colour)),  # what some cameras write instead
        ("srgb", dcf_exif(1, b"R98"), np.array(colour) / 255),  # sRGB: as it is
        ("unsaid", dcf_exif(0xFFFF, None), np.array(colour) / 255),  # uncalibrated alone says nothing
    ]:
        path = tmp_path / f"{name}{suffix}"
        Image.fromarray(flat).save(path, exif=exif, **({"quality": 100} if suffix == ".jpg" else {}))
        got = media.read_photo(path).pixels[8, 8]
        np.testing.assert_allclose(got, expected, atol=(1.5 if suffix == ".png" else 3) / 255, err_msg=name)
    # an embedded profile decides over the EXIF: here sRGB's, so the values stay
    path = tmp_path / f"embedded{suffix}"
    Image.fromarray(flat).save(path, exif=dcf_exif(0xFFFF, b"R03"), icc_profile=ImageCms.ImageCmsProfile(
        ImageCms.createProfile("sRGB")).tobytes())
    np.testing.assert_allclose(media.read_photo(path).pixels[8, 8], np.array(colour) / 255, atol=3 / 255)


# ----------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("suffix, kw, tol", [
    (".png", {}, 0), (".tif", {}, 0), (".bmp", {}, 0), (".webp", {"lossless": True}, 0),
    (".jpg", {"quality": 95}, 12 / 255),
])
def test_reads_rgb_formats(tmp_path, suffix, kw, tol):
    a = two_tone()
    path = tmp_path / f"a{suffix}"
    Image.fromarray(a).save(path, **kw)
    photo = media.read_photo(path)
    assert photo.pixels.shape == (51, 37, 3) and photo.pixels.dtype == np.float32
    assert photo.pixels.flags.c_contiguous and photo.bit_depth == 8 and photo.path == path
    assert np.abs(photo.pixels[5:-5, 12:16] - a[5:-5, 12:16] / 255).max() <= tol + 1e-6


@pytest.mark.parametrize("mode, value, expected", [
    ("L", 100, (100 / 255,) * 3),
    ("1", 1, (1.0,) * 3),
    ("LA", (100, 0), (1.0,) * 3),  # fully transparent -> white
    ("RGBA", (255, 0, 0, 128), (1.0, 1 - 128 / 255, 1 - 128 / 255)),  # half red over white
    ("CMYK", (0, 255, 255, 0), (1.0, 0.0, 0.0)),
])
def test_reads_modes(tmp_path, mode, value, expected):
    path = tmp_path / f"{mode}.{'tif' if mode == 'CMYK' else 'png'}"
    Image.new(mode, (5, 3), value).save(path)
    pixels = media.read_photo(path).pixels
    assert pixels.shape == (3, 5, 3)
    np.testing.assert_allclose(pixels[1, 2], expected, atol=1 / 255)


def test_palette_transparency_becomes_white(tmp_path):
    im = Image.new("P", (4, 2), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.save(tmp_path / "p.png", transparency=0)
    pixels = media.read_photo(tmp_path / "p.png").pixels
    np.testing.assert_allclose(pixels[0, 0], (1, 1, 1))  # the transparent black pixel
    np.testing.assert_allclose(pixels[1, 3], (1, 0, 0))


def test_a_transparent_colour_of_an_rgb_or_grey_png_becomes_white(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3], rgb[:, 3:] = (10, 200, 30), (200, 50, 50)
    Image.fromarray(rgb).save(tmp_path / "rgb.png", transparency=(10, 200, 30))  # a tRNS chunk
    pixels = media.read_photo(tmp_path / "rgb.png").pixels
    np.testing.assert_allclose(pixels[:, :3], 1.0)
    np.testing.assert_allclose(pixels[:, 3:] * 255, np.broadcast_to((200, 50, 50), (4, 3, 3)), atol=1e-4)
    grey = np.full((4, 6), 150, np.uint8)
    grey[:, :3] = 77
    Image.fromarray(grey).save(tmp_path / "grey.png", transparency=77)
    pixels = media.read_photo(tmp_path / "grey.png").pixels
    np.testing.assert_allclose(pixels[:, :3], 1.0)
    np.testing.assert_allclose(pixels[:, 3:] * 255, 150, atol=1e-4)


def test_16bit_rgb_png_and_tiff_keep_full_precision(tmp_path):
    a = (np.arange(6 * 5 * 3).reshape(6, 5, 3) * 601 + 7).astype(np.uint16)  # not multiples of 257
    tif = tmp_path / "a.tif"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-video_size", "5x6",
                    "-i", "-", "-c:v", "tiff", str(tif)], input=a.tobytes(), check=True)
    for path in (png16(tmp_path / "a.png", a), tif):
        photo = media.read_photo(path)
        assert photo.bit_depth == 16
        np.testing.assert_allclose(photo.pixels, a / 65535, atol=1e-7)


def test_16bit_grey_and_alpha(tmp_path):
    grey = np.array([[0, 1000], [40000, 65535]], np.uint16)
    for path in (tmp_path / "g.png", tmp_path / "g.tif"):
        Image.fromarray(grey).save(path)  # mode I;16
        photo = media.read_photo(path)
        assert photo.bit_depth == 16
        np.testing.assert_allclose(photo.pixels, np.repeat(grey[..., None] / 65535, 3, 2), atol=1e-7)
    rgba = np.array([[[65535, 0, 0, 32768], [1000, 2000, 3000, 65535]]], np.uint16)
    pixels = media.read_photo(png16(tmp_path / "rgba.png", rgba)).pixels
    np.testing.assert_allclose(pixels[0, 0], (1, 1 - 32768 / 65535, 1 - 32768 / 65535), atol=1e-6)
    np.testing.assert_allclose(pixels[0, 1], np.array([1000, 2000, 3000]) / 65535, atol=1e-7)
    grey_alpha = np.array([[[30001, 0], [30001, 65535]]], np.uint16)
    photo = media.read_photo(png16(tmp_path / "la.png", grey_alpha))
    assert photo.bit_depth == 16
    np.testing.assert_allclose(photo.pixels[0], [[1, 1, 1], [30001 / 65535] * 3], atol=1e-7)


def test_exif_orientation_matches_pillow_for_all_eight(tmp_path):
    a = two_tone(7, 4)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112], exif[0x010F] = orientation, "Camera Maker"
        im = Image.fromarray(a)
        im.save(tmp_path / f"o{orientation}.png", exif=exif)
        photo = media.read_photo(tmp_path / f"o{orientation}.png")
        upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / f"o{orientation}.png")))
        np.testing.assert_array_equal(photo.pixels, upright / np.float32(255))
        kept = Image.Exif()
        kept.load(photo.exif)
        assert kept[0x010F] == "Camera Maker" and kept.get(0x0112, 1) == 1


def test_a_16_bit_png_is_turned_upright_once(tmp_path):
    # ffmpeg, which decodes 16-bit PNGs, turns a photo by its eXIf orientation itself: it must not, as the
    # orientation is applied to every photo after decoding
    a = two_tone(7, 4).astype(np.uint16) * 257
    for orientation in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = png16(tmp_path / f"o{orientation}.png", a, exif=exif.tobytes())
        Image.fromarray((a // 257).astype(np.uint8)).save(tmp_path / "8bit.png", exif=exif)
        upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "8bit.png")))
        photo = media.read_photo(path)
        assert photo.bit_depth == 16
        np.testing.assert_array_equal(photo.pixels, upright / np.float32(255))


def test_jpeg_orientation_6_turns_the_photo_clockwise(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(two_tone(40, 24)).save(tmp_path / "r.jpg", exif=exif, quality=95)
    pixels = media.read_photo(tmp_path / "r.jpg").pixels
    assert pixels.shape == (40, 24, 3)
    assert pixels[:8, -5:].min() > 0.9  # the white top-left block is now top-right
    assert pixels[-3:, :3].mean(axis=(0, 1))[2] > 0.6  # blue (the right half) is now at the bottom


def test_icc_profiles(tmp_path):
    grey = np.full((2, 3, 3), 128, np.uint8)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(grey).save(tmp_path / "srgb.png", icc_profile=srgb)
    np.testing.assert_allclose(media.read_photo(tmp_path / "srgb.png").pixels, 128 / 255, atol=1e-6)
    linear = linear_rgb_profile()  # 50% linear light is 0.735 in sRGB
    Image.fromarray(grey).save(tmp_path / "linear.png", icc_profile=linear)
    np.testing.assert_allclose(media.read_photo(tmp_path / "linear.png").pixels, 0.7357, atol=0.006)
    deep = png16(tmp_path / "linear16.png", np.full((2, 3, 3), 32896, np.uint16), icc=linear)
    np.testing.assert_allclose(media.read_photo(deep).pixels, 0.7357, atol=0.006)
    Image.fromarray(grey).save(tmp_path / "broken.png", icc_profile=b"not a colour profile")
    with pytest.warns(MediaWarning, match="broken.png"):
        np.testing.assert_allclose(media.read_photo(tmp_path / "broken.png").pixels, 128 / 255, atol=1e-6)


def test_a_profile_is_judged_by_its_content_not_its_name(tmp_path):
    grey = np.full((2, 3, 3), 128, np.uint8)
    linear = linear_rgb_profile(b"Linear sRGB (GIMP built-in)")
    assert "sRGB" in ImageCms.ImageCmsProfile(io.BytesIO(linear)).profile.profile_description
    Image.fromarray(grey).save(tmp_path / "linear.png", icc_profile=linear)
    np.testing.assert_allclose(media.read_photo(tmp_path / "linear.png").pixels, 0.7357, atol=0.006)
    # an sRGB profile under another name is sRGB: the pixels as they are, every level kept
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    renamed = srgb.replace("sRGB built-in".encode("utf-16-be"), "Display P3 v4".encode("utf-16-be"))
    assert "P3" in ImageCms.ImageCmsProfile(io.BytesIO(renamed)).profile.profile_description
    Image.fromarray(ramp).save(tmp_path / "renamed.png", icc_profile=renamed)
    np.testing.assert_array_equal(media.read_photo(tmp_path / "renamed.png").pixels, ramp / np.float32(255))


def test_16bit_colour_profile_keeps_gradients_smooth(tmp_path):
    ramp = np.repeat((np.arange(4096, dtype=np.uint16) * 16)[None, :, None], 3, axis=2)  # 4096 greys
    photo = media.read_photo(png16(tmp_path / "ramp.png", ramp, icc=linear_rgb_profile()))
    v = ramp[..., 0] / 65535
    srgb = np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)  # what linear light encodes to
    assert photo.bit_depth == 16
    np.testing.assert_allclose(photo.pixels[..., 1], srgb, atol=0.0025)
    assert len(np.unique(photo.pixels[..., 1])) > 2000  # not banded to 8 bits


def test_tiff_keeps_the_camera_tags_not_its_structure(tmp_path):
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "Camera Maker", 8
    Image.fromarray(two_tone(6, 4)).save(tmp_path / "a.tif", exif=exif)
    photo = media.read_photo(tmp_path / "a.tif")
    assert photo.pixels.shape == (6, 4, 3)  # turned by the TIFF orientation tag
    kept = Image.Exif()
    kept.load(photo.exif)
    assert dict(kept) == {0x010F: "Camera Maker"}  # no ImageWidth, StripOffsets, Orientation...


@pytest.mark.parametrize("w, h", [(4000, 300), (300, 4000), (37, 51), (1, 1)])
def test_odd_sizes_and_extreme_aspect(tmp_path, w, h):
    Image.new("RGB", (w, h), RED).save(tmp_path / "a.png")
    assert media.read_photo(tmp_path / "a.png").pixels.shape == (h, w, 3)


def test_decompression_bomb_refused_from_the_header(tmp_path, monkeypatch):
    saved = Image.MAX_IMAGE_PIXELS
    Image.new("RGB", (20, 10), RED).save(tmp_path / "big.png")
    with pytest.raises(MediaError, match=r"big.png: 20x10 is 200 pixels, over the limit of 199 .*max_pixels"):
        media.read_photo(tmp_path / "big.png", max_pixels=199)
    assert media.read_photo(tmp_path / "big.png", max_pixels=200).pixels.shape == (10, 20, 3)
    assert Image.MAX_IMAGE_PIXELS == saved  # Pillow's global, set to 200 while decoding, is put back
    monkeypatch.setenv("BLUR2CLIP_MAX_PIXELS", "150")
    with pytest.raises(MediaError, match="BLUR2CLIP_MAX_PIXELS"):
        media.read_photo(tmp_path / "big.png")
    assert Image.MAX_IMAGE_PIXELS == saved


def test_bad_inputs_give_one_line_naming_the_file(tmp_path):
    Image.fromarray(two_tone(64, 64)).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("shopping list\n")
    (tmp_path / "folder.jpg").mkdir()
    cases = {"cut.jpg": "truncated JPEG file", "empty.png": "empty file", "notes.jpg": "not an image",
             "missing.jpg": "no such file", "folder.jpg": "is a folder"}
    for name, reason in cases.items():
        with pytest.raises(MediaError) as e:
            media.read_photo(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name) + ": ") and reason in str(e.value)
        assert "\n" not in str(e.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert str(MediaError("x.jpg: made elsewhere\n")) == "x.jpg: made elsewhere"  # one-argument form too


# --------------------------------------------------------------- truncated, forged, too big; what was said


def png_rgb(w: int, h: int, rows: bytes, interlace: int = 0) -> bytes:
    """An 8-bit RGB PNG of w x h whose one zlib stream holds `rows` (filter bytes included), complete or not."""
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, interlace))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def allocated(monkeypatch) -> list:
    """The size of every image Pillow allocates to decode into, in order."""
    sizes = []
    prepare = ImageFile.ImageFile.load_prepare

    def spy(self):
        sizes.append(self.size)
        return prepare(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load_prepare", spy)
    return sizes


def test_png_whose_data_ends_early_is_truncated_before_decoding(tmp_path, allocated):
    tall = tmp_path / "tall.png"  # 12000x12000 declared, a complete zlib stream of 10 rows
    tall.write_bytes(png_rgb(12000, 12000, b"".join(b"\0" + bytes(36000) for _ in range(10))))
    assert tall.stat().st_size < 500
    with pytest.raises(MediaError, match=r"tall\.png: truncated PNG file: 12000x12000 needs at least 418,617 "
                                         r"bytes of image data, the file has \d+$"):
        media.read_photo(tall)
    a = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    rows = b"".join(b"\0" + row.tobytes() for row in a)
    short = tmp_path / "short.png"  # noise: enough bytes for any bound, but a stream of 50 rows
    short.write_bytes(png_rgb(300, 200, rows[: 50 * 901]))
    with pytest.raises(MediaError, match=r"short\.png: truncated PNG file: its image data ends after 45,050 of "
                                         r"180,200 bytes \(about 50 of 200 rows\)$"):
        media.read_photo(short)
    assert allocated == []  # refused from the file, before Pillow made an image
    whole = tmp_path / "whole.png"
    whole.write_bytes(png_rgb(300, 200, rows))
    np.testing.assert_array_equal(media.read_photo(whole).pixels, a / np.float32(255))
    assert allocated == [(300, 200)]


@pytest.mark.parametrize("w, h", [(1, 1), (5, 3), (9, 10), (33, 17)])
def test_interlaced_png_counts_every_pass(tmp_path, w, h):
    a = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    rows = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = a[y0::dy, x0::dx]
        rows += b"".join(b"\0" + row.tobytes() for row in sub) if sub.size else b""
    path = tmp_path / "adam7.png"
    path.write_bytes(png_rgb(w, h, rows, interlace=1))
    np.testing.assert_array_equal(media.read_photo(path).pixels, a / np.float32(255))
    path.write_bytes(png_rgb(w, h, rows[:-1], interlace=1))
    with pytest.raises(MediaError, match=f"adam7.png: truncated PNG file: its image data ends after "
                                         f"{len(rows) - 1:,} of {len(rows):,} bytes$"):
        media.read_photo(path)


def test_jpeg_declaring_14000x14000_is_refused_before_decoding(tmp_path, allocated):
    Image.fromarray(picture(120, 160)).save(tmp_path / "photo.jpg", quality=90)
    data = (tmp_path / "photo.jpg").read_bytes()
    assert 5_000 < len(data) < 15_000  # a 10 KB JPEG
    (tmp_path / "big.jpg").write_bytes(forge_size(data, ".jpg", 14000, 14000))
    with pytest.raises(MediaError, match=r"big\.jpg: truncated JPEG file: 14000x14000 needs at least 47,852 bytes "
                                         r"of image data, the file has [\d,]+$"):
        media.read_photo(tmp_path / "big.jpg")
    assert allocated == []
    (tmp_path / "wide.jpg").write_bytes(forge_size(data, ".jpg", 1000, 160))  # plausible: read as libjpeg can
    assert media.read_photo(tmp_path / "wide.jpg").pixels.shape == (160, 1000, 3)


@pytest.mark.parametrize("name", list(SEEDS))
def test_forged_sizes_of_every_format(tmp_path, allocated, name):
    path = seed_photos(tmp_path)[name]
    assert media.read_photo(path).pixels.shape == (16, 24, 3)
    assert len(allocated) == 1
    webp = path.suffix == ".webp"  # libwebp may pack any size into a few bytes: it finds out by decoding
    forged = tmp_path / f"forged{path.suffix}"
    forged.write_bytes(forge_size(path.read_bytes(), path.suffix, 12000, 12000))
    with pytest.raises(MediaError) as e:
        media.read_photo(forged)
    message = str(e.value)
    assert message.startswith(f"{forged}: ") and "\n" not in message
    if webp:
        assert "corrupt WebP file" in message and len(allocated) <= 2
    else:
        assert re.search(r": truncated \w+ file: 12000x12000 needs at least [\d,]+ bytes of image data, the file "
                         r"has [\d,]+$", message), message
        assert len(allocated) == 1
    forged.write_bytes(forge_size(path.read_bytes(), path.suffix, 2**31 - 1, 2**31 - 1))
    with pytest.raises(MediaError, match="pixels, over the limit of 200,000,000"):
        media.read_photo(forged)


def test_a_photo_that_would_not_fit_in_memory_is_refused_from_its_header(tmp_path, monkeypatch, allocated):
    Image.new("RGB", (4000, 3000), RED).save(tmp_path / "a.png")
    free = photocheck.free_memory()
    assert free is None or free > 0
    monkeypatch.setattr(photocheck, "free_memory", lambda: 200_000_000)
    with pytest.raises(MediaError, match=r"a\.png: 4000x3000 needs about 0\.3 GB of memory to read, and 0\.2 GB "
                                         r"is free$"):
        media.read_photo(tmp_path / "a.png")
    assert allocated == []
    monkeypatch.setattr(photocheck, "free_memory", lambda: 300_000_000)
    assert media.read_photo(tmp_path / "a.png").pixels.shape == (3000, 4000, 3)


def test_reading_holds_little_beside_the_result(tmp_path):
    """Alpha, an ICC profile and a quarter turn, converted a band at a time into the upright result: not a
    whole float copy of the photo at any step."""
    a = np.random.default_rng(0).integers(0, 256, (2000, 3000, 4), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a, "RGBA").save(tmp_path / "big.tif", exif=exif, icc_profile=linear_rgb_profile())
    tracemalloc.start()
    try:
        photo = media.read_photo(tmp_path / "big.tif")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert photo.pixels.shape == (3000, 2000, 3) and photo.pixels.flags.c_contiguous  # turned (Pillow loses
    # the orientation of a raw RGBA TIFF it maps into memory)
    assert peak < 1.5 * photo.pixels.nbytes, f"{peak / 1e6:.0f} MB for a {photo.pixels.nbytes / 1e6:.0f} MB result"
    alpha = a[0, 0, 3] / 255
    np.testing.assert_allclose(photo.pixels[0, -1], 1 - alpha + alpha * photo.pixels[0, -1] * 0 +
                               alpha * _through_linear(a[0, 0, :3] / 255), atol=0.01)


def _through_linear(v: np.ndarray) -> np.ndarray:
    """sRGB values of linear-light values (the test profile's pixels)."""
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


def test_pillow_and_libtiff_say_one_warning_naming_the_file(tmp_path, capfd):
    corrupt_exif_jpeg(tmp_path / "exif.jpg")
    stray_marker_tiff(tmp_path / "stray.tif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        media.read_photo(tmp_path / "exif.jpg")
        media.read_photo(tmp_path / "stray.tif")
    said = [(w.category, str(w.message)) for w in caught]
    assert len(said) == 2 and all(category is MediaWarning for category, _ in said), said
    assert re.match(f"{re.escape(str(tmp_path / 'exif.jpg'))}: .*EXIF", said[0][1]), said
    assert said[1][1] == f"{tmp_path / 'stray.tif'}: JPEGLib: Unsupported marker type 0x24"
    assert capfd.readouterr().err == ""  # libtiff printed nothing itself


def test_libtiff_and_pillow_errors_are_the_reason_not_stderr(tmp_path, capfd):
    Image.fromarray(picture(40, 50)).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    data = bytearray((tmp_path / "lzw.tif").read_bytes())
    for i in range(20, 200, 7):
        data[i] ^= 0x55
    (tmp_path / "lzw.tif").write_bytes(data)
    with pytest.raises(MediaError, match=r"lzw\.tif: corrupt TIFF file \(Using code not yet in table\)$"):
        media.read_photo(tmp_path / "lzw.tif")
    Image.fromarray(picture(4, 6)).save(tmp_path / "many.tif")
    data = bytearray((tmp_path / "many.tif").read_bytes())
    ifd = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[ifd : ifd + 2], "little")):
        entry = ifd + 2 + 12 * k
        if data[entry : entry + 2] == (277).to_bytes(2, "little"):  # SamplesPerPixel: 190
            data[entry + 8 : entry + 10] = (190).to_bytes(2, "little")
    (tmp_path / "many.tif").write_bytes(data)
    with pytest.raises(MediaError, match=r"many\.tif: not an image file"):  # and Pillow logs an error
        media.read_photo(tmp_path / "many.tif")
    assert capfd.readouterr().err == ""


def test_show_warning_writes_one_line(capsys):
    media.show_warning(MediaWarning("a.jpg: broken colour profile ignored,\n  read as sRGB"), MediaWarning,
                       "media.py", 12)
    assert capsys.readouterr().err == "blur2clip: warning: a.jpg: broken colour profile ignored, read as sRGB\n"


def test_heic_without_the_extra_says_how_to_get_it(tmp_path):
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pillow-heif is installed")
    (tmp_path / "p.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    with pytest.raises(MediaError, match=r"blur2clip\[heic\]"):
        media.read_photo(tmp_path / "p.heic")


# ----------------------------------------------------------------------------------------- naming, order


def test_clip_format_and_default_output(tmp_path):
    assert [media.clip_format(o) for o in ("a.mp4", "b.GIF", "c.webp", "d/", "e")] == ["mp4", "gif", "webp",
                                                                                       "frames", "frames"]
    assert media.clip_format(tmp_path) == "frames"
    assert media.clip_format("a.mp4", "gif") == "gif"
    with pytest.raises(MediaError, match=r"^a\.mov: unknown clip format"):
        media.clip_format("a.mov")
    with pytest.raises(MediaError, match="unknown clip format 'avi'"):
        media.clip_format("a.mp4", "avi")
    assert media.default_output("shots/a.jpg") == Path("shots/a.mp4")
    assert media.default_output("shots/a.jpg", "gif") == Path("shots/a.gif")
    assert media.default_output("shots/a.jpg", "frames") == Path("shots/a_frames")
    assert media.default_output("shots/a.webp", "webp") == Path("shots/a_clip.webp")  # never the photo


def test_play_order():
    assert media.play_order(7) == list(range(7))
    assert media.play_order(7, pingpong=True) == [0, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1]
    assert media.play_order(3, reverse=True) == [2, 1, 0]
    assert media.play_order(3, pingpong=True, reverse=True) == [2, 1, 0, 1]
    assert media.play_order(1, pingpong=True) == [0] and media.play_order(2, pingpong=True) == [0, 1]


# ------------------------------------------------------------------------------------------------ writing


def read_mp4(path: Path) -> tuple[str, np.ndarray]:
    """(ffmpeg's line describing the video stream, FxHxWx3 uint8 frames decoded back)."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    info = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    stream = next(line for line in info.splitlines() if "Video:" in line)
    w, h = map(int, re.search(r", (\d+)x(\d+)", stream).groups())
    raw = subprocess.run([exe, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return stream, np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def test_mp4_pads_odd_sizes_repeats_loops_and_keeps_fps(tmp_path):
    frames = clip(7, 21, 37)
    out = clipwriter.write_clip(frames, tmp_path / "c.mp4", "mp4", fps=12, loops=2)
    stream, got = read_mp4(out)
    assert "h264" in stream and "yuv420p(tv, bt709" in stream and " 12 fps" in stream
    assert got.shape == (14, 22, 38, 3)  # 7 frames twice, 37x21 padded to 38x22
    assert np.abs(got[3, :21, :37].astype(int) - frames[3]).mean() < 4  # good quality
    assert np.abs(got[7, :21, :37].astype(int) - frames[0]).mean() < 4  # the second loop starts over
    np.testing.assert_allclose(got[3, :21, 37], got[3, :21, 36], atol=6)  # padded with the edge, not black
    assert leftovers(tmp_path) == []


def gif_blocks(data: bytes) -> dict:
    """What matters in a GIF: global table, per-frame local-table flags, delays (cs) and the loop count."""
    flags, pos = data[10], 13
    out = {"global": bool(flags & 0x80), "local": [], "delays": [], "loop": None}
    pos += 3 * (2 << (flags & 7)) if flags & 0x80 else 0
    while data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            label, pos, first = data[pos + 1], pos + 2, None
            while data[pos]:
                block = data[pos + 1 : pos + 1 + data[pos]]
                if label == 0xF9 and first is None:
                    out["delays"].append(int.from_bytes(block[1:3], "little"))
                if label == 0xFF and first and first.startswith(b"NETSCAPE2.0"):
                    out["loop"] = int.from_bytes(block[1:3], "little")
                first, pos = first or block, pos + 1 + data[pos]
            pos += 1
        else:  # image descriptor, optional local table, LZW data
            local = data[pos + 9]
            out["local"].append(bool(local & 0x80))
            pos += 11 + (3 * (2 << (local & 7)) if local & 0x80 else 0)
            while data[pos]:
                pos += 1 + data[pos]
            pos += 1
    return out


def test_gif_one_palette_loops_forever_with_exact_timing(tmp_path):
    out = clipwriter.write_clip(clip(6), tmp_path / "c.gif", "gif", fps=30)
    gif = gif_blocks(out.read_bytes())
    assert gif["global"] and gif["local"] == [False] * 6 and gif["loop"] == 0
    assert gif["delays"] == [3, 4, 3, 3, 4, 3]  # 20 cs for 6 frames at 30 fps
    with Image.open(out) as im:
        assert im.n_frames == 6 and im.size == (37, 21)
        im.seek(2)
        assert np.abs(np.asarray(im.convert("RGB")).astype(int) - clip(6)[2]).mean() < 8


def webp_frames(data: bytes) -> tuple[int, list[int]]:
    """(loop count, frame durations in ms) of an animated WebP, from its ANIM and ANMF chunks."""
    pos, loop, durations = 12, None, []
    while pos < len(data):
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]
        if kind == b"ANIM":
            loop = int.from_bytes(body[4:6], "little")
        elif kind == b"ANMF":
            durations.append(int.from_bytes(body[12:15], "little"))
        pos += 8 + size + size % 2
    return loop, durations


def test_webp_animated_loops_forever(tmp_path):
    out = clipwriter.write_clip(clip(5), tmp_path / "c.webp", "webp", fps=12)
    assert webp_frames(out.read_bytes()) == (0, [83, 84, 83, 83, 84])
    with Image.open(out) as im:
        assert im.n_frames == 5 and im.size == (37, 21)


@pytest.mark.parametrize("fps, gif, webp", [(50, [2] * 4, [20] * 4), (60, [2] * 4, [20] * 4), (1000, [2] * 4, [20] * 4),
                                          (45, [2, 2, 3, 2], [22, 22, 23, 22])])
def test_gif_and_webp_play_at_most_50_fps(tmp_path, fps, gif, webp):
    # browsers slow a GIF delay under 2 cs, or a WebP frame of 10 ms or less, to 100 ms: 1000 fps played at 10
    assert clipwriter.played_fps("gif", fps) == clipwriter.played_fps("webp", fps) == min(fps, 50)
    assert clipwriter.played_fps("mp4", fps) == fps
    assert gif_blocks(clipwriter.write_clip(clip(4), tmp_path / f"{fps}.gif", "gif", fps=fps).read_bytes())[
        "delays"] == gif
    assert webp_frames(clipwriter.write_clip(clip(4), tmp_path / f"{fps}.webp", "webp", fps=fps).read_bytes()) == (
        0, webp)


def test_frames_folder_and_its_replacement(tmp_path):
    out = clipwriter.write_clip(clip(3), f"{tmp_path}/shots/", "frames")
    assert out == tmp_path / "shots"
    assert sorted(p.name for p in out.iterdir()) == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "frame_0002.png")), clip(3)[1])
    with pytest.raises(MediaError, match="already exists"):
        clipwriter.write_clip(clip(2), out, "frames")
    clipwriter.write_clip(clip(2), out, "frames", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["frame_0001.png", "frame_0002.png"]
    (out / "keep.jpg").write_bytes(b"a photo")
    with pytest.raises(MediaError, match="keep.jpg"):  # never deletes anything but frames
        clipwriter.write_clip(clip(2), out, "frames", overwrite=True)
    assert leftovers(tmp_path) == []


def test_refuses_to_overwrite(tmp_path):
    target = tmp_path / "c.gif"
    target.write_bytes(b"precious")
    with pytest.raises(MediaError, match=r"c\.gif: already exists"):
        clipwriter.write_clip(clip(2), target, "gif")
    assert target.read_bytes() == b"precious"
    clipwriter.write_clip(clip(2), target, "gif", overwrite=True)
    assert target.read_bytes().startswith(b"GIF89a")
    photo = tmp_path / "photo.png"
    Image.fromarray(two_tone()).save(photo)
    media.read_photo(photo)
    with pytest.raises(MediaError, match="input photo"):  # even with overwrite
        clipwriter.write_still(two_tone(), photo, overwrite=True)
    assert leftovers(tmp_path) == []


def test_no_temp_left_after_failures(tmp_path):
    bad = [clip(1)[0], clip(1)[0], np.zeros((5, 5, 3), np.uint8)]  # the third frame has another size
    for fmt in ("mp4", "gif", "webp", "frames"):
        with pytest.raises(ValueError, match="frame 2"):
            clipwriter.write_clip(bad, tmp_path / f"c.{fmt}", fmt)
    for loops in (1, 3):  # a size H.264 refuses (kept by max_size): the encoding fails, nothing is left
        with pytest.raises(MediaError, match=r"ffmpeg failed: .*40000x2"):
            clipwriter.write_clip(np.zeros((1, 2, 40000, 3), np.uint8), tmp_path / "wide.mp4", "mp4", loops=loops,
                                  max_size=40000)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["mp4", "frames"])
def test_keyboard_interrupt_leaves_nothing(tmp_path, fmt):
    with pytest.raises(KeyboardInterrupt):
        clipwriter.write_clip(Interrupted([clip(1)[0]] * 6, at=3), tmp_path / f"c.{fmt}", fmt)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_write_still_keeps_exif(tmp_path, suffix):
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "Camera Maker", 1
    image = two_tone()
    out = clipwriter.write_still(image, tmp_path / f"still{suffix}", capture=Capture.from_tags(exif.tobytes()))
    with Image.open(out) as im:
        assert im.size == (37, 51) and im.getexif()[0x010F] == "Camera Maker"
        tol = 3 if suffix == ".jpg" else 0
        assert np.abs(np.asarray(im.convert("RGB")).astype(int) - image).mean() <= tol
    with pytest.raises(MediaError, match="already exists"):
        clipwriter.write_still(image, out)
    with pytest.raises(MediaError, match=r"still\.bmp: unknown still format"):
        clipwriter.write_still(image, tmp_path / "still.bmp")
    assert leftovers(tmp_path) == []


def test_a_fresh_process_reads_a_jpeg_with_few_plugins_then_any_other_format(tmp_path):
    """Pillow's JPEG and PNG plugins alone read a JPEG (importing all of them is slower than decoding a
    small photo); a TIFF or WebP read next in the same process still registers the rest first."""
    import sys

    rng = np.random.default_rng(0)
    pixels = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    for name in ("a.jpg", "b.tif", "c.webp", "d.png"):
        Image.fromarray(pixels).save(tmp_path / name)
    code = ("import sys; from blur2clip import media; media.read_photo(sys.argv[1] + '/a.jpg'); "
            "print('PIL.TiffImagePlugin' in sys.modules); "
            "print([media.read_photo(sys.argv[1] + '/' + n).pixels.shape for n in ('b.tif', 'c.webp', 'd.png')])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["False", "[(24, 32, 3), (24, 32, 3), (24, 32, 3)]"], out.stderr
