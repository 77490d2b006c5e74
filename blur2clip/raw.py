"""Camera RAW files (.dng .cr2 .cr3 .nef .arw .raf .orf .rw2), through the optional extra `blur2clip[raw]`
(rawpy, LibRaw's Python binding).

`read_raw` demosaics the sensor data with the camera's white balance (as shot) into sRGB at 16 bits, turned
upright as the camera recorded; never an embedded preview. Without rawpy a RAW file is refused with one
line that names it and the extra. `media.read_photo` sends RAW files here by their suffix.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np

RAW_SUFFIXES = frozenset(".dng .cr2 .cr3 .nef .arw .raf .orf .rw2".split())
NEEDS_EXTRA = "RAW photos need an extra: pip install 'blur2clip[raw]'"


def is_raw(path) -> bool:
    return Path(path).suffix.lower() in RAW_SUFFIXES


def available() -> bool:
    """Whether rawpy can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("rawpy") is not None
    except (ImportError, ValueError):
        return False


def read_raw(path: Path, check_size) -> tuple[np.ndarray, bytes | None]:
    """(HxWx3 float32 sRGB 0..1, the camera's EXIF or None) of a RAW file. check_size((w, h)) is called
    with the sensor's size before anything is demosaiced (the reader's pixel limit)."""
    from .errors import MediaError

    try:
        import rawpy
    except ImportError:
        raise MediaError(path, NEEDS_EXTRA) from None
    try:
        with rawpy.imread(str(path)) as raw:
            check_size((raw.sizes.width, raw.sizes.height))
            rgb = raw.postprocess(use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB, output_bps=16,
                                  gamma=(2.4, 12.92))  # the sRGB curve (LibRaw's default is BT.709's)
    except MediaError:
        raise
    except MemoryError:
        raise MediaError(path, "not enough memory to read it") from None
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise MediaError(path, f"unreadable RAW file ({type(e).__name__}: {e})") from None
    pixels = rgb.astype(np.float32)
    pixels /= 65535
    return pixels, _exif(path)


def _exif(path: Path) -> bytes | None:
    """The camera's EXIF from a TIFF-based RAW file (DNG, NEF, ARW, CR2, ...), orientation left out (the
    pixels are upright); None for the others or when Pillow cannot follow it."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            head = f.read(_TAGS_WITHIN)
        if head[:4] not in (b"II*\0", b"MM\0*"):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tags, exif = Image.Exif(), Image.Exif()
            tags.load(head)  # IFD0 and its sub-IFDs, as in a JPEG's APP1
            for tag in (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298):  # description .. copyright
                if tag in tags:
                    exif[tag] = tags[tag]
            for ifd in (0x8769, 0x8825):  # the Exif and GPS sub-IFDs
                if ifd in tags and tags.get_ifd(ifd):
                    exif[ifd] = tags.get_ifd(ifd)
            return exif.tobytes() if len(exif) else None
    except Exception:  # noqa: BLE001 -- tags Pillow cannot follow: no EXIF
        return None


_TAGS_WITHIN = 4 << 20  # a TIFF-based RAW file's tags lie in its first megabytes, before the sensor data
