"""Photo -> frames: device, precision, tiling with direction alignment, and the single-photo job.

`Extractor` loads the network once and turns an HxWx3 float32 sRGB 0..1 image into FxHxWx3 frames
(F = 7 for the shipped weights; frame F//2 is the middle of the exposure). Big photos run in
overlapping tiles that are feathered together; before a tile is blended its frame order (forward or
reversed: one blurred photo cannot tell) is aligned with the frames already placed beside it, so the
whole clip runs in one direction of time and tiles never average into ghosts. Tiles go row by row and
only one band of tile rows is kept in float32, so a 24 MP photo fits in a few GB.

`make_clip` is the whole job for one photo: read it, run the extractor, write the clip (and a still).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .motion import motion_px
from . import CLIP_FPS, CLIP_FRAMES

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MIN_TILE = 128  # out-of-memory retries halve the tile down to this
_OOM = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


# ----------------------------------------------------------------------------------------------------
# Device and precision


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available, then mps, then cpu; anything else is checked and returned."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS is not available here")
    return dev


def pick_precision(precision: str, device: torch.device) -> str:
    """'auto' -> fp32 on CPU, bf16 on CUDA where supported (else fp16), fp16 on MPS; names are checked."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp16" if device.type == "mps" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of auto, {', '.join(PRECISIONS)}")
    return precision


# ----------------------------------------------------------------------------------------------------
# Tiling geometry


def tile_spans(size: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of the tiles along one axis of `size` pixels (one span when tile is 0 or size <= tile).

    As few tiles as fit `tile`, spread evenly over the axis, neighbours overlapping by at least
    `overlap`: a 1280 px side in tiles of at most 512 becomes three 480 px tiles, not 512 + 512 + 512
    with one mostly wasted. Tiles start at multiples of `multiple` (the network's padding multiple), so
    each sees the network's downsampling grid exactly as the whole image does and tiled results match
    untiled ones. All tiles have one length (a multiple of `multiple`, at most `tile`) except the last,
    which runs to the border and is less than `multiple` longer.
    """
    if tile <= 0 or size <= tile:
        return [(0, size)]
    if tile - overlap < 2 * multiple:
        multiple = 1
    slack = overlap + multiple - 1  # rounding starts down to the grid may shrink an overlap by multiple - 1
    n = max(2, math.ceil((size - slack) / (tile - slack)))
    while True:  # n tiles of `length` cover the axis with every overlap >= slack (before rounding)
        length = -(-math.ceil((size + (n - 1) * slack) / n) // multiple) * multiple
        if length <= tile:
            break
        n += 1
    span = size - length  # the starts spread over 0..span
    starts = sorted({i * span // (n - 1) // multiple * multiple for i in range(n)})
    return [(s, s + length) for s in starts[:-1]] + [(starts[-1], size)]


def ramp_weights(spans: list[tuple[int, int]], i: int) -> np.ndarray:
    """Blend weights (float32, length of span i) along one axis: 1 inside, cosine ramps where span i
    overlaps its neighbours (none at the image border). Neighbouring ramps are complementary, so the
    weights of overlapping tiles sum to 1; the blender still divides by the sum, which covers the rare
    place where three tiles overlap."""
    start, stop = spans[i]
    w = np.ones(stop - start, np.float32)
    if i > 0:  # ramp up over the overlap with the previous span
        n = spans[i - 1][1] - start
        w[:n] *= _ramp(n)
    if i + 1 < len(spans):  # ramp down over the overlap with the next span
        n = stop - spans[i + 1][0]
        w[len(w) - n :] *= _ramp(n)[::-1]
    return w


def _ramp(n: int) -> np.ndarray:
    t = (np.arange(n, dtype=np.float32) + 0.5) / n  # strictly inside 0..1: no pixel gets weight 0
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# The extractor


class Extractor:
    """Loads the weights once; turns photos into frames.

    weights: a weights name or file (None: the shipped default), or pass a ready `model` instead.
    device: 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps'. precision: 'auto' | 'fp32' | 'bf16' | 'fp16'
    (autocast; falls back to fp32 for good if a reduced-precision result has NaN/Inf or comes out black).
    tile: largest tile side in px; images no bigger than tile x tile (and all when tile is 0) run whole
    in one pass. overlap: px shared by neighbouring tiles, at least the blur length (at most half the
    tile: larger values are cut to that). The defaults (512 / 64) ran 720p faster than one whole pass
    on a 2-core CPU (cache) and bound memory for big photos. threads: torch CPU threads when > 0 (a
    process-wide setting).

    Attributes: device (torch.device), precision (the one in use), tile/overlap (as in use: an
    out-of-memory retry halves the tile), align (True: align each tile's direction of time with its
    placed neighbours; switch off only to see why it is needed), batch (tiles per forward pass),
    on_tile (None, or a function called as on_tile(done, total) after each pass over tiles: progress).
    """

    def __init__(
        self,
        weights=None,
        device: str = "auto",
        precision: str = "auto",
        tile: int = 512,
        overlap: int = 64,
        model=None,
        threads: int = 0,
    ):
        if tile < 0 or (tile and tile < 32):
            raise ValueError(f"tile {tile}: use 0 (whole image) or at least 32 px")
        if overlap < 0:
            raise ValueError(f"overlap {overlap}: use 0 or more px")
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        self.precision = pick_precision(precision, self.device)
        if model is None:
            from . import weights as weights_module

            model = weights_module.load_model(weights, device="cpu")
        self.model = self._place(model.eval())
        config = getattr(model, "config", None)
        self.multiple = getattr(config, "multiple", 1)
        self.tile, self.overlap = tile, min(overlap, tile // 2) if tile else overlap
        self.align = True
        self.batch = 1 if self.device.type == "cpu" else 4  # several tiles per pass pay off on a GPU only
        self.on_tile = None

    def _place(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        if self.device.type != "mps":
            model = model.to(memory_format=torch.channels_last)
        return model

    def __call__(self, image: np.ndarray, dtype=np.float32) -> np.ndarray:
        """HxWx3 sRGB image (float 0..1, or uint8) -> FxHxWx3 frames in one direction of time.

        dtype np.float32 (default): values clamped to 0..1. dtype np.uint8: the same frames quantised as
        round(255 * v), built band by band, so a 24 MP photo never holds float32 frames (2 GB) at once.
        """
        image = _as_image(image)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.uint8):
            raise ValueError(f"dtype {dtype}: use float32 or uint8")
        while True:
            try:
                return self._extract(image, dtype)
            except _OOM:
                self._shrink(image.shape[:2])

    def many(self, images: list[np.ndarray], dtype=np.float32) -> list[np.ndarray]:
        """Frames of several photos (as __call__). Photos of one size that fit one pass share a forward
        pass (a GPU's batch); any other mix runs one photo at a time."""
        images = [_as_image(i) for i in images]
        dtype = np.dtype(dtype)
        h, w, _ = images[0].shape
        one_pass = not self.tile or h * w <= self.tile**2
        if len(images) > 1 and one_pass and all(i.shape == images[0].shape for i in images):
            try:
                return [_convert(f, dtype) for f in self._forward(images)]
            except _OOM:
                self._shrink((h, w))
        return [self(i, dtype) for i in images]

    # -- one forward pass over a batch of same-sized tiles ---------------------------------------------

    def _forward(self, tiles: list[np.ndarray]) -> np.ndarray:
        """B tiles (hxwx3 float32) -> BxFxhxwx3 float32, not clamped; reruns in fp32 when needed."""
        x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2)  # Bx3xhxw
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        y = self._run(x, self.precision)
        if self.precision != "fp32" and _looks_broken(y, x):
            log.warning("%s output was not usable (NaN/Inf or black); using fp32 from now on", self.precision)
            self.precision = "fp32"
            y = self._run(x, "fp32")
        return np.ascontiguousarray(y.permute(0, 1, 3, 4, 2).cpu().numpy())  # BxFxhxwx3

    def _run(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        with torch.inference_mode():
            if precision == "fp32":
                y = self.model(x)
            else:
                with torch.autocast(self.device.type, dtype=_DTYPES[precision]):
                    y = self.model(x)
            return y.float()  # BxFx3xhxw

    def _shrink(self, size: tuple[int, int]) -> None:
        """After running out of memory: fewer tiles per pass, then half the tile, then the CPU."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        current = self.tile or max(size)
        if self.batch > 1:
            self.batch = 1
        elif current > MIN_TILE:
            self.tile = max(MIN_TILE, current // 2 // 16 * 16)
            self.overlap = min(self.overlap, self.tile // 2)
        elif self.device.type != "cpu":
            log.warning("out of memory on %s even at %d px tiles; running on the CPU", self.device, current)
            self.device, self.precision = torch.device("cpu"), "fp32"
            self.model = self._place(self.model)
        else:
            raise MemoryError(f"out of memory even at {current} px tiles on the CPU")
        log.warning("out of memory: retrying with %s px tiles, %d per pass", self.tile, self.batch)

    # -- tiles, alignment and blending ------------------------------------------------------------------

    def _extract(self, image: np.ndarray, dtype: np.dtype) -> np.ndarray:
        h, w, _ = image.shape
        ys = tile_spans(h, self.tile, self.overlap, self.multiple)
        xs = tile_spans(w, self.tile, self.overlap, self.multiple)
        if len(ys) == len(xs) == 1:  # fits one tile: the whole image in one pass
            return _convert(self._forward([image])[0], dtype)

        band = max(stop - start for start, stop in ys)  # rows of the float32 band being blended
        out = acc = None  # FxHxWx3 result (dtype), Fxbandxwx3 float32 weighted sums
        wsum = np.zeros((band, w), np.float32)  # their summed blend weights
        wy_rows = [ramp_weights(ys, r) for r in range(len(ys))]
        wx_cols = [ramp_weights(xs, c) for c in range(len(xs))]
        passed, total = 0, len(ys) * len(xs)
        for r, (y0, y1) in enumerate(ys):
            top = ys[r - 1][1] - y0 if r else 0  # rows of this tile row already blended from above
            for cols in _batches(xs, self.batch):
                frames = self._forward([image[y0:y1, xs[c][0] : xs[c][1]] for c in cols])  # BxFxhxwx3
                passed += len(cols)
                if self.on_tile is not None:
                    self.on_tile(passed, total)
                if acc is None:
                    out = np.empty((frames.shape[1], h, w, 3), dtype)
                    acc = np.zeros((frames.shape[1], band, w, 3), np.float32)
                for c, tile_frames in zip(cols, frames):
                    x0, x1 = xs[c]
                    left = xs[c - 1][1] - x0 if c else 0  # columns already blended from the left
                    region = np.s_[: y1 - y0, x0:x1]
                    if self.align and (top or left):
                        tile_frames = _aligned(tile_frames, acc[:, : y1 - y0, x0:x1], wsum[region], top, left)
                    wt = np.outer(wy_rows[r], wx_cols[c])  # hxw
                    tile_frames *= wt[None, :, :, None]
                    acc[:, : y1 - y0, x0:x1] += tile_frames
                    wsum[region] += wt
            # Rows above the next tile row are final: write them out, shift the rest up the band.
            done = (ys[r + 1][0] if r + 1 < len(ys) else h) - y0
            for a in range(0, done, 64):  # in slices, to keep the temporaries small
                b = min(done, a + 64)
                out[:, y0 + a : y0 + b] = _convert(acc[:, a:b] / wsum[a:b, :, None], dtype)
            if r + 1 < len(ys):
                keep = band - done
                acc[:, :keep] = acc[:, done:]
                acc[:, keep:] = 0
                wsum[:keep] = wsum[done:]
                wsum[keep:] = 0
        return out


def _batches(spans: list[tuple[int, int]], size: int):
    """Consecutive span indices in groups of at most `size`, each group of one tile length."""
    group: list[int] = []
    for i, (start, stop) in enumerate(spans):
        if group and (len(group) == size or stop - start != spans[group[0]][1] - spans[group[0]][0]):
            yield group
            group = []
        group.append(i)
    yield group


def _aligned(frames: np.ndarray, acc: np.ndarray, wsum: np.ndarray, top: int, left: int) -> np.ndarray:
    """The tile's frames (Fxhxwx3), reversed if that agrees better with the blend already placed in its
    top `top` rows and left `left` columns (acc: weighted sums Fxhxwx3, wsum: their weights hxw)."""
    fwd = rev = 0.0
    for region in (np.s_[:top, :], np.s_[top:, :left]):
        placed = acc[(slice(None), *region)] / wsum[region][None, :, :, None]  # Fxh'xw'x3
        if placed.size:
            tile = frames[(slice(None), *region)]
            fwd += float(np.abs(tile - placed).sum())
            rev += float(np.abs(tile[::-1] - placed).sum())
    return np.ascontiguousarray(frames[::-1]) if rev < fwd else frames


def _looks_broken(y: torch.Tensor, x: torch.Tensor) -> bool:
    """Reduced precision failed: NaN/Inf anywhere, or black frames from an input that is not black."""
    if not torch.isfinite(y).all():
        return True
    return bool(y.amax() < 0.5 / 255 and x.amax() > 1 / 255)


def _as_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image of shape {image.shape}: expected HxWx3")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255
    return np.ascontiguousarray(image, dtype=np.float32)


def _convert(frames: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Fresh float32 frames (clamped in place, NaN -> 0) -> float32 0..1, or uint8 as round(255 * v)
    (the rounding of media.to_uint8)."""
    np.fmax(frames, 0, out=frames)  # fmax/fmin drop NaN (-> 0), unlike clip
    np.fmin(frames, 1, out=frames)
    if dtype == np.uint8:
        frames *= 255
        frames += 0.5
        return frames.astype(np.uint8)
    return frames


def extract_frames(image: np.ndarray, weights=None, frames: int | None = None, **kw) -> np.ndarray:
    """One-shot: HxWx3 float32 sRGB 0..1 -> FxHxWx3 float32 0..1: the network's own frames, or `frames`
    instants of the exposure made from them (timeline.resample); kw: the Extractor's options."""
    from .timeline import resample

    out = Extractor(weights, **kw)(image)
    return out if frames is None else np.stack(list(resample(out, frames)))



# ----------------------------------------------------------------------------------------------------
# The single-photo job


@dataclass
class ClipResult:
    """What make_clip wrote: output (file, or folder for 'frames'), still (or None), frames in the clip
    as played, frame size in px, total seconds, seconds per step (load, decode, model, encode), and the
    motion score: how far the frames move, in pixels (about 0 for a photo without motion blur)."""

    photo: Path
    output: Path
    still: Path | None
    frames: int
    width: int
    height: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    motion: float = 0.0  # how far the frames move, in pixels of the clip (motion.motion_px)
    capped: bool = False  # a GIF or WebP shrunk to media.ANIMATED_MAX_SIZE, no max_size being given


def downscale(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """HxWx3 float32 0..1 -> the same, shrunk (Lanczos) so the long side is at most max_size px."""
    h, w = image.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return image
    from PIL import Image

    s = max_size / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize(size, Image.LANCZOS))
                for c in range(3)]  # PIL "F" images: float32, one per channel
    return np.clip(np.stack(channels, axis=-1), 0, 1).astype(np.float32, copy=False)


def load_image(photo, max_size: int | None = None, max_pixels: int | None = None):
    """A photo file -> (HxWx3 float32 sRGB 0..1, shrunk so its long side is at most max_size; its capture
    metadata as a capture.Capture: EXIF, XMP, when, where, which camera)."""
    from . import media

    picture = media.read_photo(photo, max_pixels=max_pixels)
    return downscale(picture.pixels, max_size), picture.capture


def render(frames: np.ndarray, out, fmt: str, *, count: int | None = None, fps: float = CLIP_FPS,
           pingpong: bool = True, loops: int = 1, reverse: bool = False, overwrite: bool = False,
           quality: str = "high", crf: int | None = None, capture=None) -> Path:
    """KxHxWx3 uint8 frames from the network -> the clip at `out` (atomically) of `count` instants of the
    exposure made from them (default: the K frames), played forward, then back when pingpong (a folder of
    frames holds each instant once: ping-pong is playback). quality, crf, capture: clipwriter.write_clip's."""
    from . import clipwriter, media
    from .timeline import resample

    frames = resample(frames, count or len(frames))  # made as the writer takes them
    order = media.play_order(len(frames), pingpong=pingpong and fmt != "frames", reverse=reverse)
    return Path(clipwriter.write_clip(_Played(frames, order), out, fmt, fps=fps, loops=loops,
                                      overwrite=overwrite, quality=quality, crf=crf, capture=capture))


class _Played:
    """The frames in play order, each made once when first asked for and kept while all of them fit in
    PLAYED_BYTES (then made again when asked again: a 24 MP photo's 24 frames would take 1.7 GB)."""

    def __init__(self, frames, order: list[int]):
        self.frames, self.order, self.kept = frames, order, {}
        first = np.asarray(frames[order[0]])
        self.keep = first.nbytes * len(set(order)) <= PLAYED_BYTES

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> np.ndarray:
        j = self.order[i]
        if j in self.kept:
            return self.kept[j]
        frame = np.asarray(self.frames[j])
        if self.keep:
            self.kept[j] = frame
        return frame


PLAYED_BYTES = 512 * 2**20


def make_clip(
    photo,
    out=None,
    *,
    fmt: str | None = None,
    frames: int | None = CLIP_FRAMES,
    fps: float = CLIP_FPS,
    pingpong: bool = True,
    loops: int = 1,
    reverse: bool = False,
    still=None,
    max_size: int | None = None,
    overwrite: bool = False,
    quality: str = "high",
    crf: int | None = None,
    metadata: bool = True,
    extractor: Extractor | None = None,
    weights=None,
    device: str = "auto",
    precision: str = "auto",
    tile: int = 512,
    max_pixels: int | None = None,
    on_output=None,
) -> ClipResult:
    """One blurred photo -> a clip of its sharp frames (mp4, gif, webp, or a folder of frames).

    out: the clip's path (default: beside the photo, media.default_output); fmt: from out's suffix
    unless given. frames: instants of the exposure the clip shows (3..96; None: the network's own
    frames). The clip plays them forward, then back when pingpong (reverse: the other way), `loops`
    times, at `fps`. still: a path for the middle frame as a photo (JPEG, PNG or TIFF, sRGB profile).
    max_size: shrink the photo first so its long side is at most this (faster, smaller clip); without it
    a GIF or WebP is made at most media.ANIMATED_MAX_SIZE px on its long side (media.clip_max_size).
    quality: "high", "medium" or "low" (clipwriter.write_clip); crf: H.264's rate factor for an mp4.
    metadata: keep the photo's capture metadata (date, camera, GPS; EXIF and XMP in a WebP and the
    still); False strips it all.
    extractor: a loaded Extractor to reuse; otherwise one is made from weights/device/precision/tile.
    on_output(path): called with the clip, then the still, as soon as each is complete (so a caller
    can report the clip even when the still then fails).
    Raises media.MediaError (naming the file) for unreadable photos, existing outputs without
    overwrite, outputs that would replace the photo itself (under any name or link) or anything but a
    regular file, and outputs another run is making (see outputs.Claim). Folders made for the outputs
    are removed again when the job fails.
    """
    from . import clipwriter, media, outputs

    start = time.perf_counter()
    photo = Path(photo)
    out = Path(out) if out is not None else media.default_output(photo, fmt or "mp4")
    fmt = media.clip_format(out, fmt)
    still = Path(still) if still is not None else None
    _check_outputs(photo, out, still, fmt, overwrite)
    claims = [outputs.Claim(path) for path in (out, still) if path is not None]
    try:
        for claim in claims:
            try:
                claim.acquire()
            except outputs.Busy as e:
                raise media.MediaError(claim.out, f"being made by another blur2clip run ({e.owner})") from None
            except OSError as e:
                raise media.MediaError(claim.out, e.strerror or e) from e
        _check_outputs(photo, out, still, fmt, overwrite)  # made meanwhile by another run?

        timings = {"load": 0.0}
        if extractor is None:
            t = time.perf_counter()
            extractor = Extractor(weights, device=device, precision=precision, tile=tile)
            timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        picture = media.read_photo(photo, max_pixels=max_pixels)
        capped = not max_size and max(picture.pixels.shape[:2]) > (media.clip_max_size(fmt, None) or math.inf)
        image = downscale(picture.pixels, media.clip_max_size(fmt, max_size))
        capture = picture.capture if metadata else None
        del picture
        timings["decode"] = time.perf_counter() - t

        t = time.perf_counter()
        predicted = extractor(image, dtype=np.uint8)  # KxHxWx3 uint8
        del image
        timings["model"] = time.perf_counter() - t
        moved = motion_px(predicted)

        t = time.perf_counter()
        output = render(predicted, out, fmt, count=frames, fps=fps, pingpong=pingpong, loops=loops,
                        reverse=reverse, overwrite=overwrite, quality=quality, crf=crf, capture=capture)
        if on_output is not None:
            on_output(output)
        if still is not None:
            still = clipwriter.write_still(predicted[len(predicted) // 2], still, capture=capture,
                                           overwrite=overwrite)
            if on_output is not None:
                on_output(still)
        timings["encode"] = time.perf_counter() - t
    finally:
        for claim in claims:
            claim.release()
        outputs.remove_folders([folder for claim in claims for folder in claim.created])  # the empty ones

    return ClipResult(
        photo=photo,
        output=Path(output),
        still=None if still is None else Path(still),
        frames=len(media.play_order(frames or len(predicted), pingpong=pingpong and fmt != "frames",
                                    reverse=reverse)),
        width=predicted.shape[2],
        height=predicted.shape[1],
        seconds=time.perf_counter() - start,
        timings=timings,
        motion=moved,
        capped=capped,
    )


def _check_outputs(photo: Path, out: Path, still: Path | None, fmt: str, overwrite: bool) -> None:
    """Refuse before any work what outputs.check_job refuses: the photo itself (under any name or link),
    a still on the clip, anything but a regular file or a folder of frames, an existing output without
    overwrite."""
    from .media import MediaError
    from .outputs import check_job

    problem = check_job(photo, out, still, folder=fmt == "frames", overwrite=overwrite)
    if problem is not None:
        raise MediaError(*problem)
