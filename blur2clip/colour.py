"""A photo's colour and metadata as media.read_photo reads them: its ICC profile converted to sRGB (a
profile counts as sRGB by what it does, not by its name), EXIF orientation, and XMP."""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import MediaWarning

_ORIENTATION = 0x0112  # the EXIF tag

@functools.lru_cache(maxsize=1)
def adobe_rgb_icc() -> bytes:
    """An ICC v2 profile of Adobe RGB (1998): its primaries adapted to D50 as Adobe's own profile has
    them, and its tone curve, gamma 563/256. For camera JPEGs that say Adobe RGB only in their EXIF."""
    s15 = lambda *v: b"".join(int(round(x * 65536)).to_bytes(4, "big", signed=True) for x in v)  # noqa: E731
    xyz = lambda *v: b"XYZ \0\0\0\0" + s15(*v)  # noqa: E731
    curve = b"curv\0\0\0\0" + (1).to_bytes(4, "big") + (563).to_bytes(2, "big")  # one entry: a gamma (u8.8)
    name = b"Adobe RGB (1998) from EXIF\0"
    tags = [(b"desc", b"desc\0\0\0\0" + len(name).to_bytes(4, "big") + name + bytes(4 + 4 + 2 + 1 + 67)),
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.60974, 0.31111, 0.01947)),
            (b"gXYZ", xyz(0.20528, 0.62567, 0.06087)), (b"bXYZ", xyz(0.14919, 0.06322, 0.74457)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve), (b"cprt", b"text\0\0\0\0none\0")]
    table, data, offset = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + (offset + len(data)).to_bytes(4, "big") + len(body).to_bytes(4, "big")
        data += body
    header = ((offset + len(data)).to_bytes(4, "big") + b"none" + (0x02100000).to_bytes(4, "big") + b"mntrRGB XYZ "
              + bytes(12) + b"acsp")
    header += bytes(68 - len(header)) + s15(0.9642, 1.0, 0.8249)
    return header + bytes(128 - len(header)) + len(tags).to_bytes(4, "big") + table + data


def exif_colour_space(im: Image.Image) -> bytes | None:
    """The ICC profile of what a photo's EXIF alone says its colours are: Adobe RGB where it marks them so
    as cameras do (DCF: colour space "uncalibrated" with the interoperability index "R03"; some write
    colour space 2), else None (sRGB, or nothing said)."""
    try:
        exif = im.getexif()
        space = exif.get_ifd(0x8769).get(0xA001)
        index = exif.get_ifd(0xA005).get(0x0001)  # the interoperability IFD (Pillow finds it under Exif's)
    except Exception:  # noqa: BLE001 -- unreadable EXIF says nothing (exif_of warns about it)
        return None
    index = index.decode("ascii", "replace") if isinstance(index, bytes) else index
    if space == 2 or (space == 0xFFFF and isinstance(index, str) and index.strip("\0 ") == "R03"):
        return adobe_rgb_icc()
    return None


def profile(icc: bytes | None, path: Path):
    """The embedded ICC profile as an ImageCmsProfile, or None for none, sRGB, or a broken one (warned)."""
    if not icc:
        return None
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        warnings.warn(f"{path}: broken colour profile ignored, read as sRGB ({e})", MediaWarning)
        return None
    return None if space == "RGB" and _acts_as_srgb(bytes(icc)) else profile


@functools.lru_cache(maxsize=16)
def _acts_as_srgb(icc: bytes) -> bool:
    """Whether an RGB profile maps colours as sRGB does (primaries, white and tone curve), to within one
    level of 255 everywhere on a 9x9x9 lattice: then the pixels are used as they are. Its name says
    nothing ("Linear sRGB" is not sRGB)."""
    from PIL import ImageCms

    try:
        xf = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
                                     "RGB", "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except ImageCms.PyCMSError:
        return False  # transform says what is wrong with it
    levels = np.round(np.linspace(0, 255, 9)).astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(81, 9, 3)
    out = np.asarray(xf.apply(Image.fromarray(grid)), np.int16)
    return int(np.abs(out - grid).max()) <= 1


def transform(profile, mode: str, path: Path):
    """An lcms transform from `profile` to sRGB for PIL images of `mode` (L, RGB or CMYK), or None."""
    from PIL import ImageCms

    space = {"L": "GRAY", "RGB": "RGB", "CMYK": "CMYK"}[mode]
    if profile is None or profile.profile.xcolor_space.strip() != space:
        return None  # no profile, or one for another colour space: treat the pixels as sRGB
    try:
        return ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), mode, "RGB",
                                       ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                       ImageCms.Flags.BLACKPOINTCOMPENSATION)
    except ImageCms.PyCMSError as e:
        warnings.warn(f"{path}: colour profile unusable, read as sRGB ({e})", MediaWarning)
        return None


def icc_float(profile, channels: int, path: Path):
    """A function taking HxWxC float 0..1 (C = `channels`, 1 grey or 3) through the profile to HxWx3
    without dropping to 8 bits, or None when there is nothing to convert: lcms transforms a lattice (all
    256 greys, or 60^3 colours spaced densely near black, where curves bend most) once, and the pixels are
    interpolated between its points, so gradients stay smooth (within 0.002 of exact)."""
    mode = "L" if channels == 1 else "RGB"
    xf = transform(profile, mode, path)
    if xf is None:
        return None
    if mode == "L":
        lut = np.asarray(xf.apply(Image.fromarray(np.arange(256, dtype=np.uint8)[None])), np.float32)[0] / 255

        def grey(colour: np.ndarray) -> np.ndarray:
            x = colour[..., 0] * 255
            return np.stack([np.interp(x, np.arange(256), lut[:, c]).astype(np.float32) for c in range(3)], -1)

        return grey
    codes = np.unique(np.round(255 * np.linspace(0, 1, 64) ** 2)).astype(np.uint8)  # 0, 1, 2, 4, ..., 255
    n = len(codes)
    grid = np.stack(np.meshgrid(codes, codes, codes, indexing="ij"), -1).reshape(n * n, n, 3)
    lut = np.asarray(xf.apply(Image.fromarray(grid)), np.float32).reshape(n**3, 3) / 255  # at (r*n + g)*n + b
    at = codes.astype(np.float32)
    cell = np.clip(np.searchsorted(at, np.arange(256), side="right") - 1, 0, n - 2)  # the cell of x in [k, k+1)

    def rgb(colour: np.ndarray) -> np.ndarray:
        x = np.clip(colour, 0, 1) * 255
        i = cell[x.astype(np.intp)]  # lattice cell per channel
        f = (x - at[i]) / (at[i + 1] - at[i])  # where in the cell, 0..1
        base = (i[..., 0] * n + i[..., 1]) * n + i[..., 2]
        fr, fg, fb = f[..., 0:1], f[..., 1:2], f[..., 2:3]

        def edge(dr: int, dg: int):  # interpolated along blue
            at_b = base + (dr * n + dg) * n
            return np.take(lut, at_b, axis=0) * (1 - fb) + np.take(lut, at_b + 1, axis=0) * fb

        face0 = edge(0, 0) * (1 - fg) + edge(0, 1) * fg  # then along green
        face1 = edge(1, 0) * (1 - fg) + edge(1, 1) * fg
        return (face0 * (1 - fr) + face1 * fr).astype(np.float32)  # then along red

    return rgb


def lab_to_srgb():
    """An lcms transform from CIE LAB images to sRGB."""
    from PIL import ImageCms

    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(lab, srgb, "LAB", "RGB")


def exif_of(im: Image.Image, path: Path) -> tuple[int, bytes | None]:
    """(EXIF orientation 1..8, the camera's EXIF bytes with orientation reset to 1 or None)."""
    try:
        exif = im.getexif()
        orientation = int(exif.get(_ORIENTATION, 1))
        if im.format == "TIFF":  # a TIFF's tags are its own structure: keep only the camera's
            tags, exif = exif, Image.Exif()
            for tag in (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298):  # description .. copyright
                if tag in tags:
                    exif[tag] = tags[tag]
            for ifd in (0x8769, 0x8825):  # the Exif and GPS sub-IFDs
                if tags.get_ifd(ifd):
                    exif[ifd] = tags.get_ifd(ifd)
        elif _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        data = exif.tobytes() if len(exif) else None
    except Exception as e:  # malformed EXIF must not cost the photo
        warnings.warn(f"{path}: unreadable EXIF ignored ({e})", MediaWarning)
        return 1, None
    return (orientation if 1 <= orientation <= 8 else 1), data


def xmp_of(im: Image.Image) -> bytes | None:
    """The XMP packet as the file holds it (JPEG and WebP: info; PNG: an iTXt chunk; TIFF: tag 700)."""
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if xmp is None and im.format == "TIFF":
        xmp = getattr(im, "tag_v2", {}).get(700)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return bytes(xmp) if isinstance(xmp, (bytes, bytearray)) and xmp.strip() else None

