"""What Pillow and libtiff say while media.read_photo reads a photo: collected on the reading thread and
warned afterwards as one MediaWarning each, naming the file."""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path

from PIL import Image, ImageFile

from .errors import MediaWarning

# --- what Pillow and libtiff say while a photo is read: one warning each, naming the file


class Notes:
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
def reading(path: Path, notes: Notes):
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

    def __init__(self, notes: Notes):
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


_libtiff = threading.local()  # .notes: the Notes of the photo this thread is reading, else None
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

