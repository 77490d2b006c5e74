"""What a photo file can hold and what decoding it costs, checked from its header before it is decoded:
a file too small for the pixels it declares is "truncated"; a photo that would need more memory than is
free is refused. Used by media.read_photo."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from PIL import Image

from .errors import MediaError

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


def check_data(path: Path, im: Image.Image, file_size: int) -> None:
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
        raise MediaError(path, f"truncated {kind(im.format, path)} file: {w}x{h} needs at least {need:,} bytes of "
                               f"image data, the file has {max(have, 0):,}")


def kind(fmt: str | None, path: Path) -> str:
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


def check_memory(path: Path, im: Image.Image, deep: bool) -> None:
    """MediaError when reading the photo would need more memory than is free (estimated from its declared
    size), rather than swapping for minutes or being killed."""
    w, h = im.size
    need = w * h * (_PIL_BYTES.get(im.mode, 4) + _RESULT_BYTES + (_DEEP_BYTES if deep else 0)) + _BAND_BYTES
    free = free_memory()
    if free is not None and need > free:
        raise MediaError(path, f"{w}x{h} needs about {need / 1e9:.1f} GB of memory to read, and "
                               f"{free / 1e9:.1f} GB is free")


def free_memory() -> int | None:
    """Bytes of memory the system can still give (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None



def _format_name(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "tif": "TIFF"}.get(suffix, suffix.upper() or "image")
