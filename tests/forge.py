"""Small photos of every readable format, and the same files with their declared size rewritten.

`seed_photos(folder)` writes one small photo per format and kind of compression; `forge_size(data, ext,
w, h)` rewrites the width and height a file declares (PNG IHDR, JPEG SOF, GIF screen and first frame,
BMP header, TIFF tags, WebP VP8/VP8L/VP8X, PPM and TGA headers) and leaves the pixel data as it was.
`corrupt_exif_jpeg` and `stray_marker_tiff` write photos that read, with a warning from Pillow and from
libtiff.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# name -> (suffix, mode, save options)
SEEDS = {
    "rgb.png": ("RGB", {}),
    "palette.png": ("P", {}),
    "alpha.png": ("RGBA", {}),
    "base.jpg": ("RGB", {"quality": 85}),
    "prog.jpg": ("RGB", {"quality": 85, "progressive": True}),
    "grey.jpg": ("L", {"quality": 85}),
    "anim.gif": ("P", {}),
    "rgb.bmp": ("RGB", {}),
    "raw.tif": ("RGB", {}),
    "lzw.tif": ("RGB", {"compression": "tiff_lzw"}),
    "jpeg.tif": ("RGB", {"compression": "jpeg"}),
    "lossy.webp": ("RGB", {"quality": 80}),
    "lossless.webp": ("RGBA", {"lossless": True}),
    "rgb.ppm": ("RGB", {}),
    "rgb.tga": ("RGB", {"compression": "tga_rle"}),
}


def picture(h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    """HxWx3 uint8: gradients and noise, so that every codec has something to code."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 3 + seed)], -1) * 0.8 + 0.2 * rng.random((h, w, 3))
    return (img * 255).astype(np.uint8)


def seed_photos(folder: Path, h: int = 16, w: int = 24) -> dict[str, Path]:
    """One small photo per entry of SEEDS in `folder`: name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, (name, (mode, options)) in enumerate(SEEDS.items()):
        im = Image.fromarray(picture(h, w, i))
        if mode == "P":
            im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        elif mode != "RGB":
            im = im.convert(mode)
        path = folder / name
        if name == "anim.gif":
            second = Image.fromarray(picture(h, w, i + 50)).convert("P", palette=Image.Palette.ADAPTIVE)
            im.save(path, save_all=True, append_images=[second], duration=100, loop=0)
        else:
            im.save(path, **options)
        out[name] = path
    return out


def forge_size(data: bytes, ext: str, w: int, h: int) -> bytes:
    """`data` (a file of type `ext`) declaring w x h instead; sizes beyond a field's range are clipped to
    it. The pixel data is left as it was: too little of it for a larger size. A file too damaged to find
    the fields in comes back as it was."""
    try:
        return _forged(data, ext, w, h)
    except (struct.error, IndexError, ValueError):
        return data


def _forged(data: bytes, ext: str, w: int, h: int) -> bytes:
    b = bytearray(data)
    ext = ext.lower().lstrip(".")
    if ext == "png":
        b[16:24] = struct.pack(">II", min(w, 2**31 - 1), min(h, 2**31 - 1))
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    elif ext in ("jpg", "jpeg"):
        pos = 2
        while pos + 4 <= len(b) and b[pos] == 0xFF:
            marker, length = b[pos + 1], int.from_bytes(b[pos + 2 : pos + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                b[pos + 5 : pos + 9] = struct.pack(">HH", min(h, 65535), min(w, 65535))
                break
            pos += 2 + length
    elif ext == "gif":
        size = struct.pack("<HH", min(w, 65535), min(h, 65535))
        b[6:10] = size
        pos = 13 + (3 * (2 << (b[10] & 7)) if b[10] & 0x80 else 0)
        while pos < len(b) and b[pos] == 0x21:  # extensions: label, then sub-blocks
            pos += 2
            while pos < len(b) and b[pos]:
                pos += 1 + b[pos]
            pos += 1
        if pos + 9 <= len(b) and b[pos] == 0x2C:
            b[pos + 5 : pos + 9] = size
    elif ext == "bmp":
        b[18:26] = struct.pack("<ii", min(w, 2**31 - 1), min(h, 2**31 - 1))
    elif ext in ("tif", "tiff"):
        order = "<" if b[:2] == b"II" else ">"
        ifd = struct.unpack(order + "I", b[4:8])[0]
        count = struct.unpack(order + "H", b[ifd : ifd + 2])[0]
        for k in range(min(count, (len(b) - ifd - 2) // 12)):
            entry = ifd + 2 + 12 * k
            tag = struct.unpack(order + "H", b[entry : entry + 2])[0]
            if tag in (256, 257):
                value = min(w if tag == 256 else h, 2**32 - 1)
                b[entry + 2 : entry + 12] = struct.pack(order + "HII", 4, 1, value)  # one LONG
    elif ext == "webp":
        kind = bytes(b[12:16])
        if kind == b"VP8X":
            b[24:30] = (min(w, 2**24) - 1).to_bytes(3, "little") + (min(h, 2**24) - 1).to_bytes(3, "little")
        elif kind == b"VP8 ":
            b[26:30] = struct.pack("<HH", min(w, 16383), min(h, 16383))
        elif kind == b"VP8L":
            bits = int.from_bytes(b[21:25], "little")
            bits = (bits & ~((1 << 28) - 1)) | (min(w, 16384) - 1) | ((min(h, 16384) - 1) << 14)
            b[21:25] = bits.to_bytes(4, "little")
    elif ext == "ppm":
        magic, rest = bytes(b).split(b"\n", 1)
        _, rest = rest.split(b"\n", 1)  # Pillow writes "P6\nW H\n255\n"
        return magic + f"\n{w} {h}\n".encode() + rest
    elif ext == "tga":
        b[12:16] = struct.pack("<HH", min(w, 65535), min(h, 65535))
    else:
        raise TypeError(f"cannot forge the size of a .{ext} file")
    return bytes(b)


def corrupt_exif_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF points past its end: Pillow reads it and warns (a Python warning)."""
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"
    Image.fromarray(picture(24, 32)).save(path, exif=exif)
    data = bytearray(path.read_bytes())
    tiff = data.index(b"Exif\0\0") + 6
    order = "little" if data[tiff : tiff + 2] == b"II" else "big"
    data[tiff + 4 : tiff + 8] = (0xFFFFFF).to_bytes(4, order)  # the first IFD lies past the end
    path.write_bytes(data)
    return path


def stray_marker_tiff(path: Path) -> Path:
    """A JPEG-compressed TIFF with a stray marker in its data: libtiff reads it and warns (on stderr, by
    itself) "JPEGLib: Unsupported marker type 0x24"."""
    Image.fromarray(picture(64, 64)).save(path, compression="jpeg")
    data = bytearray(path.read_bytes())
    data[data.index(b"\xff\x00", data.index(b"\xff\xda")) + 1] = 0x24  # a stuffed 0xFF becomes a marker
    path.write_bytes(data)
    return path
