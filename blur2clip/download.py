"""Fetching one weights file over a bad network: resume, retry, verify, lock, limits. Standard library only.

fetch(urls, dest, sha256=..., size=...) ends in one of two ways: a complete, verified file at `dest`, or a
WeightsError (one line naming the URL, or the local file, and the reason). On the way:

- bytes go into `dest.part` beside the target; a later attempt resumes it with an HTTP Range request
  (answer 206) or starts over when the server ignores the range (answer 200);
- connection errors, timeouts and 5xx answers are retried with exponential backoff (`backoff`,
  2 x backoff, ... at most 30 s); a 404 or another 4xx is final for that URL;
- a server that stalls is given up on: when less than STALL_BYTES arrive in `stall` seconds (counted
  across retries, connects and backoff), the download fails; a connect or a single read also waits at
  most `timeout` seconds;
- a download is at most `size` bytes when the manifest gives the size, else `limit` bytes (MAX_BYTES):
  a server that announces or sends more is refused and what arrived is deleted;
- size and sha256 are checked before the rename; a file that fails is deleted and never renamed into place;
- a local write error (a full disk) deletes the `.part` and names it; so do a refused or oversized
  download and a final HTTP error. After a network failure the `.part` stays for the next attempt to
  resume only when the file's full size is known (from the manifest or the server), else it is deleted;
- `dest.lock` keeps two processes from writing the same file: the second one waits for the first, then
  finds the finished, verified file. The lock is an flock, so a killed process releases it; the next
  download takes the lock file over and removes it.

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

from .errors import WeightsError
from .weightfile import mismatch

Progress = Callable[[int, "int | None"], None]  # (bytes done, total bytes or None when unknown)

TIMEOUT = 30.0  # seconds a connect or a single read may wait
STALL = 30.0  # seconds in which at least STALL_BYTES must arrive, over all attempts at one URL
STALL_BYTES = 1024
MAX_BYTES = 1 << 30  # the most a download of unknown size may bring (1 GiB)
RETRIES = 5  # further attempts per URL after a connection error, a timeout or a 5xx answer
BACKOFF = 1.0  # seconds before the first retry; doubled for each further one
MAX_BACKOFF = 30.0
CHUNK = 1 << 16


class _Retry(Exception):
    """A failure that another attempt may fix; the message is the reason."""


class _Final(WeightsError):
    """A failure that no other URL fixes (the local disk): fetch stops at once."""


class _Refused(WeightsError):
    """A failure of this URL that a later attempt at it would repeat (404, too large): the .part goes."""


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
    stall: float | None = None,
    limit: int | None = None,
) -> Path:
    """Download `dest` from the first of `urls` that works; returns `dest`.

    sha256, size: what the file must be (when known). check(path): a further test of the finished file
    (for files without a known sha256); it raises WeightsError to refuse the file. stall: seconds in which
    STALL_BYTES must arrive (STALL). limit: the most bytes a download of unknown size may bring (MAX_BYTES).
    """
    dest = Path(dest)
    if not urls:
        raise WeightsError(f"{dest.name}: no URL to download it from")
    opts = dict(
        timeout=TIMEOUT if timeout is None else timeout,
        retries=RETRIES if retries is None else retries,
        backoff=BACKOFF if backoff is None else backoff,
        stall=STALL if stall is None else stall,
        limit=size if size is not None else MAX_BYTES if limit is None else limit,
        progress=progress,
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with file_lock(dest):
        if dest.is_file():  # finished by another process while this one waited for the lock
            if mismatch(dest, sha256, size) is None:
                return dest
            dest.unlink()
        errors, keep, transfer = [], False, None
        try:
            for url in dict.fromkeys(urls):  # in order, without repeats
                try:
                    for fresh in (False, True):
                        transfer = _Transfer(url, part, size, **opts)
                        resumed = transfer.run()
                        try:
                            _verify(part, url, sha256, size, check)
                        except WeightsError:
                            if resumed and not fresh:  # the earlier bytes may be stale: once more from zero
                                continue
                            raise
                        os.replace(part, dest)
                        return dest
                except _Final:
                    raise
                except WeightsError as e:
                    errors.append(str(e))
                    keep = not isinstance(e, _Refused) and transfer.resumable()
        except (KeyboardInterrupt, SystemExit):  # stopped by the user: a resumable part stays
            keep = transfer is not None and transfer.resumable()
            raise
        finally:
            if not keep:
                part.unlink(missing_ok=True)
        if len(errors) == 1:
            raise WeightsError(errors[0])
        raise WeightsError(f"{dest.name}: every URL failed: " + "; ".join(errors))


def _verify(part: Path, url: str, sha256: str | None, size: int | None, check) -> None:
    """Delete `part` and raise WeightsError unless it is the file we want."""
    try:
        reason = mismatch(part, sha256, size)
        if reason is None and check is not None:
            try:
                check(part)
            except WeightsError as e:
                reason = str(e).removeprefix(f"{part}: ")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if reason is not None:
        part.unlink(missing_ok=True)
        raise _Refused(f"{url}: {reason}; the file was deleted")


class _Transfer:
    """Bringing `part` to the end of the file at `url`: attempts, backoff, the stall clock, the limit."""

    def __init__(self, url: str, part: Path, size: int | None, *, timeout, retries, backoff, stall, limit,
                 progress):
        self.url, self.part, self.size, self.limit, self.progress = url, part, size, limit, progress
        self.timeout, self.retries, self.backoff, self.stall = timeout, retries, backoff, stall
        self.total = size  # the file's full size once known (the manifest, or the server's answer)
        self.received = self.mark = 0  # bytes received by every attempt; at the last move of the clock
        self.deadline = time.monotonic() + stall

    def resumable(self) -> bool:
        """Whether the .part left by a failure is worth keeping: a prefix of a file of known size."""
        n = self.part.stat().st_size if self.part.exists() else 0
        return self.total is not None and 0 < n < self.total <= self.limit

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def arrived(self, n: int) -> None:
        self.received += n
        if self.received - self.mark >= STALL_BYTES:
            self.mark, self.deadline = self.received, time.monotonic() + self.stall

    def run(self) -> bool:
        """Retry until `part` is complete; True when it built on bytes already there."""
        resumed, attempts = False, 0
        while True:
            attempts += 1
            try:
                return self._get() or resumed
            except _Retry as e:
                reason = str(e)
                resumed = resumed or self.part.exists()
            wait = min(self.backoff * 2 ** (attempts - 1), MAX_BACKOFF)
            if attempts > self.retries:
                raise WeightsError(f"{self.url}: {reason} (after {attempts} attempts)")
            if self.left() <= wait:
                raise WeightsError(f"{self.url}: {reason}; less than {STALL_BYTES} bytes arrived in "
                                   f"{self.stall:g} s (after {attempts} attempt{'s' * (attempts > 1)})")
            time.sleep(wait)

    def _get(self) -> bool:
        """One request: append the rest of the file to `part` (206) or rewrite it (200).

        Returns True when it appended to earlier bytes; raises _Retry for what another attempt may fix,
        _Refused for what it will not (404, too large) and _Final for a local write error.
        """
        url, part = self.url, self.part
        offset = part.stat().st_size if part.exists() else 0
        if offset > self.limit:
            part.unlink()
            offset = 0
        if offset and offset == self.size:
            return True  # complete from an earlier run; the checks decide
        headers = {"User-Agent": "blur2clip"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                              timeout=self._wait())
        except urllib.error.HTTPError as e:
            reason = f"HTTP {e.code} {e.reason}"
            if e.code == 416:  # our .part is longer than the file: start over
                part.unlink(missing_ok=True)
                raise _Retry(reason) from None
            if e.code >= 500 or e.code in (408, 429):
                raise _Retry(reason) from None
            raise _Refused(f"{url}: {reason}") from None
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
            if expected is not None:
                self.total = self.total if self.total is not None else offset + expected
                if offset + expected > self.limit:
                    raise _Refused(f"{url}: the server announces {offset + expected} bytes, {self._over()}")
            done = self._receive(response, offset, mode)
        if expected is not None and done - offset < expected:
            raise _Retry(f"connection closed after {done} of {offset + expected} bytes")
        return offset > 0

    def _receive(self, response, offset: int, mode: str) -> int:
        """Copy the body into `part`; returns the bytes `part` then holds."""
        done, total = offset, self.total
        if self.progress:
            self.progress(done, total)
        read = getattr(response, "read1", response.read)  # read1: what has arrived, so a stall keeps it
        sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
        try:
            with open(self.part, mode) as f:
                while True:
                    try:
                        if sock is not None:
                            sock.settimeout(self._wait())  # no read outlasts the stall deadline
                        chunk = read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Retry(_reason(e)) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    self.arrived(len(chunk))
                    if done > self.limit:
                        raise _Refused(f"{self.url}: the download grew {self._over()}")
                    if self.progress:
                        self.progress(done, total)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # the .part could not be written: a full disk, a read-only folder
            existed = self.part.exists()
            self.part.unlink(missing_ok=True)
            raise _Final(f"{self.part}: cannot write the download ({e.strerror or e})" +
                         ("; the partial file was deleted" if existed else "")) from None
        return done

    def _wait(self) -> float:
        """Seconds the next connect or read may wait: the per-read timeout, within the stall deadline."""
        left = self.left()
        if left <= 0:
            raise _Retry("timed out")
        return min(self.timeout, left)

    def _over(self) -> str:
        what = "the size the manifest gives" if self.size is not None else "the limit for a download"
        return f"larger than {what} ({self.limit} bytes); the partial file was deleted"


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
    """Hold `<path>.lock` exclusively (filelock: flock on POSIX); waits while another process holds it. A
    process that dies holding it releases it (the kernel drops the lock). The lock file is removed before
    the lock is let go; a waiter that then gets the removed file sees it is gone and takes a fresh one."""
    from filelock import FileLock

    lock = Path(path).with_name(Path(path).name + ".lock")
    with FileLock(lock):
        try:
            lock.write_text(f"{os.getpid()}\n")  # for a person who finds the file
            yield
        finally:
            lock.unlink(missing_ok=True)  # removed by hand meanwhile: nothing to remove
