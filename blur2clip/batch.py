"""Folder runs: many photos -> one clip each, with resume, per-photo failures and a report.

    from blur2clip.batch import batch
    report = batch("shots/")                      # clips in shots/clips/, mirroring shots/
    print(len(report.done), len(report.failed))

The steps, for callers who want them one by one:

    found = find_photos(root, recursive=False, out_dir=out)  # .photos, .others (non-images, with a reason)
    jobs = plan(found.photos, root, out, fmt="mp4")          # each photo -> its output, deterministic
    report = run_batch(jobs, on_event=print)                 # BatchReport: a PhotoResult per photo

Outputs mirror the input tree under the output folder (default: `clips` inside the root, never read as
input). `a.jpg` -> `a.mp4`; when two photos of one folder share a stem (`a.jpg`, `a.png`) both keep their
suffix (`a.jpg.mp4`, `a.png.mp4`). Every output is written atomically by media (a hidden temporary
`.NAME.partXXXXXXXX`, renamed when complete), so an existing output is a finished one: a second run skips
it (unless overwrite) and resumes where the first stopped; temporaries left by a killed run are removed.
Inputs are only ever read.

Pipelining: one thread decodes the next photos (at most `prefetch` ahead), the calling thread runs the
model, one thread encodes the previous clip; torch, Pillow and the ffmpeg process work outside the GIL,
so the three overlap. The weights load once, when the first photo needs them (not at all when every
output exists). On a GPU, neighbouring photos of one size that fit one pass go through the network
together. A bad photo (unreadable, corrupt, out of memory, unwritable output) becomes a failed result and
the batch goes on (fail_fast: it stops); Ctrl-C stops after the clips being written are finished, and the
report says `interrupted`. Errors that are not about one photo (bad weights, no such device) and bugs
propagate.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import media

# What read_photo can open (HEIC/AVIF need the extra; read_photo says so)
PHOTO_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .jfif .mpo .png .tif .tiff .webp .bmp .dib .gif .heic .heif .hif .avif .ppm .pgm .pbm "
    ".pnm .tga".split())
# Skipped silently, as are all names starting with "." (.DS_Store, ._AppleDouble, .Trashes, ...)
SYSTEM_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r",
                          "$recycle.bin", "system volume information", "__macosx", "@eadir"})
DONE, SKIPPED, FAILED = "done", "skipped", "failed"
EXISTS = "output already exists"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:part|old)[0-9a-f]{8}$")  # media's temporaries

Event = Callable[[str, "Job", "PhotoResult | None"], None]


class Found(NamedTuple):
    """What find_photos found: photos to run (sorted), and other files with the reason they are left."""

    photos: list[Path]
    others: list[tuple[Path, str]]


@dataclass(frozen=True)
class Job:
    """One photo and where its clip goes (fmt: mp4, gif, webp or frames)."""

    input: Path
    output: Path
    fmt: str


@dataclass
class PhotoResult:
    """The outcome for one file. status: done | skipped | failed; output: the clip (None for a file that
    is not a photo); seconds: decode + model + encode time of this photo; error: why it failed or was
    skipped (None when done)."""

    input: Path
    output: Path | None
    status: str
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict:
        """JSON-ready: paths as strings, seconds rounded to ms."""
        return {"input": str(self.input), "output": None if self.output is None else str(self.output),
                "status": self.status, "seconds": round(self.seconds, 3), "error": self.error}


@dataclass
class BatchReport:
    """Every result, in input order. interrupted: Ctrl-C stopped the run; stopped: fail_fast stopped it;
    pending: the photos left without a result then (a next run does them); seconds: the run's wall time."""

    results: list[PhotoResult] = field(default_factory=list)
    interrupted: bool = False
    stopped: bool = False
    pending: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def _with(self, status: str) -> list[PhotoResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[PhotoResult]:
        return self._with(DONE)

    @property
    def skipped(self) -> list[PhotoResult]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[PhotoResult]:
        return self._with(FAILED)

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing was left undone."""
        return not self.failed and not self.pending and not self.interrupted


# ----------------------------------------------------------------------------------------------------
# Finding and planning


def is_system_file(name: str) -> bool:
    """Hidden (dot) files and the system's own files: skipped without a word."""
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


def find_photos(root, recursive: bool = False, out_dir=None) -> Found:
    """The photos in folder `root` (sub-folders too when recursive), sorted by path.

    Hidden and system files are left out silently, other files that are not photos (by suffix) are in
    `others` with the reason. `out_dir` (and anything in it) is never read when it lies inside root.
    Symbolic links are followed, but a folder is visited once, so link loops end.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    skip = _key(out_dir) if out_dir is not None and _key(out_dir) != _key(root) else None
    photos: list[Path] = []
    others: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path) -> None:
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            return  # a link back to a folder already walked
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            others.append((folder, f"cannot list: {e.strerror or e}"))
            return
        for entry in entries:
            path = Path(entry.path)
            if is_system_file(entry.name):
                continue
            try:
                is_dir = entry.is_dir()  # follows links
                if not is_dir and not entry.is_file():
                    reason = "broken link" if entry.is_symlink() and not path.exists() else "not a file"
                    others.append((path, reason))
                    continue
            except OSError as e:
                others.append((path, e.strerror or str(e)))
                continue
            if is_dir:
                if recursive and (skip is None or _key(path) != skip):
                    walk(path)
            elif path.suffix.lower() in PHOTO_SUFFIXES:
                photos.append(path)
            else:
                others.append((path, f"not a photo ({path.suffix or 'no suffix'})"))

    walk(root)
    return Found(photos, others)


def _key(path) -> tuple[int, int] | str:
    """A folder's identity: (device, inode) when it exists, else its absolute path."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.abspath(path)


def default_out_dir(root) -> Path:
    return Path(root) / "clips"


def plan(photos: Iterable, root, out_dir=None, fmt: str = "mp4") -> list[Job]:
    """Each photo -> its output under out_dir (default: root/clips), mirroring its folder under root.

    `a.jpg` -> `a.mp4` (`a_frames` for frames; media.default_output's names); photos of one folder whose
    outputs would clash (`a.jpg`, `a.png`; case does not count) keep their whole name: `a.jpg.mp4`,
    `a.png.mp4` (a clash left after that: `a.jpg-1.mp4`, `a.jpg-2.mp4`, by sorted path). The same
    photos always get the same outputs.
    """
    if fmt not in media.FORMATS:
        raise ValueError(f"unknown clip format {fmt!r} (choose {', '.join(media.FORMATS)})")
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(root)
    photos = [Path(p) for p in photos]
    targets = []
    for p in photos:
        try:
            rel = p.parent.relative_to(root)
        except ValueError:
            raise ValueError(f"{p}: not inside {root}") from None
        targets.append(out_dir / rel / p.name)
    outputs = [media.default_output(t, fmt) for t in targets]
    for attempt in range(2):  # 0: whole names for stems that clash; 1: a number for what still clashes
        groups: dict[str, list[int]] = {}
        for i, out in enumerate(outputs):
            groups.setdefault(os.path.normcase(str(out)).lower(), []).append(i)
        clashes = [ids for ids in groups.values() if len(ids) > 1]
        for ids in clashes:
            for n, i in enumerate(sorted(ids, key=lambda i: str(photos[i]))):
                name = targets[i].name if attempt == 0 else f"{targets[i].name}-{n + 1}"
                outputs[i] = targets[i].with_name(f"{name}_frames" if fmt == "frames" else f"{name}.{fmt}")
    return [Job(p, out, fmt) for p, out in zip(photos, outputs)]


def remove_temporaries(jobs: Iterable[Job]) -> list[Path]:
    """Remove what a killed run left of the jobs' outputs: media's hidden `.NAME.partXXXXXXXX` (and
    `.NAME.oldXXXXXXXX`) beside each output. Returns what was removed. (A second run writing into the
    same folder at the same time would lose its clip in progress: one run per output folder.)"""
    wanted: dict[Path, set[str]] = {}
    for job in jobs:
        wanted.setdefault(job.output.parent, set()).add(job.output.name)
    removed = []
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # not made yet
        for entry in entries:
            m = _TEMP.match(entry.name)
            if m and m.group("name") in names:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


# ----------------------------------------------------------------------------------------------------
# Running


def _expected() -> tuple[type[BaseException], ...]:
    """Errors that are about one photo: they fail it, and the batch goes on."""
    errors: tuple[type[BaseException], ...] = (media.MediaError, OSError, ValueError, MemoryError)
    try:
        from .pipeline import _OOM

        errors += (_OOM,)
    except ImportError:  # pragma: no cover
        pass
    return errors


def describe(e: BaseException) -> str:
    """One line (media's messages already name the file)."""
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    if type(e).__name__ == "OutOfMemoryError":
        return "out of memory on the device (try a smaller tile or max_size)"
    text = " ".join(str(e).split())
    return text or type(e).__name__


def run_batch(
    jobs: Sequence[Job],
    *,
    extractor=None,
    load: Callable[[], object] | None = None,
    fps: float = 10.0,
    pingpong: bool = True,
    loops: int = 1,
    reverse: bool = False,
    max_size: int | None = None,
    max_pixels: int | None = None,
    overwrite: bool = False,
    fail_fast: bool = False,
    prefetch: int = 2,
    on_event: Event | None = None,
    **extractor_options,
) -> BatchReport:
    """Make each job's clip; returns the report (results in the order of `jobs`).

    extractor: a loaded pipeline.Extractor; else load() makes one (the command line's, which reports
    downloads), else Extractor(**extractor_options) (weights, device, precision, tile, threads) -- in
    both cases only when the first photo needs it. The clip options are make_clip's. An existing output
    is skipped (status skipped, error "output already exists") unless overwrite. fail_fast: stop at
    the first failure. on_event(kind, job, result): "start" when the model starts on a photo (result
    None), "result" when a photo is finished; called from the calling thread.
    """
    start = time.perf_counter()
    report = BatchReport()
    jobs = list(jobs)
    expected = _expected()
    state = {"extractor": extractor}

    def emit(job: Job, result: PhotoResult) -> None:
        report.results.append(result)
        if on_event is not None:
            on_event("result", job, result)

    def model():
        if state["extractor"] is None:
            if load is not None:
                state["extractor"] = load()
            else:
                from .pipeline import Extractor

                state["extractor"] = Extractor(**extractor_options)
        return state["extractor"]

    guard = _Interrupts()
    remove_temporaries(jobs)
    todo: list[Job] = []
    for job in jobs:  # finished outputs first: they need no thread, no weights
        if not overwrite and (job.output.exists() or job.output.is_symlink()):
            emit(job, PhotoResult(job.input, job.output, SKIPPED, 0.0, EXISTS))
        else:
            todo.append(job)

    reads: deque[tuple[Job, Future]] = deque()  # decoding, in order
    writes: deque[tuple[Job, float, Future | BaseException]] = deque()  # encoding (or failed), in order
    queue = iter(todo)
    reader = ThreadPoolExecutor(1, thread_name_prefix="blur2clip-read")
    writer = ThreadPoolExecutor(1, thread_name_prefix="blur2clip-write")

    def fill(depth: int) -> None:
        while len(reads) < depth:
            job = next(queue, None)
            if job is None:
                return
            reads.append((job, reader.submit(_read, job.input, max_size, max_pixels)))

    def finish(stopping: bool = False) -> None:  # the oldest photo in flight: its result
        job, seconds, work = writes.popleft()
        try:
            if isinstance(work, BaseException):
                raise work
            seconds += work.result()
        except expected as e:
            if not ((stopping or guard.pending) and isinstance(work, Future)):  # Ctrl-C hit ffmpeg too: not done
                emit(job, PhotoResult(job.input, job.output, FAILED, seconds, describe(e)))
        else:
            emit(job, PhotoResult(job.input, job.output, DONE, seconds))

    def failed() -> bool:
        return fail_fast and any(r.status == FAILED for r in report.results)

    try:
        guard.__enter__()  # Ctrl-C: only while waiting for a photo or the model (see _Interrupts)
        depth = prefetch
        while not failed():
            fill(depth)
            if not reads:
                break
            with guard.allowed():
                group = _take(reads, expected, writes)  # decoded photos (same size; one unless on a GPU)
            if not group:
                while len(writes) > (0 if fail_fast else 1):
                    finish()
                continue
            with guard.allowed():
                ex = model()
            size = _group_size(ex)
            depth = max(prefetch, size)
            while len(group) < size and reads:  # on a GPU: the next photos, while they have this size
                fill(depth)
                with guard.allowed():
                    more = _take(reads, expected, writes, like=group[0][1])
                if not more:
                    break
                group += more
            for job, _, _ in group:
                if on_event is not None:
                    on_event("start", job, None)
            t = time.perf_counter()
            try:
                with guard.allowed():
                    frames = _extract(ex, [image for _, image, _ in group])
            except expected as e:
                frames = [e] * len(group)
            share = (time.perf_counter() - t) / len(group)
            for (job, _, decode), clip in zip(group, frames):
                if isinstance(clip, BaseException):
                    writes.append((job, decode + share, clip))
                else:
                    work = writer.submit(_write, clip, job, fps, pingpong, loops, reverse, overwrite)
                    writes.append((job, decode + share, work))
            del frames, group
            while len(writes) > (0 if fail_fast else 1):  # one clip encodes while the next photo runs
                finish()
        while writes:
            finish()
    except KeyboardInterrupt:
        report.interrupted = True
        for _, future in reads:
            future.cancel()
        try:
            while writes:  # clips being written are finished (or removed by media if that fails)
                job, seconds, work = writes[0]
                if isinstance(work, Future) and work.cancel():
                    writes.popleft()
                    continue
                finish(stopping=True)
        except KeyboardInterrupt:
            pass
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=True)
        guard.__exit__()
    report.interrupted = report.interrupted or guard.pending  # Ctrl-C while the last clip was finished
    report.stopped = failed()
    finished = {r.input for r in report.results}
    report.pending = [job.input for job in jobs if job.input not in finished]
    report.seconds = time.perf_counter() - start
    return report


def batch(root, out_dir=None, *, recursive: bool = False, fmt: str = "mp4", **options) -> BatchReport:
    """The whole folder run: find_photos, plan, run_batch (options: run_batch's). Files that are not
    photos are in the report as skipped, before the photos."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(root)
    found = find_photos(root, recursive, out_dir)
    others = [PhotoResult(path, None, SKIPPED, 0.0, reason) for path, reason in found.others]
    report = run_batch(plan(found.photos, root, out_dir, fmt), **options)
    report.results[:0] = others
    return report


class _Interrupts:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt only inside `allowed()` blocks (waiting for a photo, the
    model's work); elsewhere -- a result being reported, a clip being handed to the writer -- it is
    kept and raised when the next allowed block begins, so no finished clip goes unreported. Only in
    the main thread, and only over Python's default handler (a caller's own handler is left alone)."""

    def __init__(self):
        self.pending, self.open, self.previous = False, False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _handle(self, signum, frame) -> None:
        if self.open:
            raise KeyboardInterrupt
        self.pending = True

    def allowed(self):
        return _Allowed(self)


class _Allowed:
    def __init__(self, guard: _Interrupts):
        self.guard = guard

    def __enter__(self) -> None:
        if self.guard.pending:
            self.guard.pending = False
            raise KeyboardInterrupt
        self.guard.open = True

    def __exit__(self, *exc) -> None:
        self.guard.open = False


# -- the steps, each on its thread ---------------------------------------------------------------------


def _read(path: Path, max_size: int | None, max_pixels: int | None) -> tuple[np.ndarray, float]:
    """Reader thread: the photo as HxWx3 float32 (shrunk to max_size), and the seconds it took."""
    from .pipeline import load_image

    t = time.perf_counter()
    image, _ = load_image(path, max_size, max_pixels)
    return image, time.perf_counter() - t


def _take(reads: deque, expected, writes: deque, like: np.ndarray | None = None) -> list:
    """The decoded photo at the front of `reads` as [(job, image, seconds)] (waiting for it). A photo
    that failed to decode goes to `writes` as failed, and the list is empty. With `like`: only a photo
    that decoded fine and has like's shape is taken; else nothing (it stays in front)."""
    job, future = reads[0]
    try:
        image, seconds = future.result()
    except expected as e:
        if like is not None:
            return []  # left at the front: the next round fails it, in order
        reads.popleft()
        writes.append((job, 0.0, e))
        return []
    if like is not None and image.shape != like.shape:
        return []
    reads.popleft()
    return [(job, image, seconds)]


def _group_size(extractor) -> int:
    """Photos per forward pass: the extractor's tile batch on a GPU, else one."""
    device = getattr(extractor, "device", None)
    if device is None or getattr(device, "type", "cpu") == "cpu":
        return 1
    return max(1, int(getattr(extractor, "batch", 1)))


def _extract(extractor, images: list[np.ndarray]) -> list[np.ndarray | BaseException]:
    """FxHxWx3 uint8 frames of each image; same-sized images that fit one pass go through the network
    together (a GPU's batch); if that fails, each runs alone, so a failure is one photo's."""
    if len(images) > 1:
        h, w = images[0].shape[:2]
        tile = getattr(extractor, "tile", 0)
        if not tile or h * w <= tile**2:
            try:
                return extractor.many(images, dtype=np.uint8)
            except Exception:  # noqa: BLE001 -- out of memory & co.: one at a time below, errors per photo
                _free(extractor)
    out: list[np.ndarray | BaseException] = []
    expected = _expected()
    for image in images:
        try:
            out.append(extractor(image, dtype=np.uint8))
        except expected as e:
            if len(images) == 1:
                raise
            out.append(e)
    return out


def _free(extractor) -> None:
    device = getattr(extractor, "device", None)
    if getattr(device, "type", "") == "cuda":
        import torch

        torch.cuda.empty_cache()


def _write(frames: np.ndarray, job: Job, fps, pingpong, loops, reverse, overwrite) -> float:
    """Writer thread: the frames as the job's clip (atomically); the seconds it took."""
    from .pipeline import render

    t = time.perf_counter()
    render(frames, job.output, job.fmt, fps=fps, pingpong=pingpong, loops=loops, reverse=reverse,
           overwrite=overwrite)
    return time.perf_counter() - t
