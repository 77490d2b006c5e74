"""Which photos a folder run makes clips of, and where each clip goes: `find_photos` and `plan` (or
`plan_photos` for photos named one by one), the leftover temporaries of earlier runs, and what a run
reports per photo (`PhotoResult`, `BatchReport`). batch.py runs the plan. Deterministic: the same folder
gives the same jobs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from . import media, outputs
from .raw import NEEDS_EXTRA as RAW_NEEDS_EXTRA
from .raw import available as raw_available
from .raw import is_raw

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
        """JSON-ready: paths as strings, seconds rounded to ms, motion to 0.1 px; the error without the
        input's path before it (the line on stderr names it; here "input" does)."""
        error = self.error
        if error is not None and error.startswith(f"{self.input}: "):
            error = error[len(f"{self.input}: "):]
        return {"input": str(self.input), "output": None if self.output is None else str(self.output),
                "status": self.status, "seconds": round(self.seconds, 3), "error": error,
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
    if not root.is_dir():  # the input: exit code 3, like a missing photo
        raise media.MediaError(root, "is not a folder" if root.exists() else "no such folder")
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
            # the same file by any path: '..', links to folders, case
            where = os.path.join(os.path.realpath(out.parent), out.name)
            groups.setdefault(os.path.normcase(where).lower(), []).append(i)
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
