"""The errors blur2clip raises about what it was given. Each names the file (or setting) and the reason in
one line; the command line's exit code follows from the type alone (report.EXIT_CODES).

- MediaError: a photo that cannot be read (kind "input"), or an output that may not or cannot be written
  (kind "output": it exists, it is a photo, another run is making it, the disk is full).
- WeightsError: a weights file that cannot be found or used.
- DeviceError: the device asked for is not here.
- DataError: a data folder (training, evaluation) that cannot be used.
- SettingsError: settings that do not fit together (a config file, a value out of range).

No imports beyond the standard library: the command line's --help loads this.
"""

from __future__ import annotations

import os
import sys


class Blur2ClipError(Exception):
    """Something the user gave cannot be used; str(e) is one line."""


class MediaError(Blur2ClipError):
    """Bad input or output; str(e) is ONE line that names the file and the reason,
    e.g. "shots/a.jpg: truncated JPEG file". kind: "input" (a photo) or "output" (what is written)."""

    def __init__(self, path: str | os.PathLike[str], reason: object = None, kind: str = "input"):
        """MediaError(path, reason), or MediaError("one line that already names the file")."""
        if kind not in ("input", "output"):
            raise ValueError(f"kind {kind!r}: input or output")
        self.kind = kind
        if reason is None:
            self.path, self.reason = None, " ".join(str(path).split())
            super().__init__(self.reason)
        else:
            self.path, self.reason = os.fspath(path), " ".join(str(reason).split())
            super().__init__(f"{self.path}: {self.reason}")


def output_error(path: str | os.PathLike[str], reason: object) -> MediaError:
    """A MediaError about an output."""
    return MediaError(path, reason, kind="output")


class WeightsError(Blur2ClipError):
    """A weights file that cannot be found or used; the message names the file and the reason."""


class DeviceError(Blur2ClipError, ValueError):
    """The device asked for is not available (a ValueError too, as it was before it had a type)."""


class DataError(Blur2ClipError, ValueError):
    """A data folder that cannot be used for training or evaluation (a ValueError too)."""


class SettingsError(Blur2ClipError, ValueError):
    """Settings that cannot be used: a config file's keys or values (a ValueError too)."""


class MediaWarning(UserWarning):
    """Something was read with a harmless fallback (a broken colour profile, 16-bit read at 8 bits)."""


OUT_OF_MEMORY = "out of memory on the device; try a smaller tile (--tile 256), --max-size, or the CPU"


def one_line(e: BaseException) -> str:
    """An expected error as one line: the file (control characters escaped) and the reason."""
    from .outputs import printable

    if isinstance(e, MediaError) and e.path is not None:
        return f"{printable(e.path)}: {e.reason}"
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{printable(e.filename)}: {e.strerror}"
    if is_out_of_memory(e) and not isinstance(e, MemoryError):
        return OUT_OF_MEMORY
    text = " ".join(str(e).split())
    return text or type(e).__name__


def is_out_of_memory(e: BaseException) -> bool:
    """Whether `e` is running out of memory: MemoryError, or torch's OutOfMemoryError (device.OutOfMemory;
    looked up only when torch is loaded, which it is whenever torch raised it)."""
    if isinstance(e, MemoryError):
        return True
    if isinstance(e, RuntimeError) and "can't allocate memory" in str(e):  # torch's CPU allocator
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return oom is not None and isinstance(e, oom)
