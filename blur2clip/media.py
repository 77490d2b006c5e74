"""Reading a photo: `read_photo` turns any JPEG, PNG, TIFF, WebP, BMP, GIF (first frame), with the optional
`pillow-heif` extra HEIC/HEIF, or with `rawpy` a camera RAW file (see `raw`) into a `Photo` whose pixels are
HxWx3 float32 sRGB 0..1: EXIF orientation applied, an embedded ICC profile converted to sRGB, alpha
composited over white, 16-bit sources kept at full precision (Pillow truncates 16-bit colour PNG/TIFF to 8
bits, so those are decoded by ffmpeg).

Also the names and order of a clip (`clip_format`, `default_output`, `play_order`); writing clips and
stills is `clipwriter`'s. Every photo read is remembered (`_INPUTS`), and no writer ever writes onto it.

No torch here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .colour import (exif_colour_space, exif_of, icc_float, lab_to_srgb, profile, transform,  # noqa: F401
                     xmp_of)  # xmp_of: also capture's
from .errors import MediaError, MediaWarning, output_error  # noqa: F401 -- the API of media
from .photocheck import check_data, check_memory, kind
from .readnotes import Notes, reading

DEFAULT_MAX_PIXELS: int = 200_000_000
FORMATS = ("mp4", "gif", "webp", "frames")

# Pillow formats read_photo accepts (never EPS & co., whose loaders run external programs)
_READABLE = ("JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP", "DIB", "GIF", "HEIF", "AVIF", "PPM", "TGA")
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_INPUTS: set[tuple[int, int]] = set()  # (st_dev, st_ino) of every photo read: never an output


@dataclass
class Photo:
    """A decoded photo.

    pixels: HxWx3 float32, sRGB 0..1: EXIF orientation applied, ICC profile converted to sRGB, alpha
        composited over white, 16-bit kept at full precision.
    path: the file it came from, as given.
    exif: the camera's EXIF as bytes ("Exif\\0\\0" + TIFF), orientation reset to 1, for the still photo;
        None when the file has none.
    bit_depth: bits per channel of the source: 8, or 16 for anything deeper (16-bit, 32-bit int, float).
    xmp: the photo's XMP packet (rating, keywords, ...), or None.
    """

    pixels: np.ndarray
    path: Path
    exif: bytes | None
    bit_depth: int
    xmp: bytes | None = None

    @property
    def capture(self):
        """Its capture metadata (when, where, which camera) as a capture.Capture."""
        from .capture import Capture

        return Capture.from_tags(self.exif, self.xmp)


# ----------------------------------------------------------------------------------------------- reading


def _formats(file) -> list[str]:
    """The formats to try on an open photo file: with Pillow's JPEG and PNG plugins alone when it starts
    as one of these (most photos: importing every plugin takes longer than decoding a small JPEG), with
    every plugin otherwise (the ones not installed, HEIF and AVIF, are left out)."""
    head = file.read(8)
    file.seek(0)
    Image.preinit()
    if not head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")):
        Image.init()
    return [f for f in _READABLE if f in Image.OPEN]


def read_photo(path: str | os.PathLike[str], max_pixels: int | None = None) -> Photo:
    """Read one photo into HxWx3 float32 sRGB 0..1 (see `Photo`).

    Before anything is decoded, from the header: images of more than `max_pixels` pixels (default: env
    BLUR2CLIP_MAX_PIXELS, else DEFAULT_MAX_PIXELS) are refused; so is a file too small to hold the pixels
    it declares (truncated, or a forged size), and a photo that would need more memory than the machine
    has free. Any unreadable file raises MediaError. What Pillow or libtiff warn about while reading comes
    out as one MediaWarning each, naming the file.
    """
    path = Path(path)
    limit = _pixel_limit(max_pixels)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(path, "no such file") from None
    except OSError as e:
        raise MediaError(path, e.strerror or e) from None
    if path.is_dir():
        raise MediaError(path, "is a folder, not a photo")
    if st.st_size == 0:
        raise MediaError(path, "empty file")
    from . import raw

    if raw.is_raw(path):
        pixels, exif = raw.read_raw(path, lambda size: _check_size(path, size, limit))
        _INPUTS.add((st.st_dev, st.st_ino))
        return Photo(pixels=pixels, path=path, exif=exif, bit_depth=16)
    heif = _register_heif()
    notes = Notes()
    try:
        # from a file object: Pillow would map a raw TIFF into memory, and lose its orientation doing so
        with reading(path, notes), open(path, "rb") as file, Image.open(file, formats=_formats(file)) as im:
            notes.format = im.format
            _check_size(path, im.size, limit)  # from the header, with our message
            check_data(path, im, st.st_size)
            deep = _is_deep_colour(im)  # before load(), which forgets the tiles
            check_memory(path, im, deep)
            Image.MAX_IMAGE_PIXELS = limit  # and Pillow's checks while decoding (frames, sizes found late)
            im.load()
            _check_size(path, im.size, limit)
            orientation, exif = exif_of(im, path)
            xmp = xmp_of(im)
            pixels, depth = _decode(im, path, deep, orientation)
    except MediaError:
        raise
    except Image.UnidentifiedImageError:
        if not heif and (_is_heif(path) or path.suffix.lower() in (".heic", ".heif", ".hif")):
            raise MediaError(path, "HEIC/HEIF photos need an extra: pip install 'blur2clip[heic]'") from None
        raise MediaError(path, "not an image file (or a format blur2clip cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaError(path, f"more pixels than the limit of {limit:,}; {_RAISE_LIMIT}") from None
    except MemoryError:
        raise MediaError(path, "not enough memory to read it") from None
    except Exception as e:  # Pillow's plugins raise anything on malformed data
        if isinstance(e, OSError) and e.errno is not None:  # from the file system: permission denied...
            raise MediaError(path, e.strerror or e) from None
        what = f"{kind(notes.format, path)} file"
        if "truncat" in str(e).lower():
            raise MediaError(path, f"truncated {what}") from e
        raise MediaError(path, f"corrupt {what} ({notes.tiff_error or f'{type(e).__name__}: {e}'})") from e
    _INPUTS.add((st.st_dev, st.st_ino))
    return Photo(pixels=pixels, path=path, exif=exif, bit_depth=depth, xmp=xmp)


_RAISE_LIMIT = "raise it with --max-pixels (max_pixels= in Python) or the environment variable BLUR2CLIP_MAX_PIXELS"


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A `warnings.showwarning` for the command line: each warning as ONE line, `blur2clip: warning: `
    and the message (a MediaWarning's names its file), instead of Python's two (location, source line)."""
    stream = sys.stderr if file is None else file
    if stream is None:
        return
    with suppress(OSError, ValueError):
        stream.write(f"blur2clip: warning: {' '.join(str(message).split())}\n")


def _pixel_limit(max_pixels: int | None) -> int:
    if max_pixels is None:
        env = os.environ.get("BLUR2CLIP_MAX_PIXELS")
        try:
            max_pixels = int(env) if env else DEFAULT_MAX_PIXELS
        except ValueError:
            raise MediaError("BLUR2CLIP_MAX_PIXELS", f"{env!r} is not a whole number") from None
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    return max_pixels


def _check_size(path: Path, size: tuple[int, int], limit: int) -> None:
    w, h = size
    if w * h > limit:
        raise MediaError(path, f"{w}x{h} is {w * h:,} pixels, over the limit of {limit:,} "
                               f"(a guard against decompression bombs); {_RAISE_LIMIT}")


def _register_heif() -> bool:
    """Register pillow-heif's opener if it is installed (once); True when HEIC can be read."""
    global _heif
    if _heif is None:
        try:
            import pillow_heif
        except ImportError:
            _heif = False
        else:
            pillow_heif.register_heif_opener()
            _heif = True
    return _heif


_heif: bool | None = None


def _is_heif(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:  # unreadable now: the caller reports the photo as not an image
        return False
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _is_deep_colour(im: Image.Image) -> bool:
    """True for a 16-bit colour (or grey+alpha) PNG/TIFF, which Pillow would truncate to 8 bits."""
    raw = im.tile[0].args if im.tile else None
    rawmode = raw if isinstance(raw, str) else raw[0] if isinstance(raw, tuple) and raw else ""
    return im.format in ("PNG", "TIFF") and im.mode in ("RGB", "RGBA", "LA") and "16" in str(rawmode)


def _decode(im: Image.Image, path: Path, deep: bool, orientation: int) -> tuple[np.ndarray, int]:
    """A loaded image as HxWx3 float32 sRGB 0..1, turned upright for its EXIF orientation, and its bits per
    channel. Converted a band of rows at a time straight into the result, so that beside Pillow's image
    only the result is ever whole in memory."""
    w, h = im.size
    out = np.empty((w, h, 3) if orientation >= 5 else (h, w, 3), np.float32)
    stored = _stored_view(out, orientation)  # out seen as the file stores it: bands written here land upright
    rows = max(1, (1 << 18) // max(w, 1))  # about a quarter megapixel at a time
    # an embedded profile decides; without one, a camera's EXIF may say Adobe RGB
    icc_profile = profile(im.info.get("icc_profile") or exif_colour_space(im), path)
    if deep:
        rgba = _ffmpeg_rgba64(path, im)  # Pillow truncated 16-bit colour to 8 bits
        if rgba is not None:
            grey = im.mode == "LA"
            icc = icc_float(icc_profile, 1 if grey else 3, path)
            for y in range(0, h, rows):
                band = rgba[y : y + rows].astype(np.float32)
                band /= 65535
                colour = band[..., :1] if grey else band[..., :3]
                stored[y : y + rows] = _over_white(icc(colour) if icc else colour, band[..., 3] if "A" in im.mode
                                                   else None)
            return out, 16
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        icc = icc_float(icc_profile, 1, path)
        for y in range(0, h, rows):
            grey = np.asarray(im.crop((0, y, w, min(h, y + rows)))).astype(np.float32)
            if im.mode != "F":
                grey /= 65535
            grey = np.clip(grey, 0, 1)[..., None]
            stored[y : y + rows] = icc(grey) if icc else grey
        return out, 16
    mode = im.mode
    if mode in ("P", "PA"):
        mode = "RGBA" if mode == "PA" or "transparency" in im.info else "RGB"
    elif mode in ("L", "RGB") and "transparency" in im.info:  # a PNG's tRNS: one colour is transparent
        mode += "A"
    elif mode in ("1", "La", "RGBa"):
        mode = {"1": "L", "La": "LA", "RGBa": "RGBA"}[mode]
    elif mode not in ("RGB", "RGBA", "L", "LA", "CMYK", "LAB"):
        mode = "RGB"
    colour_mode = mode[:-1] if mode in ("RGBA", "LA") else mode
    lab = lab_to_srgb() if mode == "LAB" else None
    xf = None if lab else transform(icc_profile, colour_mode, path)
    for y in range(0, h, rows):
        band = im.crop((0, y, w, min(h, y + rows)))
        band = band.convert(mode) if band.mode != mode else band
        alpha = None
        if colour_mode != mode:
            alpha = np.asarray(band.getchannel("A"), dtype=np.float32)
            alpha /= 255
            band = band.convert(colour_mode)
        band = lab.apply(band) if lab else xf.apply(band) if xf else band
        if band.mode == "CMYK":
            band = band.convert("RGB")
        colour = np.asarray(band, dtype=np.float32)
        colour /= 255
        stored[y : y + rows] = _over_white(colour[..., None] if colour.ndim == 2 else colour, alpha)
    return out, 8


def _over_white(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """HxWxC colour composited over white by alpha (HxW 0..1): c*a + 1*(1-a); colour itself without alpha."""
    if alpha is None:
        return colour
    a = alpha[..., None]
    colour *= a
    colour += 1 - a
    return colour


def _stored_view(out: np.ndarray, orientation: int) -> np.ndarray:
    """The upright array `out` seen as the file stores the photo for an EXIF orientation (a view: writing
    it writes `out`), as PIL.ImageOps.exif_transpose turns it."""
    t = out.transpose(1, 0, 2)
    return {1: out, 2: out[:, ::-1], 3: out[::-1, ::-1], 4: out[::-1], 5: t,
            6: np.rot90(out, 1), 7: t[::-1, ::-1], 8: np.rot90(out, -1)}[orientation]


def _ffmpeg_rgba64(path: Path, im: Image.Image) -> np.ndarray | None:
    """HxWx4 uint16 of a 16-bit PNG/TIFF decoded by ffmpeg, or None (with a MediaWarning) if it cannot."""
    w, h = im.size
    demuxer = "png_pipe" if im.format == "PNG" else "tiff_pipe"
    # -noautorotate: the orientation tag is applied once, by the caller, as for every other photo
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-noautorotate", "-f", demuxer, "-i", f"file:{path}",
           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgba64le", "-"]
    run = subprocess.run(cmd, capture_output=True)
    if run.returncode == 0 and len(run.stdout) == w * h * 8:
        return np.frombuffer(run.stdout, dtype="<u2").reshape(h, w, 4)
    why = _last_line(run.stderr) or f"{len(run.stdout)} bytes instead of {w * h * 8}"
    warnings.warn(f"{path}: read at 8 bits per channel (ffmpeg could not decode 16 bits: {why})", MediaWarning)
    return None


# ----------------------------------------------------------------------------------------- naming, order


def clip_format(out: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The clip format for `out`: `fmt` wins; else by suffix (.mp4, .gif, .webp); "frames" for a path
    ending in "/", an existing folder, or a name without suffix. MediaError for anything else."""
    if fmt is not None:
        if fmt.lower() not in FORMATS:
            raise output_error(out, f"unknown clip format {fmt!r} (choose {', '.join(FORMATS)})")
        return fmt.lower()
    text = os.fspath(out)
    if text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix:
        return "frames"
    suffix = Path(text).suffix.lower()
    if suffix.lstrip(".") in ("mp4", "gif", "webp"):
        return suffix.lstrip(".")
    raise output_error(out, f"unknown clip format {suffix!r} (use .mp4, .gif, .webp, or a folder ending in /)")


def clip_output(photo: str | os.PathLike[str], out: str | os.PathLike[str], fmt: str | None) -> Path:
    """Where the clip of `photo` goes for an output `out` given with format `fmt` (a str keeps its final
    "/"): with a clip format (mp4, gif, webp), a path ending in "/" or an existing folder takes the clip,
    named after the photo, as several photos go into one; a suffix naming another format than `fmt` is an
    output error."""
    text = os.fspath(out)
    if fmt in ("mp4", "gif", "webp") and (text.endswith(("/", os.sep)) or Path(text).is_dir()) and \
            Path(photo).name not in ("", ".", ".."):
        return default_output(Path(text) / Path(photo).name, fmt)
    named = Path(text).suffix.lower().lstrip(".")
    if fmt is not None and named in ("mp4", "gif", "webp") and named != fmt:
        raise output_error(out, f"its name says {named}, the format asked is {fmt}; make them agree or leave "
                                f"one out")
    return Path(text)


def default_output(photo_path: str | os.PathLike[str], fmt: str = "mp4") -> Path:
    """The output beside the photo: <stem>.mp4 / .gif / .webp, or the folder <stem>_frames for "frames";
    <stem>_clip.<ext> when that would be the photo itself (a .webp or .gif photo)."""
    photo = Path(photo_path)
    if photo.name in ("", ".", ".."):  # a folder's path ('.', '/'): no name to take
        raise MediaError(photo, "is a folder, not a photo")
    if fmt == "frames":
        return photo.with_name(f"{photo.stem}_frames")
    if fmt not in FORMATS:
        raise ValueError(f"unknown clip format {fmt!r}")
    out = photo.with_name(f"{photo.stem}.{fmt}")
    return photo.with_name(f"{photo.stem}_clip.{fmt}") if out.name.lower() == photo.name.lower() else out


ANIMATED_MAX_SIZE = 1080  # the long side of a GIF or WebP clip when no max_size is given


def clip_max_size(fmt: str, max_size: int | None) -> int | None:
    """The long side a photo is shrunk to before its clip is made: max_size when given, else
    ANIMATED_MAX_SIZE for GIF and WebP (a GIF of a 12 MP photo is about 100 MB), else None (full size)."""
    if max_size:
        return max_size
    return ANIMATED_MAX_SIZE if fmt in ("gif", "webp") else None


def play_order(n: int, pingpong: bool = False, reverse: bool = False) -> list[int]:
    """Frame indices to show: 0..n-1 (n-1..0 when reverse); pingpong goes back without repeating the
    turning frames, so a loop of it never stalls: 7 frames -> [0..6, 5..1] (12 entries)."""
    if n < 1:
        raise ValueError(f"need at least one frame, got {n}")
    order = list(range(n))[::-1] if reverse else list(range(n))
    return order + order[-2:0:-1] if pingpong else order


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _last_line(stderr: bytes) -> str:
    """The last line of ffmpeg's log that says what went wrong (not the knock-on "Conversion failed!" and
    the like), with the "@ 0x..." addresses taken out."""
    lines = [re.sub(r" @ 0x[0-9a-f]+\]", "]", " ".join(line.split()))
             for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    useful = [line for line in lines if not any(g in line for g in _KNOCK_ON)]
    return (useful or lines or [""])[-1]


_KNOCK_ON = ("Conversion failed", "Error while", "Error initializing", "Error sending", "Task finished",
             "Terminating thread", "Could not open encoder", "Nothing was written", "Exiting")
