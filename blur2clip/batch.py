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
suffix (`a.jpg.mp4`, `a.png.mp4`), and so does a photo whose output would be another photo of the run.
Every output is written atomically by media (a hidden temporary `.NAME.partXXXXXXXX`, renamed when
complete), so an existing output is a finished one: a second run skips it (unless overwrite) and resumes
where the first stopped. Inputs are only ever read: every output is planned before the first write, and
none is ever a photo of the run (by device and inode: no name, link or hard link reaches one).

Runs at the same time on the same outputs share the work: a photo is done by the run that claims its
output first (outputs.Claim, a lock the kernel drops when its process dies); the other reports it as
skipped ("taken by another blur2clip run"). Only the holder of a claim removes temporaries that ended
runs left of its output, so a live run's clip in progress is never deleted.

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
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import files, media, outputs
from .motion import motion_px
from .batchplan import (DONE, EXISTS, FAILED, OTHER_RUN, PHOTO_SUFFIXES, SKIPPED, SYSTEM_NAMES,  # noqa: F401
                        BatchReport, Found, Job, PhotoResult, default_out_dir, find_photos, is_system_file, plan,
                        plan_photos, remove_temporaries)
from .errors import one_line
from .job import ClipOptions, clip_size, load_image, loaded, render, resize

Event = Callable[[str, "Job", "PhotoResult | None"], None]


# ----------------------------------------------------------------------------------------------------
# Running


def _expected() -> tuple[type[BaseException], ...]:
    """Errors that are about one photo: they fail it, and the batch goes on."""
    from .device import out_of_memory

    return (media.MediaError, OSError, ValueError, *out_of_memory())


def run_batch(
    jobs: Sequence[Job],
    options: ClipOptions | None = None,
    *,
    extractor=None,
    min_motion: float | None = None,
    fail_fast: bool = False,
    prefetch: int = 2,
    on_event: Event | None = None,
    **settings,
) -> BatchReport:
    """Make each job's clip; returns the report (results in the order of `jobs`).

    options: the clips' job.ClipOptions (its format is each job's own); its fields may also be given as
    keywords, which override it. extractor: a loaded extract.Extractor, or a function that makes one
    (the command line's, which reports downloads), called only when the first photo needs it; None:
    Extractor(**settings) then (weights, device, precision, tile, threads, engine). A GIF or WebP is made
    at most media.ANIMATED_MAX_SIZE px on its long side when max_size is not given, an MP4 within H.264
    level 5.1 (job.clip_size), and the network works at that size. min_motion: a photo
    whose frames move less than this many pixels (no motion blur to undo) gets no clip and is skipped
    with the reason and its motion score. An existing output
    is skipped (status skipped, error EXISTS) unless overwrite; one that may not be written (see
    outputs.refusal: an input photo, a device, ...) fails before any work. A photo whose output another
    run claimed first, or (with overwrite) made after this run began, is skipped (error OTHER_RUN).
    fail_fast: stop at the first failure. on_event(kind, job, result): "start" when the model starts on
    a photo (result None), "result" when a photo is finished; called from the calling thread. The
    folders made for outputs are removed at the end when they stayed empty.
    """
    given, extractor_options = ClipOptions.split(settings)
    unknown = set(extractor_options) - {"weights", "device", "precision", "tile", "threads", "engine"}
    if unknown:  # now, not when the first photo reaches the network
        raise TypeError(f"run_batch() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    options = (options or ClipOptions()).with_(**given)
    overwrite, metadata = options.overwrite, options.metadata
    start, began = time.perf_counter(), time.time()
    report = BatchReport()
    jobs = list(jobs)
    expected = _expected() + (_Skip,)
    state = {"extractor": None}
    files.protect(job.input for job in jobs)  # before the first write: no output is ever a photo of the run
    inputs = {i for i in (outputs.identity(job.input) for job in jobs) if i is not None}
    held: dict[Job, outputs.Claim] = {}  # the outputs this run is making
    made: list[Path] = []  # folders made for them
    found: dict[Path, dict[str, list[Path]]] = {}  # temporaries left in each output folder

    def emit(job: Job, result: PhotoResult) -> None:
        report.results.append(result)
        claim = held.pop(job, None)
        if claim is not None:
            claim.release()
        if on_event is not None:
            on_event("result", job, result)

    def claim(job: Job) -> None:
        """Claim the job's output, or raise _Skip (another run has it) or MediaError."""
        c = outputs.Claim(job.output)
        try:
            c.acquire(tidy=False)
        except outputs.Busy:
            raise _Skip(OTHER_RUN) from None
        except OSError as e:
            raise media.MediaError(job.output, e.strerror or e) from e
        finally:
            made.extend(c.created)
        try:
            st = os.lstat(job.output)
        except FileNotFoundError:
            st = None
        if st is not None and (not overwrite or st.st_mtime >= began):  # made meanwhile by another run
            c.release()
            raise _Skip(EXISTS if not overwrite else OTHER_RUN)
        held[job] = c
        if job.output.parent not in found:
            found[job.output.parent] = outputs.leftovers_in(job.output.parent)
        for path in found[job.output.parent].pop(outputs.key(job.output), []):
            outputs.remove(path)

    def model():
        if state["extractor"] is None:  # made (or loaded) when the first photo needs it
            state["extractor"] = loaded(extractor, **extractor_options)
        return state["extractor"]

    guard = outputs.Interrupts()
    todo: list[Job] = []
    made_before: list[Job] = []
    for job in jobs:  # finished outputs and refused ones first: they need no thread, no weights
        there = job.output.exists() or job.output.is_symlink()
        if there and not overwrite and outputs.identity(job.output) not in inputs:
            made_before.append(job)
            emit(job, PhotoResult(job.input, job.output, SKIPPED, 0.0, EXISTS))
        elif why := outputs.refusal(job.output, overwrite=overwrite, folder=job.fmt == "frames", inputs=inputs):
            emit(job, PhotoResult(job.input, job.output, FAILED, 0.0, f"{outputs.printable(job.output)}: {why}"))
        else:
            todo.append(job)
    remove_temporaries(made_before)

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
            try:
                claim(job)
            except (_Skip, media.MediaError) as e:
                reads.append((job, _settled(e)))
            else:
                reads.append((job, reader.submit(_read, job.input, options.with_(fmt=job.fmt), metadata)))

    def finish(stopping: bool = False) -> None:  # the oldest photo in flight: its result
        job, seconds, work = writes.popleft()
        try:
            if isinstance(work, BaseException):
                raise work
            written, moved = work.result()
        except _Skip as e:
            if e.motion is not None:  # the network ran and found no motion blur: the time it took, no clip
                emit(job, PhotoResult(job.input, None, SKIPPED, seconds, e.reason, e.motion))
            else:  # made before, or by another run: that clip
                emit(job, PhotoResult(job.input, job.output, SKIPPED, 0.0, e.reason))
        except expected as e:
            if not ((stopping or guard.pending) and isinstance(work, Future)):  # Ctrl-C hit ffmpeg too: not done
                emit(job, PhotoResult(job.input, job.output, FAILED, seconds, one_line(e)))
        else:
            emit(job, PhotoResult(job.input, job.output, DONE, seconds + written, None, moved))

    def failed() -> bool:
        return fail_fast and any(r.status == FAILED for r in report.results)

    try:
        guard.__enter__()  # Ctrl-C: only while waiting for a photo or the model (see Interrupts)
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
            expected = _expected() + (_Skip,)  # with torch's out-of-memory error once the model loaded torch
            size = _group_size(ex)
            depth = max(prefetch, size)
            while len(group) < size and reads:  # on a GPU: the next photos, while they have this size
                fill(depth)
                with guard.allowed():
                    more = _take(reads, expected, writes, like=group[0][1])
                if not more:
                    break
                group += more
            for job, *_ in group:
                if on_event is not None:
                    on_event("start", job, None)
            t = time.perf_counter()
            try:
                with guard.allowed():
                    extracted = _extract(ex, [image for _, image, _, _ in group])
            except expected as e:
                extracted = [e] * len(group)
            share = (time.perf_counter() - t) / len(group)
            for (job, _, decode, capture), clip in zip(group, extracted):
                if isinstance(clip, BaseException):
                    writes.append((job, decode + share, clip))
                else:
                    work = writer.submit(_write, clip, job, min_motion, options.with_(fmt=job.fmt), capture)
                    writes.append((job, decode + share, work))
            del extracted, group
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
        for c in held.values():  # photos left undone
            c.release()
        outputs.remove_folders(made)  # the empty ones
    report.interrupted = report.interrupted or guard.pending  # Ctrl-C while the last clip was finished
    report.stopped = failed()
    finished = {r.input for r in report.results}
    report.pending = [job.input for job in jobs if job.input not in finished]
    report.seconds = time.perf_counter() - start
    return report


def batch(root, out_dir=None, *, recursive: bool = False, fmt: str | None = None, **options) -> BatchReport:
    """The whole folder run: find_photos, plan, run_batch (options: run_batch's). Files that are not
    photos are in the report as skipped, before the photos. fmt: the clips' format; None: the one of
    `options=ClipOptions(...)`, else mp4."""
    given = options.get("options")
    if fmt is not None and given is not None and given.fmt not in (None, fmt):
        from .errors import SettingsError

        raise SettingsError(f"fmt {fmt!r} and options.fmt {given.fmt!r} disagree: give one")
    fmt = fmt or (given.fmt if given is not None else None) or "mp4"
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(root)
    found = find_photos(root, recursive, out_dir)
    others = [PhotoResult(path, None, SKIPPED, 0.0, reason) for path, reason in found.others]
    report = run_batch(plan(found.photos, root, out_dir, fmt), **options)
    report.results[:0] = others
    return report


# -- the steps, each on its thread ---------------------------------------------------------------------


class _Skip(Exception):
    """A photo left to another run, found done when its turn came, or without motion: skipped, with this
    reason (and its motion score when it was measured)."""

    def __init__(self, reason: str, motion: float | None = None):
        super().__init__(reason)
        self.reason, self.motion = reason, motion


def _settled(error: BaseException) -> Future:
    """A future that has already failed with `error` (a photo that needs no reading)."""
    future: Future = Future()
    future.set_exception(error)
    return future


def _read(path: Path, options: ClipOptions, metadata: bool):
    """Reader thread: (the photo as HxWx3 float32 at its clip's size (job.clip_size), the seconds it took,
    its capture metadata or None when not kept)."""
    t = time.perf_counter()
    image, capture = load_image(path, options.max_size, options.max_pixels)
    image = resize(image, clip_size(*image.shape[:2], options.fmt, options))
    return image, time.perf_counter() - t, capture if metadata else None


def _take(reads: deque, expected, writes: deque, like: np.ndarray | None = None) -> list:
    """The decoded photo at the front of `reads` as [(job, image, seconds, capture)] (waiting for it). A photo
    that failed to decode goes to `writes` as failed, and the list is empty. With `like`: only a photo
    that decoded fine and has like's shape is taken; else nothing (it stays in front)."""
    job, future = reads[0]
    try:
        image, seconds, capture = future.result()
    except expected as e:
        if like is not None:
            return []  # left at the front: the next round fails it, in order
        reads.popleft()
        writes.append((job, 0.0, e))
        return []
    if like is not None and image.shape != like.shape:
        return []
    reads.popleft()
    return [(job, image, seconds, capture)]


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
    free = getattr(extractor, "free", None)
    if free is not None:
        free()


def _write(predicted: np.ndarray, job: Job, min_motion: float | None, options: ClipOptions,
           capture) -> tuple[float, float]:
    """Writer thread: the network's frames as the job's clip (atomically, job.render); (seconds it took,
    motion score). _Skip when they move less than min_motion pixels."""
    t = time.perf_counter()
    moved = motion_px(predicted)
    if min_motion is not None and moved < min_motion:
        raise _Skip(f"no motion blur (the frames move {moved:.1f} px, under --min-motion {min_motion:g})", moved)
    render(predicted, job.output, options, capture=capture)
    return time.perf_counter() - t, moved
