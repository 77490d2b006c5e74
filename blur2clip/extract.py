"""Photo array -> frames: the network over tiles, their direction of time aligned, feathered together.

`Extractor` loads the network once and turns an HxWx3 float32 sRGB 0..1 image (numpy) into FxHxWx3
frames (numpy; F = the network's frames per pass, frame F//2 the middle of the exposure). Big photos run
in overlapping tiles that are feathered together; before a tile is blended its frame order (forward or
reversed: one blurred photo cannot tell) is aligned with the frames already placed beside it, so the
whole clip runs in one direction of time and tiles never average into ghosts.

The network runs in onnxruntime on the CPU or in torch (engine.py picks; torchnet.py is the torch side).
Blending, alignment and the conversion to the output type are written once and run where the engine's
frames are: numpy for onnxruntime (no torch is imported), torch on the extractor's device (on a GPU the
frames stay there until the finished rows are copied out); the engine's `ops` are the few operations
spelled differently. Tiles go row by row and only one band of tile rows is kept in float32 (F x band x
W x 3), so a 24 MP photo never holds all its frames as float32. A travel head's engines give its middle
frame and travel instead (5 channels, one "frame"): they are blended the same way, a tile's direction of
time aligned by the sign of its travel, and the result is a rendering.Motion that renders any instant
when asked for. No files here: `job` reads photos and writes clips.
"""

from __future__ import annotations

import logging
import math
import numbers

import numpy as np

from . import FRAMES_RANGE
from . import engine as engines

log = logging.getLogger(__name__)

MIN_TILE = 128  # out-of-memory retries halve the tile down to this
OUT_ROWS = 64  # finished rows are converted and copied out this many at a time (small temporaries)


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

    weights: a weights name or file (None: the shipped default), or pass a ready torch `model` instead.
    device: 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps' (device.pick; DeviceError when not here).
    precision: 'auto' | 'fp32' | 'bf16' | 'fp16' (torch autocast; falls back to fp32 for good if a
    reduced-precision result has NaN/Inf or comes out black). tile: largest tile side in px; images no
    bigger than tile x tile (and all when tile is 0) run whole in one pass. overlap: px shared by
    neighbouring tiles, at least the blur length (at most half the tile: larger values are cut to that).
    The defaults (512 / 64) ran 720p faster than one whole pass on a 2-core CPU (cache) and bound memory
    for big photos. threads: CPU threads when > 0 (torch's is a process-wide setting). keep_still: the
    still-content guard (keep_still). engine: 'auto' | 'onnx' | 'torch' (engine.load says which runs).

    Attributes: engine ('onnx' or 'torch'), device, precision (the one in use), config (the network's
    ModelConfig, or None for a model without one), tile/overlap (as in use: an out-of-memory retry halves
    the tile), align (True: align each tile's direction of time with its placed neighbours; switch off
    only to see why it is needed), batch (tiles per forward pass), on_tile (None, or a function called as
    on_tile(done, total) after each pass over tiles: progress).
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
        keep_still: bool = True,
        engine: str = "auto",
    ):
        from .errors import SettingsError

        if tile < 0 or (tile and tile < 32):
            raise SettingsError(f"tile {tile}: use 0 (whole image) or at least 32 px")
        if overlap < 0:
            raise SettingsError(f"overlap {overlap}: use 0 or more px")
        if threads < 0:
            raise SettingsError(f"threads {threads}: use 0 (the default) or more")
        self.net = engines.load(weights, model, device, precision, threads, keep_still, engine)
        self.engine, self.config = self.net.engine, self.net.config
        # A travel head's engine gives its middle frame and travel (5 channels), blended as they are; its
        # frames are rendered from them (rendering.Motion), the still guard applied there.
        self.travel, self.keep_still = getattr(self.config, "head", "frames") == "travel", keep_still
        self.multiple = getattr(self.config, "multiple", 1)
        self.tile, self.overlap = tile, min(overlap, tile // 2) if tile else overlap
        self.align = True
        self.batch = self.net.batch  # several tiles per pass pay off on a GPU only
        self.on_tile = None

    device = property(lambda self: self.net.device)
    precision = property(lambda self: self.net.precision)
    model = property(lambda self: getattr(self.net, "model", None))  # the torch module, on the torch engine

    def __call__(self, image: np.ndarray, dtype=np.float32) -> np.ndarray:
        """HxWx3 sRGB image (float 0..1, or uint8) -> FxHxWx3 frames in one direction of time.

        dtype np.float32 (default): values clamped to 0..1 (NaN -> 0). dtype np.uint8: the same frames
        quantised as round(255 * v), built band by band, so a 24 MP photo never holds float32 frames
        (2 GB) at once. A travel head gives a rendering.Motion instead: a sequence of the same F frames,
        each rendered when asked for (np.asarray stacks them; `.at(n)` gives n instants).
        """
        image = _as_image(image)
        dtype = _checked(dtype)
        while True:
            try:
                return self._extract(image, dtype)
            except self.net.out_of_memory:
                self._shrink(image.shape[:2])

    def many(self, images: list[np.ndarray], dtype=np.float32) -> list[np.ndarray]:
        """Frames of several photos (as __call__). Photos of one size that fit one pass share a forward
        pass (a GPU's batch); any other mix runs one photo at a time."""
        images = [_as_image(i) for i in images]
        dtype = _checked(dtype)
        h, w, _ = images[0].shape
        one_pass = not self.tile or h * w <= self.tile**2
        if len(images) > 1 and one_pass and all(i.shape == images[0].shape for i in images):
            try:
                frames = self.net(np.stack(images))  # BxFxhxwx3
                return [self._result(i, self._finish(f, dtype), dtype) for i, f in zip(images, frames)]
            except self.net.out_of_memory:
                self._shrink((h, w))
        return [self(i, dtype) for i in images]

    def free(self) -> None:
        """Give the device's cached memory back (after a photo ran out of it)."""
        self.net.free()

    def _shrink(self, size: tuple[int, int]) -> None:
        """After running out of memory: fewer tiles per pass, then half the tile, then the CPU."""
        self.net.free()
        current = self.tile or max(size)
        if self.batch > 1:
            self.batch = 1
        elif current > MIN_TILE:
            self.tile = max(MIN_TILE, current // 2 // 16 * 16)
            self.overlap = min(self.overlap, self.tile // 2)
        elif self.net.to_cpu():
            log.warning("out of memory even at %d px tiles; running on the CPU", current)
            self.batch = 1
        else:
            raise MemoryError(f"out of memory even at {current} px tiles on the CPU")
        log.warning("out of memory: retrying with %s px tiles, %d per pass", self.tile, self.batch)

    # -- tiles, alignment and blending ------------------------------------------------------------------

    def _extract(self, image: np.ndarray, dtype: np.dtype) -> np.ndarray:
        h, w, _ = image.shape
        ys = tile_spans(h, self.tile, self.overlap, self.multiple)
        xs = tile_spans(w, self.tile, self.overlap, self.multiple)
        ops = self.net.ops
        if len(ys) == len(xs) == 1:  # fits one tile: the whole image in one pass
            return self._result(image, self._finish(self.net(image[None])[0], dtype), dtype)

        band = max(stop - start for start, stop in ys)  # rows of the float32 band being blended
        out = acc = None  # FxHxWx3 result (numpy, dtype); Fxbandxwx3 float32 weighted sums (the engine's)
        wsum = ops.zeros((band, w, 1))  # their summed blend weights
        wy_rows = [ops.put(ramp_weights(ys, r)) for r in range(len(ys))]
        wx_cols = [ops.put(ramp_weights(xs, c)) for c in range(len(xs))]
        passed, total = 0, len(ys) * len(xs)
        passes = self._passes(image, ys, xs)
        for r, (y0, y1) in enumerate(ys):
            top = ys[r - 1][1] - y0 if r else 0  # rows of this tile row already blended from above
            for cols in _batches(xs, self.batch):
                frames = next(passes)  # BxFxhxwx3: the tiles (y0:y1, cols)
                passed += len(cols)
                if self.on_tile is not None:
                    self.on_tile(passed, total)
                if acc is None:
                    out = self._empty((frames.shape[1], h, w, frames.shape[-1]), dtype)
                    acc = ops.zeros((frames.shape[1], band, w, frames.shape[-1]))
                for c, tile_frames in zip(cols, frames):
                    x0, x1 = xs[c]
                    left = xs[c - 1][1] - x0 if c else 0  # columns already blended from the left
                    placed, placed_w = acc[:, : y1 - y0, x0:x1], wsum[: y1 - y0, x0:x1]
                    if self.align and (top or left) and _reversed_fits(ops, self._flip, tile_frames, placed,
                                                                        placed_w, top, left):
                        tile_frames = self._flip(tile_frames)
                    wt = wy_rows[r][:, None, None] * wx_cols[c][None, :, None]  # hxwx1
                    placed += tile_frames * wt
                    placed_w += wt
                del frames
            # Rows above the next tile row are final: convert them and copy them out; shift the rest up.
            done = (ys[r + 1][0] if r + 1 < len(ys) else h) - y0
            for a in range(0, done, OUT_ROWS):
                b = min(done, a + OUT_ROWS)
                self._store(out, y0 + a, y0 + b, self._finish(acc[:, a:b] / wsum[a:b], dtype))
            if r + 1 < len(ys):
                keep = band - done
                acc[:, :keep] = ops.copy(acc[:, done:])
                acc[:, keep:] = 0
                wsum[:keep] = ops.copy(wsum[done:])
                wsum[keep:] = 0
        return self._result(image, out, dtype)

    def _flip(self, frames):
        """A tile's result in the other direction of time: its frames reversed, or its travel negated."""
        if not self.travel:
            return self.net.ops.flip(frames)
        return frames * self.net.ops.put(np.array([1, 1, 1, -1, -1], np.float32))

    def _finish(self, frames, dtype: np.dtype) -> np.ndarray:
        """The engine's blended values as numpy: frames clamped (and quantised for uint8); a travel head's
        middle frame and travel only cleaned of NaN (its frames are clamped when rendered)."""
        if self.travel:
            return self.net.ops.finish(frames, np.float32, clamp=False)
        return self.net.ops.finish(frames, dtype)

    def _empty(self, shape: tuple[int, ...], dtype: np.dtype):
        """Where the finished rows go: FxHxWx3 frames, or a travel head's middle frame (HxWx3) and travel
        (HxWx2), float32, as rendering.Motion takes them (shape: 1xHxWx5)."""
        if not self.travel:
            return np.empty(shape, dtype)
        return np.empty((*shape[1:3], 3), np.float32), np.empty((*shape[1:3], 2), np.float32)

    def _store(self, out, y0: int, y1: int, values: np.ndarray) -> None:
        """Rows y0:y1 of the result from finished values (FxrowsxWxC)."""
        if not self.travel:
            out[:, y0:y1] = values
            return
        middle, travel = out
        middle[y0:y1] = values[0, ..., :3]
        travel[y0:y1] = values[0, ..., 3:]

    def _result(self, image: np.ndarray, out, dtype: np.dtype):
        """What __call__ gives: the frames, or a travel head's rendering.Motion. out: as `_empty` makes it,
        or a whole image's finished values (FxHxWxC)."""
        if isinstance(out, np.ndarray) and self.travel:
            whole, out = out, self._empty(out.shape, dtype)
            self._store(out, 0, whole.shape[1], whole)
        if not self.travel:
            return out
        from .rendering import Motion

        return Motion.guarded(image, *out, self.config.frames, dtype, self.keep_still)

    def _passes(self, image: np.ndarray, ys, xs):
        """The network's frames for the tiles, in the order `_extract` blends them: a pass per batch of
        tiles (`_batches`), row by row. An engine with `lanes` > 1 (onnxruntime on several cores) runs
        that many single tiles side by side, one thread each, the next ones running while a tile is
        blended; at most `lanes` tiles' frames wait at a time; the last ones give onnxruntime's working
        memory back."""
        jobs = [(y0, y1, cols) for y0, y1 in ys for cols in _batches(xs, self.batch)]

        def run(job, **kw):
            y0, y1, cols = job
            return self.net(np.stack([image[y0:y1, xs[c][0] : xs[c][1]] for c in cols]), **kw)

        lanes = getattr(self.net, "lanes", 1)
        if lanes < 2 or len(jobs) < 2:
            yield from map(run, jobs)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(lanes, thread_name_prefix="blur2clip-tile") as pool:
            waiting = deque()
            try:
                for i, job in enumerate(jobs):
                    waiting.append(pool.submit(run, job, lane=True, release=i >= len(jobs) - lanes))
                    if len(waiting) == lanes:
                        yield waiting.popleft().result()
                while waiting:
                    yield waiting.popleft().result()
            finally:  # stopped early (an error, or the generator closed): drop what has not started
                for f in waiting:
                    f.cancel()


def _batches(spans: list[tuple[int, int]], size: int):
    """Consecutive span indices in groups of at most `size`, each group of one tile length."""
    group: list[int] = []
    for i, (start, stop) in enumerate(spans):
        if group and (len(group) == size or stop - start != spans[group[0]][1] - spans[group[0]][0]):
            yield group
            group = []
        group.append(i)
    yield group


def _reversed_fits(ops, flip, frames, acc, wsum, top: int, left: int) -> bool:
    """Whether the tile's frames (FxhxwxC), in the other direction of time (flip), agree better than as
    they are with the blend already placed in its top `top` rows and left `left` columns (acc: weighted
    sums FxhxwxC, wsum: hxwx1)."""
    fwd = rev = 0.0
    for rows, cols in ((slice(0, top), slice(None)), (slice(top, None), slice(0, left))):
        placed = acc[:, rows, cols] / wsum[rows, cols]  # Fxh'xw'x3
        if placed.shape[1] and placed.shape[2]:
            tile = frames[:, rows, cols]
            fwd += ops.l1(tile, placed)
            rev += ops.l1(flip(tile), placed)
    return rev < fwd


def _as_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image of shape {image.shape}: expected HxWx3")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255
    if image.dtype == np.uint16:  # 16 bits per channel, as a PNG or TIFF holds them
        return image.astype(np.float32) / 65535
    if image.dtype.kind not in "f":
        raise ValueError(f"image of {image.dtype}: give floats 0..1, uint8 or uint16")
    image = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(image).all():  # NaN would come out as black frames, without a word
        raise ValueError(f"image has {int(np.size(image) - np.isfinite(image).sum())} values that are not "
                         f"finite (NaN or infinity)")
    low, high = float(image.min()), float(image.max())
    if low < -1 / 16 or high > 1 + 1 / 16:  # 0..255 as floats came out white: a little over (resizing) is fine
        raise ValueError(f"image values run from {low:g} to {high:g}: give floats 0..1 (or uint8)")
    return image


def _checked(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.uint8):
        raise ValueError(f"dtype {dtype}: use float32 or uint8")
    return dtype


def extract_frames(image: np.ndarray, weights=None, frames: int | None = None, **kw) -> np.ndarray:
    """One-shot: HxWx3 float32 sRGB 0..1 -> FxHxWx3 float32 0..1: the network's own frames, or `frames`
    instants of the exposure made from them (timeline.resample); kw: the Extractor's options."""
    from .timeline import resample

    lo, hi = FRAMES_RANGE
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, numbers.Integral)
                               or not lo <= frames <= hi):
        from .errors import SettingsError

        raise SettingsError(f"frames: {frames!r} is not a whole number from {lo} to {hi}")
    out = Extractor(weights, **kw)(image)
    return np.asarray(out) if frames is None else np.stack(list(resample(out, int(frames))))

