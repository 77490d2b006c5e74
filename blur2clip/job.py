"""One photo file -> one clip file: `make_clip`, with the clip's settings in one `ClipOptions`.

The same ClipOptions goes from the command line to `make_clip` (one photo) or `batch.run_batch` (many)
and on to the writer (`render`). The network comes in one form: a loaded `extract.Extractor`, or a
function that makes one (called only once the photo's outputs have passed their checks, so a bad photo
or output is reported before weights load). No torch is imported here until a network is needed.
"""

from __future__ import annotations

import functools
import numbers
import time
import types
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

import numpy as np

from . import CLIP_FPS, CLIP_FRAMES, FPS_RANGE, FRAMES_RANGE
from .motion import motion_px

if TYPE_CHECKING:  # for type checkers only: torch loads when a network is needed
    from .extract import Extractor


@dataclass(frozen=True)
class ClipOptions:
    """How a clip is made from a photo's frames.

    fmt: mp4, gif, webp or frames (None: from the output's suffix). frames: instants of the exposure the
    clip shows (3..96; None: the network's own frames). The clip plays them forward, then back when
    pingpong (reverse: the other way), `loops` times (an mp4), at `fps`. max_size: shrink the photo first
    so its long side is at most this (without it a GIF or WebP is made at most media.ANIMATED_MAX_SIZE px
    on its long side). overwrite: replace existing outputs (never a photo). quality: "high", "medium" or
    "low"; crf: H.264's rate factor for an mp4. metadata: keep the photo's capture metadata (date,
    camera, GPS; EXIF and XMP in a WebP and the still). max_pixels: refuse larger photos.
    """

    fmt: str | None = None
    frames: int | None = CLIP_FRAMES
    fps: float = CLIP_FPS
    pingpong: bool = True
    loops: int = 1
    reverse: bool = False
    max_size: int | None = None
    overwrite: bool = False
    quality: str = "high"
    crf: int | None = None
    metadata: bool = True
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        """Settings that cannot make a clip are refused here (SettingsError, naming the field), before a
        photo is read or a network runs."""
        from .clipwriter import QUALITIES
        from .errors import SettingsError
        from .media import FORMATS

        def number(name: str, lo: float, hi: float | None = None, none_ok: bool = True, whole: bool = True):
            v = getattr(self, name)
            if v is None and none_ok:
                return
            kind = numbers.Integral if whole else numbers.Real
            if isinstance(v, bool) or not isinstance(v, kind) or not lo <= v <= (v if hi is None else hi):
                span = f"of {lo} or more" if hi is None else f"from {lo} to {hi}"
                raise SettingsError(f"ClipOptions {name}: {v!r} is not a {'whole ' * whole}number {span}")

        for name in ("pingpong", "reverse", "overwrite", "metadata"):  # overwrite="false" is not false
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise SettingsError(f"ClipOptions {name}: {getattr(self, name)!r} is not True or False")
        if self.fmt is not None and self.fmt not in FORMATS:
            raise SettingsError(f"ClipOptions fmt: {self.fmt!r} is not one of {', '.join(FORMATS)}")
        if self.quality not in QUALITIES:
            raise SettingsError(f"ClipOptions quality: {self.quality!r} is not one of {', '.join(QUALITIES)}")
        number("frames", *FRAMES_RANGE)
        number("fps", *FPS_RANGE, none_ok=False, whole=False)
        number("loops", 1, 1000, none_ok=False)
        number("max_size", 1)
        number("crf", 0, 51)
        number("max_pixels", 1)

    @classmethod
    def split(cls, settings: dict) -> tuple[dict, dict]:
        """(the settings that are ClipOptions fields, the rest) -- for functions that take them as keywords."""
        names = {f.name for f in fields(cls)}
        return ({k: v for k, v in settings.items() if k in names},
                {k: v for k, v in settings.items() if k not in names})

    def with_(self, **changes) -> ClipOptions:
        return replace(self, **changes)


ExtractorSource = Union["Extractor", Callable[[], "Extractor"], None]


def loaded(source, **extractor_options):
    """The extractor that `source` gives: the result of calling it when it is a function (a def, lambda,
    bound method or functools.partial) that makes one; a new Extractor(**extractor_options) when None;
    else `source` itself (an Extractor, or anything that turns an image into frames as one does)."""
    if source is None:
        from .extract import Extractor

        return Extractor(**extractor_options)
    if isinstance(source, (types.FunctionType, types.MethodType, functools.partial)):
        return source()
    return source


@dataclass
class ClipResult:
    """What make_clip wrote: output (file, or folder for 'frames'), still (or None), frames in the clip
    as played, frame size in px, total seconds, seconds per step (load, decode, model, encode), the
    motion score: how far the frames move, in pixels (about 0 for a photo without motion blur), and the
    rate the clip plays at."""

    photo: Path
    output: Path
    still: Path | None
    frames: int
    width: int
    height: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    motion: float = 0.0  # how far the frames move, in pixels of the clip (motion.motion_px)
    fps: float = 0.0  # the rate the clip plays at: the one asked for, or the most a GIF or WebP plays
    capped: bool = False  # the clip shrunk (clip_size: a GIF or WebP to 1080 px, an MP4 to 3840 px, level 5.1)


def downscale(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """HxWx3 float32 0..1 -> the same, shrunk (Lanczos) so the long side is at most max_size px."""
    h, w = image.shape[:2]
    return resize(image, _within(h, w, max_size))


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 float32 0..1 -> the same at size (H, W), Lanczos; the image itself when it has that size."""
    if image.shape[:2] == tuple(size):
        return image
    from PIL import Image

    wh = (size[1], size[0])
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize(wh, Image.LANCZOS))
                for c in range(3)]  # PIL "F" images: float32, one per channel
    return np.clip(np.stack(channels, axis=-1), 0, 1).astype(np.float32, copy=False)


def _within(h: int, w: int, limit: int | None) -> tuple[int, int]:
    """(H, W) shrunk with the aspect kept so the long side is at most limit (None: as it is)."""
    if not limit or max(h, w) <= limit:
        return h, w
    s = limit / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def clip_size(h: int, w: int, fmt: str, options: ClipOptions) -> tuple[int, int]:
    """(H, W) of the clip made from an HxW photo already shrunk to options.max_size. Without a max_size, a
    GIF or WebP at most media.ANIMATED_MAX_SIZE px on its long side and an MP4 within MP4_MAX_SIZE and
    H.264 level 5.1 (clipwriter.mp4_scaled); a folder of frames, and anything given a max_size, at the
    photo's size."""
    from . import clipwriter, media

    if fmt == "mp4":
        return clipwriter.mp4_scaled(h, w, options.fps, options.max_size) or (h, w)
    return _within(h, w, media.clip_max_size(fmt, options.max_size))


def _shrunk_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """KxHxWx3 uint8 -> the same at size (H, W), Lanczos, one frame at a time."""
    from PIL import Image

    out = np.empty((len(frames), *size, 3), np.uint8)
    for k, frame in enumerate(frames):
        out[k] = np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.LANCZOS))
    return out


def load_image(photo, max_size: int | None = None, max_pixels: int | None = None):
    """A photo file -> (HxWx3 float32 sRGB 0..1, shrunk so its long side is at most max_size; its capture
    metadata as a capture.Capture: EXIF, XMP, when, where, which camera)."""
    from . import media

    picture = media.read_photo(photo, max_pixels=max_pixels)
    return downscale(picture.pixels, max_size), picture.capture


def render(frames: np.ndarray, out, options: ClipOptions, capture=None) -> Path:
    """KxHxWx3 uint8 frames from the network -> the clip at `out` (atomically, in options.fmt) of
    options.frames instants of the exposure made from them (None: the K frames), played forward, then
    back when pingpong (a folder of frames holds each instant once: ping-pong is playback)."""
    from . import clipwriter, media
    from .timeline import resample

    fmt = options.fmt
    made = resample(frames, options.frames or len(frames))  # made as the writer takes them
    order = media.play_order(len(made), pingpong=options.pingpong and fmt != "frames", reverse=options.reverse)
    return Path(clipwriter.write_clip(_Played(made, order), out, fmt, fps=options.fps, loops=options.loops,
                                      overwrite=options.overwrite, quality=options.quality, crf=options.crf,
                                      capture=capture, max_size=options.max_size))


class _Played:
    """The frames in play order, each made once when first asked for and kept while all of them fit in
    PLAYED_BYTES (then made again when asked again: a 24 MP photo's 24 frames would take 1.7 GB)."""

    def __init__(self, frames, order: list[int]):
        self.frames, self.order, self.kept = frames, order, {}
        first = self.kept[order[0]] = np.asarray(frames[order[0]])  # made to know its size, not made twice
        self.keep = first.nbytes * len(set(order)) <= PLAYED_BYTES

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> np.ndarray:
        j = self.order[i]
        if j in self.kept:
            return self.kept[j] if self.keep else self.kept.pop(j)
        frame = np.asarray(self.frames[j])
        if self.keep:
            self.kept[j] = frame
        return frame


PLAYED_BYTES = 512 * 2**20


def make_clip(photo, out=None, options: ClipOptions | None = None, *, still=None,
              extractor: ExtractorSource = None, on_output=None, on_step=None, **settings) -> ClipResult:
    """One blurred photo -> a clip of its sharp frames (mp4, gif, webp, or a folder of frames).

    out: the clip's path (default: beside the photo, media.default_output). options: a ClipOptions; its
    fields may also be given as keywords (make_clip(p, "c.gif", pingpong=False)), which override it.
    still: a path for the middle frame as a photo (JPEG, PNG or TIFF, sRGB profile), at the photo's size
    (after max_size): the network then runs at that size and the clip's frames are shrunk to
    clip_size; without a still it runs at the clip's size.
    extractor: a loaded extract.Extractor, or a function that makes one (called after the outputs were
    checked); otherwise one is made from the keywords weights, device, precision, tile.
    on_output(path): called with the clip, then the still, as soon as each is complete (so a caller can
    report the clip even when the still then fails). on_step(text): the step now running, for display.
    Raises errors.MediaError naming the file: kind "input" for unreadable photos; kind "output" for
    existing outputs without overwrite, outputs that would replace the photo itself (under any name or
    link) or anything but a regular file, outputs another run is making (see outputs.Claim), and
    outputs that cannot be written. Folders made for the outputs are removed again when the job fails.
    """
    from . import clipwriter, media, outputs
    from .errors import output_error

    given, model_settings = ClipOptions.split(settings)
    unknown = set(model_settings) - {"weights", "device", "precision", "tile", "threads", "engine"}
    if unknown:
        raise TypeError(f"make_clip() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    options = (options or ClipOptions()).with_(**given)
    step = on_step or (lambda text: None)
    start = time.perf_counter()
    photo = Path(photo)
    out = media.clip_output(photo, out, options.fmt) if out is not None else media.default_output(photo,
                                                                                                 options.fmt or "mp4")
    options = options.with_(fmt=media.clip_format(out, options.fmt))
    fmt = options.fmt
    still = Path(still) if still is not None else None
    step("Checking…")
    _check_outputs(photo, out, still, options)
    claims = [outputs.Claim(path) for path in (out, still) if path is not None]
    try:
        for claim in claims:
            try:
                claim.acquire()
            except outputs.Busy as e:
                raise output_error(claim.out, f"being made by another blur2clip run ({e.owner})") from None
            except OSError as e:
                raise output_error(claim.out, e.strerror or e) from e
        _check_outputs(photo, out, still, options)  # made meanwhile by another run?

        step("Reading photo…")  # before the weights load: a bad photo is reported at once, as a bad photo
        t = time.perf_counter()
        picture = media.read_photo(photo, max_pixels=options.max_pixels)
        image = downscale(picture.pixels, options.max_size)
        capture = picture.capture if options.metadata else None
        del picture
        size = clip_size(*image.shape[:2], fmt, options)
        capped = size != image.shape[:2]
        if still is None:  # the network works at the clip's size: less time and memory, a shorter blur
            image = resize(image, size)
        timings = {"decode": time.perf_counter() - t}

        t = time.perf_counter()
        extractor = loaded(extractor, **model_settings)
        timings["load"] = time.perf_counter() - t

        step("Extracting frames…")
        t = time.perf_counter()
        predicted = extractor(image, dtype=np.uint8)  # KxHxWx3 uint8
        del image
        middle = predicted[len(predicted) // 2]
        if predicted.shape[1:3] != size:  # made at full size for the still: the clip's frames are shrunk
            middle = middle.copy()
            # a travel head's rendering.Motion shrinks itself (and the full-size one is let go of here)
            predicted = predicted.shrunk(size) if hasattr(predicted, "shrunk") else _shrunk_frames(predicted, size)
        timings["model"] = time.perf_counter() - t
        moved = motion_px(predicted)

        step("Writing clip…")
        t = time.perf_counter()
        output = render(predicted, out, options, capture=capture)
        if on_output is not None:
            on_output(output)
        if still is not None:
            still = clipwriter.write_still(middle, still, capture=capture, overwrite=options.overwrite)
            if on_output is not None:
                on_output(still)
        timings["encode"] = time.perf_counter() - t
    finally:
        for claim in claims:
            claim.release()
        outputs.remove_folders([folder for claim in claims for folder in claim.created])  # the empty ones

    size = predicted.shape[1:3]  # what the file holds: an MP4 may be scaled to fit H.264 level 5.1
    if fmt == "mp4":
        size = clipwriter.mp4_size(*size, options.fps, options.max_size)
    return ClipResult(
        photo=photo,
        output=Path(output),
        still=None if still is None else Path(still),
        frames=len(media.play_order(options.frames or len(predicted), pingpong=options.pingpong and fmt != "frames",
                                    reverse=options.reverse)),
        width=size[1],
        height=size[0],
        seconds=time.perf_counter() - start,
        timings=timings,
        motion=moved,
        capped=capped,
        fps=clipwriter.played_fps(fmt, options.fps),
    )


def _check_outputs(photo: Path, out: Path, still: Path | None, options: ClipOptions) -> None:
    """Refuse before any work what outputs.check_job refuses: the photo itself (under any name or link),
    a still on the clip, anything but a regular file or a folder of frames, an existing output without
    overwrite."""
    from .clipwriter import still_format
    from .errors import output_error
    from .outputs import check_job

    if still is not None:
        still_format(still)  # before any work, not after the clip is written
    problem = check_job(photo, out, still, folder=options.fmt == "frames", overwrite=options.overwrite)
    if problem is not None:
        raise output_error(*problem)
