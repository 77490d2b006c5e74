"""Fetching one weights file over a bad network: resume, retry, verify, lock. Standard library only.

fetch(urls, dest, sha256=..., size=...) ends in one of two ways: a complete, verified file at `dest`, or a
WeightsError (one line naming the URL and the reason). On the way:

- bytes go into `dest.part` beside the target; a later attempt resumes it with an HTTP Range request
  (answer 206) or starts over when the server ignores the range (answer 200);
- connection errors, timeouts (per read, `timeout` seconds) and 5xx answers are retried with exponential
  backoff (`backoff`, 2 x backoff, ... at most 30 s); a 404 or another 4xx is final for that URL;
- size and sha256 are checked before the rename; a file that fails is deleted and never renamed into place;
- `dest.lock` keeps two processes from writing the same file: the second one waits for the first, then
  finds the finished, verified file.

The defaults below are read at call time, so tests (or a slow network) can change them.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .weights import Progress, WeightsError, mismatch

TIMEOUT = 30.0  # seconds a connect or a single read may wait
RETRIES = 5  # further attempts per URL after a connection error, a timeout or a 5xx answer
BACKOFF = 1.0  # seconds before the first retry; doubled for each further one
MAX_BACKOFF = 30.0
CHUNK = 1 << 16


class _Retry(Exception):
    """A failure that another attempt may fix; the message is the reason."""


def fetch(
    urls: list[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    check: Callable[[Path], object] | None = None,
    progress: Progress | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    backoff: float | None = None,
) -> Path:
    """Download `dest` from the first of `urls` that works; returns `dest`.

    sha256, size: what the file must be (when known). check(path): a further test of the finished file
    (for files without a known sha256); it raises WeightsError to refuse the file.
    """
    dest = Path(dest)
    if not urls:
        raise WeightsError(f"{dest.name}: no URL to download it from")
    opts = dict(
        timeout=TIMEOUT if timeout is None else timeout,
        retries=RETRIES if retries is None else retries,
        backoff=BACKOFF if backoff is None else backoff,
        progress=progress,
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with file_lock(dest):
        if dest.is_file():  # finished by another process while this one waited for the lock
            if mismatch(dest, sha256, size) is None:
                return dest
            dest.unlink()
        errors = []
        for url in dict.fromkeys(urls):  # in order, without repeats
            try:
                for fresh in (False, True):
                    resumed = _download(url, part, size, **opts)
                    try:
                        _verify(part, url, sha256, size, check)
                    except WeightsError:
                        if resumed and not fresh:  # the earlier bytes may be stale: once more from zero
                            continue
                        raise
                    os.replace(part, dest)
                    return dest
            except WeightsError as e:
                errors.append(str(e))
        if len(errors) == 1:
            raise WeightsError(errors[0])
        raise WeightsError(f"{dest.name}: every URL failed: " + "; ".join(errors))


def _verify(part: Path, url: str, sha256: str | None, size: int | None, check) -> None:
    """Delete `part` and raise WeightsError unless it is the file we want."""
    reason = mismatch(part, sha256, size)
    if reason is None and check is not None:
        try:
            check(part)
        except WeightsError as e:
            reason = str(e).removeprefix(f"{part}: ")
    if reason is not None:
        part.unlink(missing_ok=True)
        raise WeightsError(f"{url}: {reason}; the file was deleted")


def _download(url: str, part: Path, size: int | None, *, timeout, retries, backoff, progress) -> bool:
    """Bring `part` to the end of the file at `url`, retrying; True when it built on bytes already there."""
    resumed = False
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), MAX_BACKOFF))
        try:
            return _get(url, part, size, timeout, progress) or resumed
        except _Retry as e:
            reason = str(e)
            resumed = resumed or part.exists()
    raise WeightsError(f"{url}: {reason} (after {retries + 1} attempts)")


def _get(url: str, part: Path, size: int | None, timeout: float, progress: Progress | None) -> bool:
    """One request: append the rest of the file to `part` (206) or rewrite it (200).

    Returns True when it appended to earlier bytes; raises _Retry for what another attempt may fix and
    WeightsError for what it will not (404, ...).
    """
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if offset and offset == size:
        return True  # complete from an earlier run; the checks decide
    headers = {"User-Agent": "blur2clip"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code} {e.reason}"
        if e.code == 416:  # our .part is longer than the file: start over
            part.unlink(missing_ok=True)
            raise _Retry(reason) from None
        if e.code >= 500 or e.code in (408, 429):
            raise _Retry(reason) from None
        raise WeightsError(f"{url}: {reason}") from None
    except (OSError, http.client.HTTPException) as e:  # URLError, refused, reset, timed out
        raise _Retry(_reason(e)) from None
    with response:
        if offset and getattr(response, "status", None) == 206:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):
                part.unlink()
                raise _Retry(f"answer to a range request starts at byte {start or '?'}, not {offset}")
            mode = "ab"
        else:  # 200: the server sends the whole file
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = size if size is not None else (offset + expected if expected is not None else None)
        done = offset
        if progress:
            progress(done, total)
        read = getattr(response, "read1", response.read)  # read1: what has arrived, so a stall keeps it
        with open(part, mode) as f:
            while True:
                try:
                    chunk = read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Retry(_reason(e)) from None
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            f.flush()
            os.fsync(f.fileno())
    if expected is not None and done - offset < expected:
        raise _Retry(f"connection closed after {done} of {offset + expected} bytes")
    return offset > 0


def _reason(e: BaseException) -> str:
    """A short reason for a network error: 'timed out', 'Connection refused', ..."""
    if isinstance(e, urllib.error.URLError) and not isinstance(e.reason, str):
        e = e.reason
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# ----------------------------------------------------------------------------------------------------
# The lock: one writer per target file, across processes


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold `<path>.lock` exclusively; waits while another process holds it. The lock file is removed
    on release; a process that dies holding it releases it too (the operating system drops the lock)."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    if _fcntl is None:  # Windows: lock a byte of the file; the file stays behind (harmless)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    _msvcrt.locking(fd, _msvcrt.LK_LOCK, 1)  # tries for 10 s, then raises
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                _msvcrt.locking(fd, _msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX)
            try:
                current = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)  # the holder removed that lock file as it finished: take a fresh one
    try:
        os.write(fd, f"{os.getpid()}\n".encode())  # for a person who finds the file
        yield
    finally:
        os.unlink(lock)  # before the unlock, so a waiter on this file sees it is gone and starts over
        os.close(fd)


try:
    import fcntl as _fcntl
except ImportError:  # Windows
    import msvcrt as _msvcrt

    _fcntl = None
