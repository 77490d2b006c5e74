"""Capture metadata, read from real photos the tests write and read back from real outputs: the MP4's
creation time and QuickTime keys (through the ffmpeg that imageio-ffmpeg ships, and the movie header's own
bytes), a WebP's EXIF and XMP chunks (Pillow), and a still's EXIF, XMP and sRGB profile."""

from __future__ import annotations

import io
import re
import struct
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from blur2clip import clipwriter, colour, media
from blur2clip.capture import Capture
from blur2clip.job import make_clip

XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
       b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
       b'xmlns:exif="http://ns.adobe.com/exif/1.0/" xmp:Rating="4" tiff:Orientation="6" '
       b'exif:PixelXDimension="64" exif:PixelYDimension="48"><dc:subject xmlns:dc="http://purl.org/dc/elements/1.1/">'
       b'<rdf:Bag><rdf:li>surfing</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>'
       b'<?xpacket end="w"?>')


def camera_exif(offset: str | None = "+02:00", south_west: bool = False, orientation: int = 1) -> Image.Exif:
    """EXIF as a camera writes it: make, model, time taken (with its offset), GPS, the pixel size."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Canon", "Canon EOS R5", orientation
    exif[0x0132] = "2023:07:15 09:00:00"  # DateTime (last edit): DateTimeOriginal wins
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2023:07:14 18:30:05"
    if offset is not None:
        sub[0x9011] = offset
    sub[0xA002], sub[0xA003] = 64, 48
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = ("S" if south_west else "N"), (48.0, 51.0, 30.24)
    gps[3], gps[4] = ("W" if south_west else "E"), (2.0, 17.0, 40.2)
    gps[5], gps[6] = (b"\x01" if south_west else b"\x00"), 35.0
    return exif


def camera_photo(path: Path, h: int = 48, w: int = 64, **kw) -> Path:
    """A JPEG with the camera's EXIF and an XMP packet (rating, keyword)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 3)], -1) * 0.8 + 0.2 * rng.random((h, w, 3))
    Image.fromarray((img * 255).astype(np.uint8)).save(path, quality=92, exif=camera_exif(**kw), xmp=XMP)
    return path


def mp4_tags(path: Path) -> dict[str, str]:
    """The container's metadata as the shipped ffmpeg lists it (`ffmpeg -i`: the first Metadata block)."""
    log = subprocess.run([media._ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    block = log.split("Metadata:", 1)[1].split("Duration:", 1)[0] if "Metadata:" in log else ""
    return {k.strip(): v.strip() for k, v in re.findall(r"^\s+([^:\n]+?)\s*:\s(.*)$", block, re.M)}


def mvhd_time(path: Path) -> datetime:
    """The creation time in the MP4's movie header box (seconds since 1904, UTC)."""
    data = path.read_bytes()
    at = data.index(b"mvhd") + 4
    version = data[at]
    seconds = struct.unpack(">Q" if version else ">I", data[at + 4: at + (12 if version else 8)])[0]
    return datetime(1904, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)


def frames(n: int = 4, h: int = 24, w: int = 32) -> np.ndarray:
    return np.stack([np.full((h, w, 3), 40 * i, np.uint8) for i in range(n)])


# ---------------------------------------------------------------------------------------------- reading


def test_capture_reads_time_offset_camera_and_gps():
    c = Capture.from_tags(camera_exif().tobytes(), XMP)
    assert c.taken == datetime(2023, 7, 14, 18, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    assert (c.make, c.model) == ("Canon", "Canon EOS R5")
    assert c.location == "+48.85840+002.29450+035.000/"
    assert c.xmp == XMP
    assert c.created_utc() == datetime(2023, 7, 14, 16, 30, 5, tzinfo=timezone.utc)
    assert c.mp4_tags() == {
        "com.apple.quicktime.creationdate": "2023-07-14T18:30:05+0200",
        "com.apple.quicktime.make": "Canon",
        "com.apple.quicktime.model": "Canon EOS R5",
        "com.apple.quicktime.location.ISO6709": "+48.85840+002.29450+035.000/",
    }
    other = Capture.from_tags(camera_exif(offset="-05:30", south_west=True).tobytes())
    assert other.location == "-48.85840-002.29450-035.000/"  # south, west, below sea level
    assert other.created_utc() == datetime(2023, 7, 15, 0, 0, 5, tzinfo=timezone.utc)


def test_an_unknown_altitude_0_over_0_is_left_out_of_the_location():
    from PIL.TiffImagePlugin import IFDRational

    exif = camera_exif()
    exif.get_ifd(0x8825)[6] = IFDRational(0, 0)  # what cameras write when they do not know it
    assert Capture.from_tags(exif.tobytes()).location == "+48.85840+002.29450/"


def test_a_time_without_offset_is_this_computers_local_time(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no summer time
    time.tzset()
    try:
        c = Capture.from_tags(camera_exif(offset=None).tobytes())
        assert c.taken == datetime(2023, 7, 14, 18, 30, 5) and c.taken.tzinfo is None
        assert c.created_utc() == datetime(2023, 7, 14, 9, 30, 5, tzinfo=timezone.utc)
        assert "com.apple.quicktime.creationdate" not in c.mp4_tags()  # its offset is not known
    finally:
        monkeypatch.undo()
        time.tzset()


def test_blank_and_malformed_tags_are_left_out():
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"
    exif[0x010F] = "   "
    c = Capture.from_tags(exif.tobytes())
    assert (c.taken, c.make, c.model, c.location) == (None, None, None, None) and c.mp4_tags() == {}
    assert Capture.from_tags(b"Exif\0\0garbage").mp4_tags() == {}
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "1850:01:01 12:00:00"  # before the movie header's epoch (1904)
    early = Capture.from_tags(exif.tobytes())
    assert early.mp4_tags() == {} and early.created_utc() is None
    assert Capture.from_tags(None).exif is None


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_read_photo_keeps_the_xmp_packet(tmp_path, suffix):
    im = Image.new("RGB", (8, 6), "red")
    path = tmp_path / f"x{suffix}"
    if suffix == ".png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        im.save(path, pnginfo=info)
    elif suffix == ".tif":
        im.save(path, tiffinfo={700: XMP})
    else:
        im.save(path, xmp=XMP)
    photo = media.read_photo(path)
    assert b'xmp:Rating="4"' in photo.xmp and b"<rdf:li>surfing</rdf:li>" in photo.xmp
    assert photo.capture.xmp == photo.xmp


# ---------------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("loops", [1, 3])
def test_mp4_carries_creation_time_camera_and_location(tmp_path, loops):
    out = clipwriter.write_clip(frames(), tmp_path / "c.mp4", "mp4", fps=8, loops=loops,
                                capture=Capture.from_tags(camera_exif().tobytes()))
    assert mp4_tags(out) == {  # each once (the creation time was listed twice, "T;T"; a loop's copy
        "major_brand": "isom", "minor_version": "512", "compatible_brands": "isomiso2avc1mp41",  # doubled these)
        "creation_time": "2023-07-14T16:30:05.000000Z",
        "com.apple.quicktime.creationdate": "2023-07-14T18:30:05+0200",
        "com.apple.quicktime.make": "Canon",
        "com.apple.quicktime.model": "Canon EOS R5",
        "com.apple.quicktime.location.ISO6709": "+48.85840+002.29450+035.000/",
        "encoder": mp4_tags(out)["encoder"],
    }
    data = out.read_bytes()
    keys = data[data.index(b"keys") - 4:]
    keys = keys[:int.from_bytes(keys[:4], "big")]
    assert re.findall(rb"mdta([\x20-\x7e]+?)(?=\0|$)", keys[16:]) == [
        b"com.apple.quicktime.creationdate", b"com.apple.quicktime.make", b"com.apple.quicktime.model",
        b"com.apple.quicktime.location.ISO6709", b"encoder"]
    assert mvhd_time(out) == datetime(2023, 7, 14, 16, 30, 5, tzinfo=timezone.utc)

    plain = clipwriter.write_clip(frames(), tmp_path / "p.mp4", "mp4", fps=8)
    assert not any(k.startswith("com.apple") or k == "creation_time" for k in mp4_tags(plain))
    assert mvhd_time(plain) == datetime(1904, 1, 1, tzinfo=timezone.utc)  # ffmpeg's "unknown"


def test_webp_carries_exif_and_xmp_and_still_animates(tmp_path):
    out = clipwriter.write_clip(frames(5), tmp_path / "c.webp", "webp", fps=10,
                                capture=Capture.from_tags(camera_exif().tobytes(), XMP))
    with Image.open(out) as im:
        assert im.n_frames == 5 and im.is_animated
        exif = im.getexif()
        assert exif[0x010F] == "Canon" and exif[0x0110] == "Canon EOS R5"
        assert exif.get_ifd(0x8769)[0x9003] == "2023:07:14 18:30:05"
        assert exif.get_ifd(0x8825)[1] == "N"
        assert (exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003]) == (32, 24)  # the clip's size
        assert im.info["xmp"] == XMP.replace(b'tiff:Orientation="6"', b'tiff:Orientation="1"').replace(
            b'PixelXDimension="64"', b'PixelXDimension="32"').replace(b'PixelYDimension="48"',
                                                                        b'PixelYDimension="24"')  # upright
    plain = clipwriter.write_clip(frames(5), tmp_path / "p.webp", "webp", fps=10)
    with Image.open(plain) as im:
        assert im.n_frames == 5 and "exif" not in im.info and "xmp" not in im.info


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_still_keeps_exif_and_xmp_with_its_own_size_and_an_srgb_profile(tmp_path, suffix):
    capture = Capture.from_tags(camera_exif().tobytes(), XMP)
    image = np.zeros((20, 30, 3), np.uint8)
    out = clipwriter.write_still(image, tmp_path / f"s{suffix}", capture=capture)
    with Image.open(out) as im:
        exif = im.getexif()
        assert exif[0x010F] == "Canon"
        sub = exif.get_ifd(0x8769)
        assert (sub[0xA002], sub[0xA003], sub[0xA001]) == (30, 20, 1)  # the still's size, sRGB
        assert sub[0x9003] == "2023:07:14 18:30:05"
        xmp = colour.xmp_of(im)
        assert b'xmp:Rating="4"' in xmp and b"<rdf:li>surfing</rdf:li>" in xmp
        assert b'tiff:Orientation="1"' in xmp  # the pixels are upright
        assert b'exif:PixelXDimension="30"' in xmp and b'exif:PixelYDimension="20"' in xmp
        profile = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        assert "sRGB" in profile.profile.profile_description
    bare = clipwriter.write_still(image, tmp_path / f"bare{suffix}")
    with Image.open(bare) as im:
        assert not im.getexif().get_ifd(0x8769) and colour.xmp_of(im) is None and im.info.get("icc_profile")


# ------------------------------------------------------------------------------------------- end to end


def test_make_clip_keeps_the_photos_capture_and_strips_it_when_asked(tmp_path, tiny_weights):
    photo = camera_photo(tmp_path / "shot.jpg", orientation=6)
    kw = dict(weights=tiny_weights, device="cpu", tile=0, frames=4)
    res = make_clip(photo, tmp_path / "c.mp4", still=tmp_path / "mid.jpg", **kw)
    assert (res.width, res.height) == (48, 64)  # turned upright
    assert mp4_tags(res.output)["com.apple.quicktime.model"] == "Canon EOS R5"
    assert mvhd_time(res.output) == datetime(2023, 7, 14, 16, 30, 5, tzinfo=timezone.utc)
    with Image.open(res.still) as im:
        exif = im.getexif()
        assert exif[0x0112] == 1 and exif.get_ifd(0x8825)[2] == (48.0, 51.0, 30.24)
        assert (exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003]) == (48, 64)
        assert b'xmp:Rating="4"' in im.info["xmp"]

    bare = make_clip(photo, tmp_path / "s.webp", still=tmp_path / "s.jpg", metadata=False, **kw)
    assert (bare.width, bare.height) == (48, 64)
    with Image.open(bare.output) as im:
        assert "exif" not in im.info and "xmp" not in im.info
    with Image.open(bare.still) as im:
        assert not im.getexif() and "xmp" not in im.info and im.info.get("icc_profile")
    stripped = make_clip(photo, tmp_path / "s.mp4", metadata=False, **kw)
    assert not any(k.startswith("com.apple") or k == "creation_time" for k in mp4_tags(stripped.output))
