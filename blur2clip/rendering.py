"""A travel head's frames at any instant, rendered in numpy from its middle frame and travel.

A travel head (model.py) predicts the middle frame of the exposure and how far each pixel travels over
it; the frame at instant t (0..1 of the exposure) shows at p what the middle frame shows at
p - (t - 1/2) * travel: bilinear, the edge pixels repeated beyond the border, as `model.render` (which
trains it) does with torch. The engines return those 5 channels per tile, extract.py blends them, and
`Motion` renders the instants a clip asks for one at a time, a band of rows at a time: memory does not
grow with the frame count (a 24 MP photo holds its middle frame and travel, not 21 frames), and every
instant is exact, not blended from its neighbours.

The still-content guard (`guard_weight`, the rule of torchnet.keep_still) is decided once per photo from
the rendered frames at the first, middle and last of the head's instants: where none departs from the
photo by more than STILL_BELOW within STILL_RADIUS px, every frame is the photo itself. When that is most
of the photo (a subject moving before a still background), a frame is the photo made once, with only
the pixels the guard lets move rendered into it: the same values, a fraction of the work.

No torch here: the onnxruntime path renders with numpy alone.
"""

from __future__ import annotations

from functools import cache, cached_property

import numpy as np

from .device import cpu_cores
from .timeline import Instants, instants

STILL_BELOW, MOVED_ABOVE = 0.03, 0.08  # largest departure from the photo (0..1) near a pixel
STILL_RADIUS = 4  # px: the departure is spread this far, so a moving edge keeps its surroundings
BAND_PIXELS = 2**18  # pixels rendered at once (the float32 work of a band stays about 20 MB)
SPARSE_BELOW = 0.4  # render only the pixels the guard lets move when they are less than this share


class Motion(Instants):
    """n frames (`len`, `self[k]`: the k-th of n instants, `timeline.instants`) rendered when asked for
    from a photo's middle frame and travel, in `dtype` (float32 0..1, or uint8 rounded half up).

    photo: HxWx3 float32 (the input, for the guard); middle: the middle frame, HxWx3 float32 (not
    clamped); travel: HxWx2 float32 px (x, y); weight: HxWx1 float32, how much of each frame
    departs from the photo (the guard; None: all of it). `at(m)` is the same motion at m instants;
    np.asarray(motion) stacks all n frames. Frames are made a band of rows at a time: a 24 MP photo never
    holds a float32 frame beside these arrays."""

    def __init__(self, photo, middle, travel, n: int, dtype=np.float32, weight=None):
        self.photo, self.middle, self.travel, self.n, self.dtype, self.weight = photo, middle, travel, n, \
            np.dtype(dtype), weight

    @classmethod
    def guarded(cls, photo, middle, travel, n: int, dtype=np.float32, guard: bool = True) -> "Motion":
        """The motion with the still guard decided from its first, middle and last of n instants."""
        motion = cls(photo, middle, travel, n, dtype)
        if guard:
            taus = [instants(n)[k] - 0.5 for k in sorted({0, n // 2, n - 1})]  # -1/2 .. 1/2
            departure = np.empty(photo.shape[:2], np.float32)  # the largest, mean over colour

            def band(rows):
                y0, y1 = rows
                here = photo[y0:y1]
                departure[y0:y1] = np.max([_colour_mean(np.abs(motion._band(t, y0, y1) - here)) for t in taus], 0)

            _each_on_cores(band, motion._bands())
            motion.weight = guard_weight(departure)
        return motion

    def _at(self, t: float) -> np.ndarray:
        return self.frame(t - 0.5)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n, *self.travel.shape[:2], 3)

    def at(self, n: int) -> "Motion":
        """The same motion at n instants."""
        return Motion(self.photo, self.middle, self.travel, n, self.dtype, self.weight)

    def __array__(self, dtype=None, copy=None):
        out = np.stack(list(self))
        return out if dtype is None else out.astype(dtype)

    def moved_px(self) -> float:
        """The motion score (motion.motion_px) read from the travel: how far the frames move from the first
        instant to the last, px, where the still guard lets them depart from the photo; the 99th percentile
        over the pixels, so a subject of a few percent of the photo scores its own travel and a stray pixel
        does not decide it (every other pixel of every other row, which is plenty for a percentile)."""
        travel, weight = self.travel[::2, ::2], None if self.weight is None else self.weight[::2, ::2, 0]
        reach = np.hypot(travel[..., 0], travel[..., 1]) * ((self.n - 1) / self.n)  # first to last instant
        if weight is not None:
            reach *= weight
        return percentile(reach, 99)

    def frame(self, tau: float) -> np.ndarray:
        """HxWx3 in self.dtype: the guarded, clamped frame at instant tau (-1/2 .. 1/2); its bands (or the
        moving pixels' runs) are made on every core (numpy lets go of the GIL for this work)."""
        if self._moving is not None:
            return self._sparse_frame(tau)
        out = np.empty(self.shape[1:], self.dtype)

        def band(rows):
            y0, y1 = rows
            f = self._band(tau, y0, y1)
            if self.weight is not None:
                here = self.photo[y0:y1]
                f -= here
                f *= self.weight[y0:y1]
                f += here
            out[y0:y1] = self._finished(f)

        _each_on_cores(band, self._bands())
        return out

    def _finished(self, f: np.ndarray) -> np.ndarray:
        """Float32 values made what a frame holds (in place): NaN 0, clamped, for uint8 scaled and offset
        by a half (then truncated when stored: round half up)."""
        np.nan_to_num(f, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(f, 0, 1, out=f)
        if self.dtype == np.uint8:
            f *= 255
            f += 0.5
        return f

    @cached_property
    def _moving(self) -> np.ndarray | None:
        """The flat indices of the pixels the guard lets depart from the photo (weight > 0), when they are
        fewer than SPARSE_BELOW of it; None when every pixel is rendered (no guard, or most move)."""
        if self.weight is None:
            return None
        moves = self.weight.reshape(-1) > 0
        if np.count_nonzero(moves) >= SPARSE_BELOW * moves.size:
            return None
        return np.flatnonzero(moves).astype(np.int64 if moves.size >= 2**31 else np.int32)

    @cached_property
    def _still(self) -> np.ndarray:
        """The photo as a frame (what the guard makes of a pixel that may not move)."""
        still = np.empty(self.shape[1:], self.dtype)
        still[:] = self._finished(self.photo.copy())
        return still

    def _sparse_frame(self, tau: float) -> np.ndarray:
        """frame() when few pixels move: the photo as a frame with the moving pixels rendered into it, each
        value as the band-wise rendering makes it (where the guard's weight is 0 that is the photo too)."""
        moving, out = self._moving, self._still.copy()
        h, w, _ = self.middle.shape
        flat, photo = out.reshape(h * w, 3), self.photo.reshape(h * w, 3)
        t = np.float32(tau)

        def run(span):
            at = moving[span[0]:span[1]]
            if tau == 0:
                f = self.middle.reshape(h * w, 3).take(at, axis=0)
            else:
                d = self.travel.reshape(h * w, 2).take(at, axis=0)
                x = (at % w).astype(np.float32) - t * d[:, 0]
                f = self._sample(x, (at // w).astype(np.float32) - t * d[:, 1])
            here = photo.take(at, axis=0)
            f -= here
            f *= self.weight.reshape(h * w, 1).take(at, axis=0)
            f += here
            flat[at] = self._finished(f)

        step = max(1, min(BAND_PIXELS, -(-len(moving) // cpu_cores())))
        _each_on_cores(run, [(i, min(len(moving), i + step)) for i in range(0, len(moving), step)])
        return out

    def render(self, tau: float) -> np.ndarray:
        """HxWx3 float32: the middle frame moved to instant tau (not guarded, not clamped)."""
        return np.concatenate([self._band(tau, y0, y1) for y0, y1 in self._bands()])

    def _bands(self):
        h, w = self.travel.shape[:2]
        rows = max(1, min(BAND_PIXELS // max(1, w), -(-h // cpu_cores())))  # at least one band per core
        return [(y0, min(h, y0 + rows)) for y0 in range(0, h, rows)]

    def _band(self, tau: float, y0: int, y1: int) -> np.ndarray:
        """Rows y0:y1 of the middle frame moved to instant tau: (y1 - y0) x W x 3 float32."""
        w = self.middle.shape[1]
        if tau == 0:
            return self.middle[y0:y1].copy()
        d, t = self.travel[y0:y1], np.float32(tau)
        x = np.arange(w, dtype=np.float32) - t * d[..., 0]  # where the middle frame shows p's content
        y = np.arange(y0, y1, dtype=np.float32)[:, None] - t * d[..., 1]
        return self._sample(x, y)

    def _sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The middle frame at positions (x, y) px (float32 arrays of one shape, taken as scratch): ... x 3
        float32, bilinear, the edge pixels repeated beyond the border."""
        h, w, _ = self.middle.shape
        np.clip(x, 0, w - 1, out=x)
        np.clip(y, 0, h - 1, out=y)
        xa, ya = x.astype(np.int32), y.astype(np.int32)  # floor: x, y >= 0
        x -= xa  # the fractions
        y -= ya
        fx, fy = x[..., None], y[..., None]
        right = (xa < w - 1).astype(np.int32)  # the four pixels around (x, y), the last row and column repeated
        at = ya * w
        at += xa
        below = at + (ya < h - 1) * w
        pixels = self.middle.reshape(h * w, 3)  # a pixel's 3 colours in one gather: faster than 3 planes

        def across(at):  # the pixel at `at` blended with its right neighbour by fx (in place, no temporaries)
            out = pixels.take(at, axis=0)
            at += right
            step = pixels.take(at, axis=0)
            step -= out
            step *= fx
            out += step
            return out

        top, bottom = across(at), across(below)
        bottom -= top
        bottom *= fy
        bottom += top
        return bottom

    def shrunk(self, size: tuple[int, int]) -> "Motion":
        """The same motion at size (H, W) (Lanczos): the travel also scaled to the new pixels."""
        h, w = self.travel.shape[:2]
        if (h, w) == tuple(size):
            return self
        travel = _resized(self.travel, size) * np.array([size[1] / w, size[0] / h], np.float32)
        weight = None if self.weight is None else np.clip(_resized(self.weight, size), 0, 1)
        return Motion(_resized(self.photo, size), _resized(self.middle, size), travel, self.n, self.dtype, weight)


def _colour_mean(a: np.ndarray) -> np.ndarray:
    """a.mean(-1) of ...x3 float32, the same values (summed in the same order) a dozen times faster: numpy
    reduces a last axis of 3 slowly."""
    return (a[..., 0] + a[..., 1] + a[..., 2]) / np.float32(3)


def percentile(a: np.ndarray, q: float) -> float:
    """np.percentile(a, q) (linear between the two nearest ranks) by a partial sort, without importing
    numpy.ma as np.percentile does (15 ms of the command's start)."""
    a = a.ravel()
    k = q / 100 * (a.size - 1)
    lo = int(k)
    hi = min(lo + 1, a.size - 1)
    part = np.partition(a, [lo, hi])
    return float(part[lo] + (part[hi] - part[lo]) * (k - lo))


def _each_on_cores(work, parts: list) -> None:
    """work(part) for every part, side by side on the cores (one part: in this thread)."""
    if len(parts) > 1:
        list(_pool().map(work, parts))
    elif parts:
        work(parts[0])


@cache
def _pool():
    """The threads that make a frame's bands side by side, one per core this process may use."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(cpu_cores(), thread_name_prefix="blur2clip-render")


def _resized(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWxC float32 at size (H, W), Lanczos, a channel at a time (PIL "F" images: values kept as they are)."""
    from PIL import Image

    wh = (size[1], size[0])
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c])).resize(wh, Image.LANCZOS))
                     for c in range(a.shape[-1])], -1)


def guard_weight(departure: np.ndarray) -> np.ndarray:
    """HxWx1 float32: torchnet.keep_still's blend weight from the frames' largest departure from the photo
    (HxW, mean over colour), spread by a max then a box mean over (2 * STILL_RADIUS + 1) px, each a pass
    per axis, the window cut at the border (as torch's max_pool2d and avg_pool2d without the padding).
    Two HxW arrays at a time beside `departure`."""
    r, d = STILL_RADIUS, departure
    for axis in (0, 1):
        d = _window(d, r, axis, np.maximum)
    for axis in (0, 1):
        d = _window(d, r, axis, np.add)
        n = d.shape[axis]
        i = np.arange(n)
        count = (np.minimum(i, r) + np.minimum(n - 1 - i, r) + 1).astype(np.float32)  # the window's size
        d /= count[:, None] if axis == 0 else count[None, :]
    d -= STILL_BELOW
    d /= MOVED_ABOVE - STILL_BELOW
    return np.clip(d, 0, 1, out=d)[..., None]


def _window(a: np.ndarray, r: int, axis: int, op) -> np.ndarray:
    """op (np.maximum or np.add) over a window of r px each side along axis, cut at the border: a new array."""
    out = a.copy()
    n = a.shape[axis]
    for s in range(1, min(r, n - 1) + 1):
        lo, hi = [slice(None)] * 2, [slice(None)] * 2
        lo[axis], hi[axis] = slice(0, n - s), slice(s, n)
        lo, hi = tuple(lo), tuple(hi)
        op(out[lo], a[hi], out=out[lo])
        op(out[hi], a[lo], out=out[hi])
    return out
