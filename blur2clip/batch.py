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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import clipwriter, media, outputs
from .motion import motion_px
from .raw import NEEDS_EXTRA as RAW_NEEDS_EXTRA
from .raw import available as raw_available
from .raw import is_raw
from .errors import one_line
from .job import ClipOptions, load_image, loaded, render

# What read_photo can open (HEIC/AVIF need the extra; read_photo says so)
PHOTO_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .jfif .mpo .png .tif .tiff .webp .bmp .dib .gif .heic .heif .hif .avif .ppm .pgm .pbm "
    ".pnm .tga".split())
# Skipped silently, as are all names starting with "." (.DS_Store, ._AppleDouble, .Trashes, ...)
SYSTEM_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r",
                          "$recycle.bin", "system volume information", "__macosx", "@eadir"})
DONE, SKIPPED, FAILED = "done", "skipped", "failed"
EXISTS = "output already exists"
OTHER_RUN = "taken by another blur2clip run"  # one running at the same time claimed the output first

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
    motion: float | None = None  # how far the frames move, px (motion.motion_px); None: not measured

    def as_dict(self) -> dict:
        """JSON-ready: paths as strings, seconds rounded to ms, motion to 0.1 px."""
        return {"input": str(self.input), "output": None if self.output is None else str(self.output),
                "status": self.status, "seconds": round(self.seconds, 3), "error": self.error,
                "motion_px": None if self.motion is None else round(self.motion, 1)}


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
    `others` with the reason; so are camera RAW files when the `raw` extra (rawpy) is not installed. `out_dir` (and anything in it) is never read when it lies inside root.
    Symbolic links are followed, but a folder is visited once, so link loops end.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    skip = _key(out_dir) if out_dir is not None and _key(out_dir) != _key(root) else None
    raw_ok = raw_available()
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
            elif path.suffix.lower() in PHOTO_SUFFIXES or (is_raw(path) and raw_ok):
                photos.append(path)
            elif is_raw(path):
                others.append((path, RAW_NEEDS_EXTRA))
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

    `a.jpg` -> `a.mp4` (`a_frames` for frames; media.default_output's names). A photo keeps its whole
    name (`a.jpg.mp4`) when its output would clash with another's (`a.jpg`, `a.png`; case does not
    count: both keep it) or would be one of the photos (`a.jpg` -> `a.webp` beside a photo `a.webp`,
    or a link or hard link to any photo); a clash left after that is numbered (`a.jpg-1.mp4`), in the
    sorted order of the photos. The same photos and files always get the same outputs.
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
    return _name_jobs(photos, targets, fmt)


def plan_photos(photos: Iterable, out_dir=None, fmt: str = "mp4") -> list[Job]:
    """Photos named one by one (`blur2clip a.jpg b.png`) -> their outputs: beside each photo (out_dir None)
    or all in out_dir, named as `plan` names them (`a.mp4`; `a.jpg.mp4` and `a.png.mp4` when two would
    clash, as do two photos of one name from different folders into one out_dir). A photo named twice
    (by any name or link) is done once."""
    if fmt not in media.FORMATS:
        raise ValueError(f"unknown clip format {fmt!r} (choose {', '.join(media.FORMATS)})")
    unique, seen = [], set()
    for p in map(Path, photos):
        key = outputs.identity(p) or os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    targets = [p if out_dir is None else Path(out_dir) / p.name for p in unique]
    return _name_jobs(unique, targets, fmt)


def _name_jobs(photos: list[Path], targets: list[Path], fmt: str) -> list[Job]:
    """Each photo's output named after its target (a path whose folder and name the output takes), the
    clashes resolved as `plan` says."""
    inputs = {i for i in map(outputs.identity, photos) if i is not None}
    level = [0] * len(photos)  # 0: default name, 1: whole name, n: whole name numbered n - 1

    def name(i: int) -> Path:
        if level[i] == 0:
            return media.default_output(targets[i], fmt)
        whole = targets[i].name if level[i] == 1 else f"{targets[i].name}-{level[i] - 1}"
        return targets[i].with_name(f"{whole}_frames" if fmt == "frames" else f"{whole}.{fmt}")

    while True:  # every round moves a name up a level; names of a higher level are ever more distinct
        names = [name(i) for i in range(len(photos))]
        move = {i for i, out in enumerate(names) if outputs.identity(out) in inputs}
        groups: dict[str, list[int]] = {}
        for i, out in enumerate(names):
            groups.setdefault(os.path.normcase(str(out)).lower(), []).append(i)
        for ids in groups.values():
            if len(ids) > 1:
                first = [i for i in ids if level[i] == 0] or sorted(ids, key=lambda i: str(photos[i]))[1:]
                move.update(first)
        if not move:
            return [Job(p, out, fmt) for p, out in zip(photos, names)]
        for i in move:
            level[i] += 1


def remove_temporaries(jobs: Iterable[Job]) -> list[Path]:
    """Remove what ended runs left of the jobs' outputs: media's hidden `.NAME.partXXXXXXXX` (and
    `.NAME.oldXXXXXXXX`) beside each output, except where a live run holds the output's claim (its clip
    in progress). Returns what was removed."""
    removed = []
    for folder, group in _by_folder(jobs).items():
        found = outputs.leftovers_in(folder)
        for job in group:
            paths = found.get(outputs.key(job.output), [])
            if not paths:
                continue
            try:
                with outputs.Claim(job.output).acquire(tidy=False):
                    for path in paths:
                        outputs.remove(path)
                        removed.append(path)
            except (outputs.Busy, OSError):
                continue
    return removed


def _by_folder(jobs: Iterable[Job]) -> dict[Path, list[Job]]:
    folders: dict[Path, list[Job]] = {}
    for job in jobs:
        folders.setdefault(job.output.parent, []).append(job)
    return folders


# ----------------------------------------------------------------------------------------------------
# Running


def _expected() -> tuple[type[BaseException], ...]:
    """Errors that are about one photo: they fail it, and the batch goes on."""
    from .device import OutOfMemory

    return (media.MediaError, OSError, ValueError, MemoryError, OutOfMemory)


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
    Extractor(**settings) then (weights, device, precision, tile, threads). A GIF or WebP is made at most
    media.ANIMATED_MAX_SIZE px on its long side when max_size is not given. min_motion: a photo
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
    options = (options or ClipOptions()).with_(**{k: v for k, v in settings.items() if k not in extractor_options})
    overwrite, max_size, max_pixels, metadata = options.overwrite, options.max_size, options.max_pixels, \
        options.metadata
    start, began = time.perf_counter(), time.time()
    report = BatchReport()
    jobs = list(jobs)
    expected = _expected() + (_Skip,)
    state = {"extractor": None, "loaded": False}
    clipwriter.protect(job.input for job in jobs)  # before the first write: no output is ever a photo of the run
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
        if state["extractor"] is None or not state["loaded"]:
            state["extractor"], state["loaded"] = loaded(extractor, **extractor_options), True
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
                size = media.clip_max_size(job.fmt, max_size)
                reads.append((job, reader.submit(_read, job.input, size, max_pixels, metadata)))

    def finish(stopping: bool = False) -> None:  # the oldest photo in flight: its result
        job, seconds, work = writes.popleft()
        try:
            if isinstance(work, BaseException):
                raise work
            written, moved = work.result()
        except _Skip as e:
            emit(job, PhotoResult(job.input, job.output, SKIPPED, 0.0, e.reason, e.motion))
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


def batch(root, out_dir=None, *, recursive: bool = False, fmt: str = "mp4", **options) -> BatchReport:
    """The whole folder run: find_photos, plan, run_batch (options: run_batch's). Files that are not
    photos are in the report as skipped, before the photos."""
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


def _read(path: Path, max_size: int | None, max_pixels: int | None, metadata: bool):
    """Reader thread: (the photo as HxWx3 float32 shrunk to max_size, the seconds it took, its capture
    metadata or None when not kept)."""
    t = time.perf_counter()
    image, capture = load_image(path, max_size, max_pixels)
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
    device = getattr(extractor, "device", None)
    if device is not None:
        from .device import free

        free(device)


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
