"""Photo array -> frames: the network over tiles, their direction of time aligned, feathered together.

`Extractor` loads the network once and turns an HxWx3 float32 sRGB 0..1 image (numpy) into FxHxWx3
frames (numpy; F = the network's frames per pass, frame F//2 the middle of the exposure). Big photos run
in overlapping tiles that are feathered together; before a tile is blended its frame order (forward or
reversed: one blurred photo cannot tell) is aligned with the frames already placed beside it, so the
whole clip runs in one direction of time and tiles never average into ghosts.

Blending, alignment and the conversion to the output type run in torch on the extractor's device (on a
GPU the frames stay there until the finished rows are copied out). Tiles go row by row and only one band
of tile rows is kept in float32 (F x band x W x 3), so a 24 MP photo never holds all its frames as float32.
No files here: `job` reads photos and writes clips.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from . import device as devices

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


STILL_BELOW, MOVED_ABOVE = 0.03, 0.08  # largest departure from the photo (0..1) near a pixel
STILL_RADIUS = 4  # px: the departure is spread this far, so a moving edge keeps its surroundings


def keep_still(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Where no predicted frame departs from the photo by more than STILL_BELOW anywhere within
    STILL_RADIUS px, the photo itself; above MOVED_ABOVE, the frames; a soft step between.

    x: Bx3xhxw photos, y: BxFx3xhxw frames. The network changes a sharp photo or a still background a
    little in every frame (about 39 dB on sharp photos): this keeps those pixels exactly as they were,
    while the frames of anything that moved (departures far above the thresholds) pass unchanged. Chosen
    on synthetic data (training/still.py; the model card has the figures)."""
    departure = (y - x[:, None]).abs().mean(2).amax(1, keepdim=True)  # Bx1xhxw
    k = 2 * STILL_RADIUS + 1
    departure = torch.nn.functional.max_pool2d(departure, k, 1, STILL_RADIUS)
    departure = torch.nn.functional.avg_pool2d(departure, k, 1, STILL_RADIUS, count_include_pad=False)
    w = ((departure - STILL_BELOW) / (MOVED_ABOVE - STILL_BELOW)).clamp(0, 1)[:, None]  # Bx1x1xhxw
    return x[:, None] + w * (y - x[:, None])


class Extractor:
    """Loads the weights once; turns photos into frames.

    weights: a weights name or file (None: the shipped default), or pass a ready `model` instead.
    device: 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps' (device.pick; DeviceError when not here).
    precision: 'auto' | 'fp32' | 'bf16' | 'fp16' (autocast; falls back to fp32 for good if a
    reduced-precision result has NaN/Inf or comes out black). tile: largest tile side in px; images no
    bigger than tile x tile (and all when tile is 0) run whole in one pass. overlap: px shared by
    neighbouring tiles, at least the blur length (at most half the tile: larger values are cut to that).
    The defaults (512 / 64) ran 720p faster than one whole pass on a 2-core CPU (cache) and bound memory
    for big photos. threads: torch CPU threads when > 0 (a process-wide setting).

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
        keep_still: bool = True,
    ):
        if tile < 0 or (tile and tile < 32):
            raise ValueError(f"tile {tile}: use 0 (whole image) or at least 32 px")
        if overlap < 0:
            raise ValueError(f"overlap {overlap}: use 0 or more px")
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = devices.pick(device)
        self.precision = devices.precision(precision, self.device)
        if model is None:
            from . import weights as weights_module

            model = weights_module.load_model(weights, device="cpu")
        self.model = devices.place(model.eval(), self.device)
        config = getattr(model, "config", None)
        self.multiple = getattr(config, "multiple", 1)
        self.tile, self.overlap = tile, min(overlap, tile // 2) if tile else overlap
        self.align = True
        self.keep_still = keep_still
        self.batch = 1 if self.device.type == "cpu" else 4  # several tiles per pass pay off on a GPU only
        self.on_tile = None

    def __call__(self, image: np.ndarray, dtype=np.float32) -> np.ndarray:
        """HxWx3 sRGB image (float 0..1, or uint8) -> FxHxWx3 frames in one direction of time.

        dtype np.float32 (default): values clamped to 0..1 (NaN -> 0). dtype np.uint8: the same frames
        quantised as round(255 * v), built band by band, so a 24 MP photo never holds float32 frames
        (2 GB) at once.
        """
        image = _as_image(image)
        dtype = _checked(dtype)
        while True:
            try:
                return self._extract(image, dtype)
            except devices.OutOfMemory:
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
                frames = self._forward(images)  # BxFx3xhxw
                return [to_array(f.permute(0, 2, 3, 1), dtype, fresh=True) for f in frames]
            except devices.OutOfMemory:
                self._shrink((h, w))
        return [self(i, dtype) for i in images]

    # -- one forward pass over a batch of same-sized tiles ---------------------------------------------

    def _forward(self, tiles: list[np.ndarray]) -> torch.Tensor:
        """B tiles (hxwx3 float32) -> BxFx3xhxw float32 on the device, not clamped; reruns in fp32 when
        needed."""
        x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2)  # Bx3xhxw
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        y = self._run(x, self.precision)
        if self.precision != "fp32" and _looks_broken(y, x):
            log.warning("%s output was not usable (NaN/Inf or black); using fp32 from now on", self.precision)
            self.precision = "fp32"
            y = self._run(x, "fp32")
        return keep_still(x.float(), y) if self.keep_still else y

    def _run(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        with torch.inference_mode():
            if precision == "fp32":
                y = self.model(x)
            else:
                with torch.autocast(self.device.type, dtype=devices.DTYPES[precision]):
                    y = self.model(x)
            return y.float()  # BxFx3xhxw

    def _shrink(self, size: tuple[int, int]) -> None:
        """After running out of memory: fewer tiles per pass, then half the tile, then the CPU."""
        devices.free(self.device)
        current = self.tile or max(size)
        if self.batch > 1:
            self.batch = 1
        elif current > MIN_TILE:
            self.tile = max(MIN_TILE, current // 2 // 16 * 16)
            self.overlap = min(self.overlap, self.tile // 2)
        elif self.device.type != "cpu":
            log.warning("out of memory on %s even at %d px tiles; running on the CPU", self.device, current)
            self.device, self.precision = torch.device("cpu"), "fp32"
            self.model = devices.place(self.model, self.device)
        else:
            raise MemoryError(f"out of memory even at {current} px tiles on the CPU")
        log.warning("out of memory: retrying with %s px tiles, %d per pass", self.tile, self.batch)

    # -- tiles, alignment and blending ------------------------------------------------------------------

    def _extract(self, image: np.ndarray, dtype: np.dtype) -> np.ndarray:
        h, w, _ = image.shape
        ys = tile_spans(h, self.tile, self.overlap, self.multiple)
        xs = tile_spans(w, self.tile, self.overlap, self.multiple)
        if len(ys) == len(xs) == 1:  # fits one tile: the whole image in one pass
            return to_array(self._forward([image])[0].permute(0, 2, 3, 1), dtype, fresh=True)

        dev = self.device
        band = max(stop - start for start, stop in ys)  # rows of the float32 band being blended
        out = acc = None  # FxHxWx3 result (numpy, dtype); Fxbandxwx3 float32 weighted sums (torch, on dev)
        wsum = torch.zeros((band, w, 1), dtype=torch.float32, device=dev)  # their summed blend weights
        wy_rows = [torch.from_numpy(ramp_weights(ys, r)).to(dev) for r in range(len(ys))]
        wx_cols = [torch.from_numpy(ramp_weights(xs, c)).to(dev) for c in range(len(xs))]
        passed, total = 0, len(ys) * len(xs)
        with torch.inference_mode():
            for r, (y0, y1) in enumerate(ys):
                top = ys[r - 1][1] - y0 if r else 0  # rows of this tile row already blended from above
                for cols in _batches(xs, self.batch):
                    frames = self._forward([image[y0:y1, xs[c][0] : xs[c][1]] for c in cols])  # BxFx3xhxw
                    passed += len(cols)
                    if self.on_tile is not None:
                        self.on_tile(passed, total)
                    if acc is None:
                        out = np.empty((frames.shape[1], h, w, 3), dtype)
                        acc = torch.zeros((frames.shape[1], band, w, 3), dtype=torch.float32, device=dev)
                    for c, tile_frames in zip(cols, frames):
                        tile_frames = tile_frames.permute(0, 2, 3, 1)  # Fxhxwx3 (a view)
                        x0, x1 = xs[c]
                        left = xs[c - 1][1] - x0 if c else 0  # columns already blended from the left
                        placed, placed_w = acc[:, : y1 - y0, x0:x1], wsum[: y1 - y0, x0:x1]
                        if self.align and (top or left) and _reversed_fits(tile_frames, placed, placed_w,
                                                                            top, left):
                            tile_frames = tile_frames.flip(0)
                        wt = torch.outer(wy_rows[r], wx_cols[c]).unsqueeze(-1)  # hxwx1
                        placed.addcmul_(tile_frames, wt)
                        placed_w += wt
                    del frames
                # Rows above the next tile row are final: convert them and copy them out; shift the rest up.
                done = (ys[r + 1][0] if r + 1 < len(ys) else h) - y0
                for a in range(0, done, OUT_ROWS):
                    b = min(done, a + OUT_ROWS)
                    out[:, y0 + a : y0 + b] = _finished(acc[:, a:b], wsum[a:b], dtype)
                if r + 1 < len(ys):
                    keep = band - done
                    acc[:, :keep] = acc[:, done:].clone()
                    acc[:, keep:] = 0
                    wsum[:keep] = wsum[done:].clone()
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


def _finished(acc: torch.Tensor, wsum: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """Final rows of the band (acc: weighted sums Fxrxwx3, changed in place; wsum: their weights rxwx1) as
    numpy frames: float32 0..1, or uint8 round(255 v); NaN -> 0. Four passes over the rows, none of them
    a new float32 copy: acc * (scale / wsum) + offset, then fmax with 0 (which also drops NaN), fmin with
    the top, then the conversion."""
    top = 255.0 if dtype == np.uint8 else 1.0
    scale = top / wsum  # rxwx1: small
    torch.addcmul(torch.tensor(0.5 if dtype == np.uint8 else 0.0, device=acc.device), acc, scale, out=acc)
    torch.fmax(acc, torch.tensor(0.0, device=acc.device), out=acc)
    torch.fmin(acc, torch.tensor(top, device=acc.device), out=acc)
    frames = acc.to(torch.uint8) if dtype == np.uint8 else acc  # truncation of v + 0.5: round half up
    return frames.cpu().numpy()


def _reversed_fits(frames: torch.Tensor, acc: torch.Tensor, wsum: torch.Tensor, top: int, left: int) -> bool:
    """Whether the tile's frames (Fxhxwx3), reversed, agree better than as they are with the blend already
    placed in its top `top` rows and left `left` columns (acc: weighted sums Fxhxwx3, wsum: hxwx1)."""
    fwd = rev = 0.0
    for rows, cols in ((slice(0, top), slice(None)), (slice(top, None), slice(0, left))):
        placed = acc[:, rows, cols] / wsum[rows, cols]  # Fxh'xw'x3
        if placed.numel():
            tile = frames[:, rows, cols]
            fwd += float(torch.dist(tile, placed, 1))  # the sum of |tile - placed|, in one pass
            rev += float(torch.dist(tile.flip(0), placed, 1))
    return rev < fwd


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


def _checked(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.uint8):
        raise ValueError(f"dtype {dtype}: use float32 or uint8")
    return dtype


def to_array(frames: torch.Tensor, dtype: np.dtype, fresh: bool = False) -> np.ndarray:
    """Float frames (...xHxWx3, any device) -> numpy on the CPU: float32 clamped to 0..1 (NaN -> 0, +Inf
    -> 1), or uint8 as round(255 * v). Converted on the frames' own device, so a GPU sends the smaller
    result. fresh: the tensor is a temporary that may be changed in place."""
    with torch.inference_mode():
        frames = frames if fresh else frames.clone()
        frames = frames.nan_to_num_(nan=0.0).clamp_(0, 1)
        if dtype == np.uint8:
            frames = frames.mul_(255).add_(0.5).to(torch.uint8)  # truncation of v + 0.5: round half up
        return frames.contiguous().cpu().numpy()


def extract_frames(image: np.ndarray, weights=None, frames: int | None = None, **kw) -> np.ndarray:
    """One-shot: HxWx3 float32 sRGB 0..1 -> FxHxWx3 float32 0..1: the network's own frames, or `frames`
    instants of the exposure made from them (timeline.resample); kw: the Extractor's options."""
    from .timeline import resample

    out = Extractor(weights, **kw)(image)
    return out if frames is None else np.stack(list(resample(out, frames)))
