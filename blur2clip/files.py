"""Writing a file so that it is either whole or not there.

`atomic_path`: weights, the registry, run configs and pictures. `atomic_file` and `atomic_dir`: the
user's outputs (clips, stills, folders of frames), which also never replace a photo of the run
(`protect`, `check_target`), never clobber a file made meanwhile without overwrite, and remove the
folders they made when they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import output_error


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows syncs only a writable one
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a fresh temporary path beside `path` (hidden, ending in `suffix`: e.g. ".png" for a writer
    that picks the format from the name). When the block ends normally it replaces `path` in one step;
    when it raises (a full disk, Ctrl-C) the temporary is removed and `path` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        _sync(tmp)  # on disk before it takes the name: a power cut never leaves an empty file under it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def protect(paths) -> None:
    """Never write onto these files (a run's photos, before any of them is read), whatever name, link
    or hard link an output reaches them by: read_photo registers every photo it reads the same way."""
    from .media import _INPUTS
    from .outputs import identity

    _INPUTS.update(i for i in map(identity, paths) if i is not None)


def check_target(out: Path, overwrite: bool, folder: bool) -> None:
    """Refuse early (before any work) an output that may not be written (see outputs.refusal)."""
    from .media import _INPUTS
    from .outputs import refusal

    reason = refusal(out, overwrite=overwrite, folder=folder, inputs=_INPUTS)
    if reason is not None:
        raise output_error(out, reason)


def check_folder_target(folder: Path) -> None:
    """Refuse early (before any work) a folder that could not be made, without making it: the nearest part
    of its path that exists must be a folder that may be written in."""
    there = Path(os.path.abspath(folder))
    while not there.exists() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        raise output_error(folder, f"{there} is not a folder")
    if not os.access(there, os.W_OK | os.X_OK):
        raise output_error(folder, f"no permission to write in {there}")


def temp_beside(out: Path, kind: str, make=None) -> Path:
    """A fresh hidden name `.NAME.<kind>XXXXXXXX` beside `out` (within 255 bytes), created by make(path)
    when given."""
    from .outputs import hidden

    while True:
        tmp = hidden(out, f"{kind}{secrets.token_hex(4)}")
        try:
            if make:
                make(tmp)
            if make or not tmp.exists():
                return tmp
        except FileExistsError:
            pass


def _fresh(out: Path, make) -> tuple[Path, list[Path]]:
    """A new temporary beside `out` made by make(path), and the folders made for it (deepest first)."""
    from .outputs import make_folders, remove_folders

    created: list[Path] = []
    try:
        for _ in range(5):
            created += make_folders(out.parent)
            try:
                return temp_beside(out, "part", make), created
            except FileNotFoundError as e:  # the folder was removed meanwhile by another run's clean-up
                missing = e
        raise missing
    except OSError as e:
        remove_folders(created)
        raise output_error(out, e.strerror or e) from e


def atomic_file(out: Path, overwrite: bool, write) -> Path:
    """Run write(tmp) on a fresh temporary file beside `out`, then move it to `out`. On any failure the
    temporary goes, and so do the folders made for it."""
    from .outputs import remove_folders

    tmp, created = _fresh(out, lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))
    try:
        write(tmp)
        _sync(tmp)  # as in atomic_path
        if overwrite:
            check_target(out, overwrite, folder=False)
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # atomic and never clobbers
            except FileExistsError:
                raise output_error(out, "already exists (pass --overwrite to replace it)") from None
            except OSError:  # a file system without hard links
                check_target(out, overwrite, folder=False)
                os.replace(tmp, out)
            else:
                tmp.unlink()
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        remove_folders(created)
        if isinstance(e, OSError):
            raise output_error(out, e.strerror or e) from e
        raise
    return out


def atomic_dir(out: Path, overwrite: bool, write) -> Path:
    """Run write(tmp) on a fresh temporary folder beside `out`, then move it to `out` (swapping out an old
    folder of frames when overwrite is set). On any failure the temporary goes, and so do the folders
    made for it."""
    from .outputs import remove_folders

    tmp, created = _fresh(out, os.mkdir)
    try:
        write(tmp)
        if out.exists() or out.is_symlink():
            check_target(out, overwrite, folder=True)
            old = temp_beside(out, "old")
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_folders(created)
        if isinstance(e, OSError):
            raise output_error(out, e.strerror or e) from e
        raise
    return out
