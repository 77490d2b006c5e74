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

import functools
import io
import logging
import os
import re
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from .errors import MediaError, output_error  # noqa: F401 -- the API of media

DEFAULT_MAX_PIXELS: int = 200_000_000
FORMATS = ("mp4", "gif", "webp", "frames")

# Pillow formats read_photo accepts (never EPS & co., whose loaders run external programs)
_READABLE = ("JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP", "DIB", "GIF", "HEIF", "AVIF", "PPM", "TGA")
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_ORIENTATION = 0x0112
_INPUTS: set[tuple[int, int]] = set()  # (st_dev, st_ino) of every photo read: never an output


class MediaWarning(UserWarning):
    """Something was read with a harmless fallback (a broken colour profile, 16-bit read at 8 bits)."""


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
    notes = _Notes()
    try:
        Image.init()  # registers every plugin; the ones not installed (HEIF, AVIF) are left out below
        # from a file object: Pillow would map a raw TIFF into memory, and lose its orientation doing so
        with _reading(path, notes), open(path, "rb") as file, \
                Image.open(file, formats=[f for f in _READABLE if f in Image.OPEN]) as im:
            notes.format = im.format
            _check_size(path, im.size, limit)  # from the header, with our message
            _check_data(path, im, st.st_size)
            deep = _is_deep_colour(im)  # before load(), which forgets the tiles
            _check_memory(path, im, deep)
            Image.MAX_IMAGE_PIXELS = limit  # and Pillow's checks while decoding (frames, sizes found late)
            im.load()
            _check_size(path, im.size, limit)
            orientation, exif = _exif(im, path)
            xmp = _xmp(im)
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
        kind = f"{_kind(notes.format, path)} file"
        if "truncat" in str(e).lower():
            raise MediaError(path, f"truncated {kind}") from e
        raise MediaError(path, f"corrupt {kind} ({notes.tiff_error or f'{type(e).__name__}: {e}'})") from e
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


# --- what a file can hold, what a photo costs: checked from the header, before decoding

# Pixels a codec can pack into one byte of its data at the very most (rounded up, pixels of 1 bit), for the
# compressions where there is such a bound: a file with less data than width x height / this cannot fill
# the size it declares.
_PIXELS_PER_BYTE = {
    "raw": 8,  # a pixel takes 1 bit at the least
    "zip": 8 * 1032,  # deflate makes 1032 bytes of a byte at most (a 258-byte match coded in 2 bits)
    "jpeg": 64 * 8 * 8,  # Huffman coding spends a bit or more on each 8x8 block; counted as 1 per 8 blocks,
    # as a subsampled component has fewer blocks
    "gif": 8 * 4096,  # an LZW code takes 3 bits or more and stands for 4096 pixels at most
    "tga_rle": 128,  # a packet of 2 bytes or more repeats a pixel 128 times at most
}
_TIFF_PIXELS_PER_BYTE = {  # Pillow decodes compressed TIFF with libtiff; by compression
    "raw": 8, "packbits": 8 * 64, "tiff_lzw": 8 * 4096, "tiff_deflate": 8 * 1032, "tiff_adobe_deflate": 8 * 1032,
    "jpeg": 64 * 8 * 8, "tiff_jpeg": 64 * 8 * 8,
}  # CCITT fax, LZMA, Zstandard, WebP: no useful bound (a blank fax line takes a bit)
_ARITHMETIC_SOF = (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)  # JPEG frames coded arithmetically: no such bound
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _check_data(path: Path, im: Image.Image, file_size: int) -> None:
    """MediaError "truncated" for a file whose data cannot fill the size its header declares (cut short, or
    a forged size), before Pillow allocates the image: each codec packs a bounded number of pixels into a
    byte (_PIXELS_PER_BYTE); a PNG's image data is counted exactly."""
    w, h = im.size
    if im.format == "PNG":
        _check_png(path, file_size)
        return
    start, need = file_size, 0
    for tile in im.tile:
        codec, extents, offset = tile[0], tile[1], tile[2]
        if not extents or len(extents) != 4:
            continue
        area = max(0, extents[2] - extents[0]) * max(0, extents[3] - extents[1])
        per_byte = _PIXELS_PER_BYTE.get(codec)
        if codec == "libtiff":
            per_byte = _TIFF_PIXELS_PER_BYTE.get(str(im.info.get("compression")))
        elif codec == "jpeg" and im.format in ("JPEG", "MPO"):
            arithmetic, offset = _jpeg_scan(path)
            per_byte = None if arithmetic else per_byte
        if per_byte:
            need += -(-area // per_byte)
            start = min(start, max(0, offset or 0))
    have = file_size - start
    if need > have:
        raise MediaError(path, f"truncated {_kind(im.format, path)} file: {w}x{h} needs at least {need:,} bytes of "
                               f"image data, the file has {max(have, 0):,}")


def _kind(fmt: str | None, path: Path) -> str:
    """What to call the file in a message: its format as Pillow found it, else by its suffix."""
    return {"MPO": "JPEG", "WEBP": "WebP"}.get(fmt or "", fmt or _format_name(path))


def _jpeg_scan(path: Path) -> tuple[bool, int]:
    """(arithmetic coding, offset of the first scan's data) from a JPEG's markers; (True, 0) when they
    cannot be followed (Pillow says what is wrong)."""
    arithmetic, pos = False, 2
    with open(path, "rb") as f:
        while True:
            f.seek(pos)
            head = f.read(4)
            if len(head) < 2 or head[0] != 0xFF:
                return True, 0
            marker = head[1]
            if marker == 0xFF:  # fill byte
                pos += 1
            elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
                pos += 2
            elif len(head) < 4:
                return True, 0
            else:
                arithmetic = arithmetic or marker in _ARITHMETIC_SOF
                pos += 2 + int.from_bytes(head[2:4], "big")
                if marker == 0xDA:
                    return arithmetic, pos


def _check_png(path: Path, file_size: int) -> None:
    """A PNG's zlib stream inflated (and thrown away, a megabyte at a time) until it fills the rows its
    header declares: MediaError "truncated" when it ends sooner. Pillow takes a stream that ends early
    for a complete image, and leaves the rest of it blank."""
    with open(path, "rb") as f:
        head = f.read(33)
        if len(head) < 33 or head[12:16] != b"IHDR":
            return  # Pillow opened it all the same: nothing to count
        w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
        bits = depth * _PNG_CHANNELS.get(colour, 0)
        passes = _ADAM7 if interlace == 1 else ((0, 0, 1, 1),)
        expected = 0
        for x0, y0, dx, dy in passes:
            cols, rows = max(0, -(-(w - x0) // dx)), max(0, -(-(h - y0) // dy))
            expected += rows * (1 + (cols * bits + 7) // 8) if cols else 0
        if file_size * 1032 < expected:
            raise MediaError(path, f"truncated PNG file: {w}x{h} needs at least {-(-expected // 1032):,} "
                                   f"bytes of image data, the file has {file_size:,}")
        stream, got = zlib.decompressobj(), 0
        f.seek(8)
        while got < expected and not stream.eof:
            chunk = f.read(8)
            if len(chunk) < 8:
                break
            length, kind = struct.unpack(">I4s", chunk)
            if kind == b"IEND":
                break
            left = length if kind == b"IDAT" else 0
            while left and got < expected and not stream.eof:
                data = f.read(min(left, 1 << 16))
                if not data:
                    break
                left -= len(data)
                try:
                    while data and got < expected:
                        got += len(stream.decompress(data, 1 << 20))
                        data = stream.unconsumed_tail
                except zlib.error:
                    return  # corrupt, not short: Pillow says what is wrong
            f.seek((length if kind != b"IDAT" else left) + 4, os.SEEK_CUR)  # the rest, and the CRC
    if got < expected:
        rows = f" (about {got * h // expected:,} of {h:,} rows)" if interlace != 1 else ""
        raise MediaError(path, f"truncated PNG file: its image data ends after {got:,} of {expected:,} "
                               f"bytes{rows}")


# Bytes per pixel: Pillow's image of each mode, and what reading adds beside it (the float32 result)
_PIL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_RESULT_BYTES = 12
_DEEP_BYTES = 8  # ffmpeg's 16-bit RGBA of a deep-colour photo
_BAND_BYTES = 64 << 20  # the band of rows being converted, and its temporaries


def _check_memory(path: Path, im: Image.Image, deep: bool) -> None:
    """MediaError when reading the photo would need more memory than is free (estimated from its declared
    size), rather than swapping for minutes or being killed."""
    w, h = im.size
    need = w * h * (_PIL_BYTES.get(im.mode, 4) + _RESULT_BYTES + (_DEEP_BYTES if deep else 0)) + _BAND_BYTES
    free = _free_memory()
    if free is not None and need > free:
        raise MediaError(path, f"{w}x{h} needs about {need / 1e9:.1f} GB of memory to read, and "
                               f"{free / 1e9:.1f} GB is free")


def _free_memory() -> int | None:
    """Bytes of memory the system can still give (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# --- what Pillow and libtiff say while a photo is read: one warning each, naming the file


class _Notes:
    """What one read found out: the file's format; libtiff's messages [(kind, text)], kind "warning" or
    "error"; the text of Pillow's log records of warning level and up."""

    def __init__(self):
        self.format: str | None = None  # as Pillow found it, once the file is open
        self.tiff: list[tuple[str, str]] = []
        self.log: list[str] = []

    @property
    def tiff_error(self) -> str | None:
        return next((text for kind, text in reversed(self.tiff) if kind == "error"), None)


@contextmanager
def _reading(path: Path, notes: _Notes):
    """Around one read: Pillow's bomb checks as errors (off while opening: read_photo checks the header
    itself, then sets them to its limit), truncated files never accepted, Pillow's globals restored
    afterwards; Pillow's warnings and log records and libtiff's messages (on this thread) collected into
    `notes`, then, if the read succeeds, warned as MediaWarnings that name the file. Warnings and records
    from elsewhere (another thread) pass through as they were."""
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, False
    _hook_libtiff()
    outer = getattr(_libtiff, "notes", None)
    _libtiff.notes = notes
    log, handler = logging.getLogger("PIL"), _PillowLog(notes)
    propagate, log.propagate = log.propagate, False
    log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield notes
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved
        _libtiff.notes = outer
        log.removeHandler(handler)
        log.propagate = propagate
    seen = set()
    for w in caught:
        if issubclass(w.category, MediaWarning):
            text = str(w.message)
        elif _from_reader(w.filename):
            text = f"{path}: {' '.join(str(w.message).split())}"
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            continue
        if text not in seen:
            seen.add(text)
            warnings.warn(text, MediaWarning, stacklevel=3)
    for text in dict.fromkeys([*notes.log, *(text for _, text in notes.tiff)]):
        warnings.warn(f"{path}: {text}", MediaWarning, stacklevel=3)


class _PillowLog(logging.Handler):
    """Pillow's log records (which Python would print bare on stderr): this thread's into `notes`, other
    threads' handed on as if this handler were not there."""

    def __init__(self, notes: _Notes):
        super().__init__(logging.WARNING)
        self.notes, self.thread = notes, threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.notes.log.append(" ".join(self.format(record).split()))
        else:
            logging.getLogger().handle(record)


def _from_reader(filename: str) -> bool:
    """True for a warning raised in Pillow, pillow-heif or this module."""
    import PIL

    where = os.path.abspath(filename or "")
    return where == os.path.abspath(__file__) or any(
        where.startswith(os.path.dirname(os.path.abspath(m.__file__)) + os.sep)
        for m in (PIL, sys.modules.get("pillow_heif")) if m is not None and getattr(m, "__file__", None))


_libtiff = threading.local()  # .notes: the _Notes of the photo this thread is reading, else None
_libtiff_handlers: list = []  # the C callbacks given to libtiff, kept alive
_libtiff_hooked = False


def _hook_libtiff() -> None:
    """Once: route libtiff's warnings and errors, which it would print on stderr naming no file, to the
    photo being read on the thread (_libtiff.notes); outside a read they still go to stderr. Where Pillow's
    libtiff cannot be reached (builds that link it in), nothing changes."""
    global _libtiff_hooked
    if _libtiff_hooked:
        return
    _libtiff_hooked = True
    try:
        import ctypes

        where = _libtiff_path()
        if where is None:
            return
        lib, libc = ctypes.CDLL(where), ctypes.CDLL(None)
        vsnprintf = libc.vsnprintf
        vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)

        def handler(kind: str):
            def said(module: bytes | None, fmt: bytes | None, args) -> None:
                buf = ctypes.create_string_buffer(1024)
                if fmt:
                    vsnprintf(buf, len(buf), fmt, args)
                text = " ".join(buf.value.decode("utf-8", "replace").split()).rstrip(".")
                name = (module or b"").decode("utf-8", "replace")
                if name and name != "tempfile.tif":  # the name Pillow gives every file it hands libtiff
                    text = f"{name}: {text}"
                notes = getattr(_libtiff, "notes", None)
                if notes is not None:
                    notes.tiff.append((kind, text))
                else:
                    with suppress(Exception):
                        sys.stderr.write(f"libtiff {kind}: {text}\n")

            return handler_type(said)

        for kind, setter in (("warning", lib.TIFFSetWarningHandler), ("error", lib.TIFFSetErrorHandler)):
            callback = handler(kind)
            setter.argtypes, setter.restype = [handler_type], ctypes.c_void_p
            setter(callback)
            _libtiff_handlers.append(callback)
    except Exception:  # noqa: BLE001 -- no hook: libtiff keeps printing as before
        return


def _libtiff_path() -> str | None:
    """The file of the libtiff that Pillow's C module loaded, or None."""
    from PIL import _imaging

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            found = {line[line.index("/"):].strip() for line in f if "/libtiff" in line and "/" in line}
    except OSError:
        found = set()
    if not found:
        here = Path(_imaging.__file__).parent
        found = {str(p) for p in [*here.parent.glob("pillow.libs/libtiff*"), *here.glob(".dylibs/libtiff*")]}
    return min(found, key=lambda p: ("pillow" not in p.lower() and "/PIL/" not in p, p)) if found else None


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


def _format_name(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "tif": "TIFF"}.get(suffix, suffix.upper() or "image")


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
    profile = _profile(im.info.get("icc_profile"), path)
    if deep:
        rgba = _ffmpeg_rgba64(path, im)  # Pillow truncated 16-bit colour to 8 bits
        if rgba is not None:
            grey = im.mode == "LA"
            icc = _icc_float(profile, 1 if grey else 3, path)
            for y in range(0, h, rows):
                band = rgba[y : y + rows].astype(np.float32)
                band /= 65535
                colour = band[..., :1] if grey else band[..., :3]
                stored[y : y + rows] = _over_white(icc(colour) if icc else colour, band[..., 3] if "A" in im.mode
                                                   else None)
            return out, 16
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        icc = _icc_float(profile, 1, path)
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
    elif mode in ("1", "La", "RGBa"):
        mode = {"1": "L", "La": "LA", "RGBa": "RGBA"}[mode]
    elif mode not in ("RGB", "RGBA", "L", "LA", "CMYK", "LAB"):
        mode = "RGB"
    colour_mode = mode[:-1] if mode in ("RGBA", "LA") else mode
    lab = _lab_to_srgb() if mode == "LAB" else None
    xf = None if lab else _transform(profile, colour_mode, path)
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
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-f", demuxer, "-i", f"file:{path}",
           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgba64le", "-"]
    run = subprocess.run(cmd, capture_output=True)
    if run.returncode == 0 and len(run.stdout) == w * h * 8:
        return np.frombuffer(run.stdout, dtype="<u2").reshape(h, w, 4)
    why = _last_line(run.stderr) or f"{len(run.stdout)} bytes instead of {w * h * 8}"
    warnings.warn(f"{path}: read at 8 bits per channel (ffmpeg could not decode 16 bits: {why})", MediaWarning)
    return None


# ----------------------------------------------------------------------------------------- colour & EXIF


def _profile(icc: bytes | None, path: Path):
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
        return False  # _transform says what is wrong with it
    levels = np.round(np.linspace(0, 255, 9)).astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(81, 9, 3)
    out = np.asarray(xf.apply(Image.fromarray(grid)), np.int16)
    return int(np.abs(out - grid).max()) <= 1


def _transform(profile, mode: str, path: Path):
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


def _icc_float(profile, channels: int, path: Path):
    """A function taking HxWxC float 0..1 (C = `channels`, 1 grey or 3) through the profile to HxWx3
    without dropping to 8 bits, or None when there is nothing to convert: lcms transforms a lattice (all
    256 greys, or 60^3 colours spaced densely near black, where curves bend most) once, and the pixels are
    interpolated between its points, so gradients stay smooth (within 0.002 of exact)."""
    mode = "L" if channels == 1 else "RGB"
    xf = _transform(profile, mode, path)
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


def _lab_to_srgb():
    """An lcms transform from CIE LAB images to sRGB."""
    from PIL import ImageCms

    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(lab, srgb, "LAB", "RGB")


def _exif(im: Image.Image, path: Path) -> tuple[int, bytes | None]:
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


def _xmp(im: Image.Image) -> bytes | None:
    """The XMP packet as the file holds it (JPEG and WebP: info; PNG: an iTXt chunk; TIFF: tag 700)."""
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if xmp is None and im.format == "TIFF":
        xmp = getattr(im, "tag_v2", {}).get(700)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return bytes(xmp) if isinstance(xmp, (bytes, bytearray)) and xmp.strip() else None


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


def default_output(photo_path: str | os.PathLike[str], fmt: str = "mp4") -> Path:
    """The output beside the photo: <stem>.mp4 / .gif / .webp, or the folder <stem>_frames for "frames";
    <stem>_clip.<ext> when that would be the photo itself (a .webp or .gif photo)."""
    photo = Path(photo_path)
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


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float 0..1 of any shape -> uint8 0..255, rounded to nearest, out-of-range clipped, NaN -> 0."""
    x = np.asarray(frames, dtype=np.float32) * 255 + 0.5
    np.clip(np.nan_to_num(x, copy=False), 0, 255, out=x)
    return x.astype(np.uint8)


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
