"""Where a clip may be written, and writing it beside other runs without harm to anything the user owns.

- `refusal(out, ...)` says why a path may not be written (an input photo under any name, link or hard
  link; a device, FIFO or socket; a folder path through a file; a name with a line break; an existing
  file without overwrite), or None. `identity` is what it compares: a file's device and inode.
- `hidden(out, tag)` is the name of a hidden helper file beside `out` (`.NAME.partXXXXXXXX` while a clip is
  written, `.NAME.claim` while a run owns it), kept within the 255 bytes a file name may have.
- `Claim` is a run's hold on one output: a hidden `.NAME.claim` file under an exclusive lock
  (`flock`), holding the run's pid. The kernel drops the lock when its process ends, however it ends
  (`kill -9` included), so a claim left by a dead run is free to take, and one held by a live run is
  not. Only the holder of a claim removes the temporaries that earlier runs left beside its output.
- `make_folders` / `remove_folders`: the folders a write creates, and their removal when it fails.
- `sigterm_as_interrupt` makes SIGTERM stop the command line as Ctrl-C does (temporaries removed);
  `Interrupts` holds both back while a batch reports a finished clip.

No torch and no Pillow here.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import stat
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover -- Windows: no locks between runs
    fcntl = None

NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows)
_TAG = 12  # the longest tag of a hidden name: "part" + 8 hex digits
_FRAME = re.compile(r"^frame_\d{4,}\.png$")

Identity = tuple[int, int]
_CLAIM_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
LINE_BREAK = "the path has a line break (stdout lists one path per line); choose another name"


def identity(path, follow: bool = True) -> Identity | None:
    """(device, inode) of the file a path names, links followed (or not); None when nothing is there."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def printable(path) -> str:
    """A path on one line: control characters (a line break in a name) written as escapes."""
    text = os.fspath(path)
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


# ----------------------------------------------------------------------------------------------------
# What may be written


def refusal(out, *, overwrite: bool, folder: bool = False, inputs=frozenset()) -> str | None:
    """Why `out` may not be written, or None when it may.

    inputs: identities of files never to be written (the photos of the run). folder: `out` is a folder
    of frames, which replaces only a folder that holds frame_NNNN.png files and nothing else. Whatever
    overwrite says, an input, a folder (for a file), a device, FIFO or socket, a folder path that runs
    through a file, and a name with a line break (stdout lists one path per line) are refused.
    """
    out = Path(out)
    if any(c in os.fspath(out) for c in "\n\r"):
        return LINE_BREAK
    if out.name in ("", ".", ".."):
        return "is not a file name"
    if len(os.fsencode(out.name)) > NAME_MAX:
        return f"the name is longer than {NAME_MAX} bytes"
    blocked = not_a_folder(out.parent)
    if blocked is not None:
        return f"{printable(blocked)} is not a folder"
    try:
        link = os.lstat(out)
    except FileNotFoundError:
        return None
    except OSError as e:
        return e.strerror or str(e)
    try:
        st = os.stat(out)
    except OSError:
        st = link  # a broken link: the link itself would be replaced
    if (st.st_dev, st.st_ino) in inputs:
        return "is an input photo; refusing to write over it"
    if not overwrite:
        return "already exists (pass --overwrite to replace it)"
    if folder:
        return _frames_refusal(out, st, link, inputs)
    if stat.S_ISDIR(st.st_mode):
        return "is a folder; refusing to replace it with a file"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):  # S_ISLNK: a broken link
        return "is not a regular file (a device, FIFO or socket); refusing to replace it"
    return None


def not_a_folder(folder) -> Path | None:
    """What stops files being written into `folder` (made when missing): the folder itself or the
    nearest existing folder above it when that is a file (or a broken link); None when nothing does."""
    folder = Path(folder)
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            return None if path.is_dir() else path
    return None


def check_job(photo, out, still=None, *, folder: bool, overwrite: bool) -> tuple[Path, str] | None:
    """The first problem with the outputs of one photo's job, as (path, reason), or None: an output that
    is the photo (by name, link or hard link), a still on the clip, or a `refusal` of either."""
    photo = Path(photo)
    inputs = {i for i in (identity(photo),) if i is not None}
    for path, is_folder in ((out, folder), (still, False)):
        if path is None:
            continue
        path = Path(path)
        if os.path.abspath(path) == os.path.abspath(photo) or identity(path) in inputs:
            return path, "is the input photo; refusing to write over it"
        reason = refusal(path, overwrite=overwrite, folder=is_folder, inputs=inputs)
        if reason is not None:
            return path, reason
    if still is not None and (os.path.abspath(still) == os.path.abspath(out) or
                              identity(still) is not None and identity(still) == identity(out)):
        return Path(still), "is also the clip's output; give the still its own name"
    if still is not None and folder and os.path.realpath(Path(still).parent) == os.path.realpath(out):
        return Path(still), "is inside the folder of frames, which holds frames only; put the still beside it"
    return None


def _frames_refusal(out: Path, st, link, inputs) -> str | None:
    if stat.S_ISLNK(link.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "exists and is not a folder of frames; refusing to replace it"
    try:
        entries = list(os.scandir(out))
    except OSError as e:  # an output problem, with its reason (not a failed read of an input)
        return f"cannot be listed ({e.strerror or e}); refusing to replace it"
    for entry in entries:
        if not (_FRAME.match(entry.name) and entry.is_file(follow_symlinks=False)):
            return f"holds {entry.name!r}, not only frames; refusing to replace it"
        if identity(entry.path) in inputs:
            return f"holds {entry.name!r}, an input photo; refusing to replace it"
    return None


# ----------------------------------------------------------------------------------------------------
# Hidden helper files beside an output


def hidden(out, tag: str) -> Path:
    """`.NAME.tag` beside `out` (tag: "claim", or "part"/"old" and 8 hex digits). A NAME too long for
    that is cut and ends in "~" and 8 hex digits of its hash, so every output keeps its own names."""
    out = Path(out)
    return out.with_name(f".{_short(out.name)}.{tag}")


def _short(name: str) -> str:
    raw = os.fsencode(name)
    room = NAME_MAX - 2 - _TAG
    if len(raw) <= room:
        return name
    cut = raw[: room - 9]
    while cut and cut[-1] & 0xC0 == 0x80:  # not in the middle of a UTF-8 character
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:
        cut = cut[:-1]
    return f"{os.fsdecode(cut)}~{hashlib.sha256(raw).hexdigest()[:8]}"


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:part|old)[0-9a-f]{8}")


def leftovers_in(folder) -> dict[str, list[Path]]:
    """The temporaries in `folder` (`.NAME.partXXXXXXXX`, `.NAME.oldXXXXXXXX`), by the name of the
    output they were for (as `key` gives it); one listing of the folder for all its outputs."""
    found: dict[str, list[Path]] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        m = _LEFTOVER.fullmatch(entry.name)
        if m:
            found.setdefault(m.group("name"), []).append(Path(entry.path))
    return found


def key(out) -> str:
    """What leftovers_in files the temporaries of `out` under."""
    return _short(Path(out).name)


def leftovers(out) -> list[Path]:
    """Temporaries that writes of `out` left beside it."""
    return leftovers_in(Path(out).parent).get(key(out), [])


def remove(path: Path) -> None:
    """Remove a temporary: a file, or a folder of frames being written."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------
# Folders


def make_folders(folder) -> list[Path]:
    """Make `folder` and its missing parents; returns those it made, deepest first."""
    folder = Path(folder)
    missing = []
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            pass
    return missing


def remove_folders(folders) -> None:
    """Remove the folders a run made that are empty now, deepest first (others stay)."""
    for path in sorted(set(map(Path, folders)), key=lambda p: len(p.parts), reverse=True):
        try:
            path.rmdir()
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------------
# Claims


class Busy(Exception):
    """Another live run holds the claim on an output."""

    def __init__(self, out, owner: str):
        self.out, self.owner = Path(out), owner
        super().__init__(f"{printable(out)}: being made by another blur2clip run ({owner})")


class Claim:
    """A run's hold on one output (see the module's notes). `acquire()` takes it or raises Busy (an
    OSError when the folder cannot be written); `release()` gives it back and removes the claim file.
    `created`: the folders acquire() made for the output. Also a context manager."""

    def __init__(self, out):
        self.out = Path(out)
        self.path = hidden(self.out, "claim")
        self.created: list[Path] = []
        self._fd: int | None = None

    def acquire(self, tidy: bool = True) -> Claim:
        """Take the claim (tidy: then remove the temporaries that ended runs left of the output)."""
        for _ in range(20):
            self.created += make_folders(self.out.parent)
            try:
                fd = os.open(self.path, _CLAIM_FLAGS, 0o644)
            except FileNotFoundError:  # the folder went away (another run's clean-up): make it again
                continue
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
                fd = None  # a link under the claim's name
            st = os.fstat(fd) if fd is not None else None
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # a link, or a file's other name
                if fd is not None:
                    os.close(fd)
                raise OSError(errno.EEXIST, f"{printable(self.path.name)} beside it is a link or another name "
                                            f"of a file, not a claim of blur2clip; not touched (remove it)")
            if fcntl is None:
                self._fd = fd
                return self
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise Busy(self.out, self._owner()) from None
            except BaseException:
                os.close(fd)
                raise
            if identity(self.path, follow=False) != _fd_identity(fd):  # released and removed meanwhile: again
                os.close(fd)
                continue
            self._fd = fd
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                if tidy:
                    self.remove_leftovers()
            except BaseException:  # a full disk, Ctrl-C: give the claim back rather than keep it unknown
                self.release()
                raise
            return self
        raise OSError(f"{printable(self.path)}: cannot take the claim (it keeps changing)")

    def _owner(self) -> str:
        try:
            pid = self.path.read_text().split()[0]
        except (OSError, IndexError, UnicodeDecodeError):
            return "starting"
        return f"pid {pid}"

    def remove_leftovers(self) -> list[Path]:
        """Temporaries of this output left by runs that ended (only a claim's holder may call this)."""
        found = leftovers(self.out)
        for path in found:
            remove(path)
        return found

    def release(self) -> None:
        if self._fd is not None:
            try:  # under the lock: the next holder makes a new file; only this claim's file, never a
                # file that took its name meanwhile
                if identity(self.path, follow=False) == _fd_identity(self._fd):
                    self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> Claim:
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _fd_identity(fd: int) -> Identity:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


# ----------------------------------------------------------------------------------------------------
# Stopping


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be (see sigterm_as_interrupt)."""


_stopped_by_sigterm = False


def sigterm_as_interrupt():
    """From now on SIGTERM raises Terminated in the main thread, so it stops as Ctrl-C does: the clip
    being written is abandoned and its temporary removed (a batch finishes it first). Returns the
    handler it replaced (None outside the main thread, where nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, raise_terminated)


def raise_terminated(signum, frame) -> None:
    """The SIGTERM handler that sigterm_as_interrupt installs."""
    global _stopped_by_sigterm
    _stopped_by_sigterm = True
    raise Terminated


def terminated() -> bool:
    """Whether SIGTERM arrived since sigterm_as_interrupt() was called."""
    return _stopped_by_sigterm


class Interrupts:
    """Ctrl-C (SIGINT), and SIGTERM where sigterm_as_interrupt() made it raise, raise
    KeyboardInterrupt only inside `allowed()` blocks (waiting for a photo, the model's work); elsewhere
    -- a result being reported, a clip being handed to the writer -- it is kept and raised when the next
    allowed block begins, so no finished clip goes unreported. Only in the main thread, and only over
    Python's default SIGINT handler and that SIGTERM handler (a caller's own handlers are left alone)."""

    def __init__(self):
        self.pending, self.open, self.previous = False, False, {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig, default in ((signal.SIGINT, signal.default_int_handler),
                                 (signal.SIGTERM, raise_terminated)):
                if signal.getsignal(sig) is default:
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        try:
            self.previous[signum](signum, frame)  # raises KeyboardInterrupt (SIGTERM: Terminated)
        except KeyboardInterrupt:
            if self.open:
                raise
            self.pending = True

    def allowed(self):
        return _Allowed(self)


class _Allowed:
    def __init__(self, guard: Interrupts):
        self.guard = guard

    def __enter__(self) -> None:
        if self.guard.pending:
            self.guard.pending = False
            raise KeyboardInterrupt
        self.guard.open = True

    def __exit__(self, *exc) -> None:
        self.guard.open = False
