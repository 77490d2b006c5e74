"""How far a clip's frames move, in pixels of the photo: the per-photo motion score.

The first and last frames are compared tile by tile with phase correlation (the shift that best aligns
the two tiles, to a fraction of a pixel), on a copy of the frames shrunk to at most `WORK_SIDE` pixels a
side. Tiles without texture say nothing and are left out. The score is the shift of the tile that moves
most among the textured ones, after the `OUTLIERS` that move most are set aside (a stray tile does not
decide it), scaled back to the photo's size: a sharp photo (frames that do not move) scores about 0, and
a runner crossing a still street scores the runner's travel, not the street's.

Frames are FxHxWx3 (float32 sRGB 0..1 or uint8), or any sequence of HxWx3 arrays in time order.
"""

from __future__ import annotations

import numpy as np

WORK_SIDE = 512  # frames are compared at most this large
TILE = 64  # tile side at that size; tiles overlap by half
MIN_TILE = 16  # a photo under this on its short side scores 0: too small to tell a shift
TEXTURE = 0.02  # a tile whose luminance varies less than this (std, 0..1) is left out
OUTLIERS = 1  # the most-moving textured tile is set aside


def motion_px(frames) -> float:
    """How far the frames move between the first and the last, in pixels of the frames (0 for one frame).
    A travel head's frames (rendering.Motion) say it from their travel (`moved_px`), where phase
    correlation read 0.0 px for an object of 16-64 px on a still camera (training/still.py's cases)."""
    if hasattr(frames, "moved_px"):
        return frames.moved_px()
    if len(frames) < 2:
        return 0.0
    a, b = _luma(frames[0]), _luma(frames[len(frames) - 1])
    scale = max(1, int(np.ceil(max(a.shape) / WORK_SIDE)))
    a, b = _shrink(a, scale), _shrink(b, scale)
    side = min(TILE, *a.shape)  # a photo smaller than a tile is one tile
    if side < MIN_TILE:
        return 0.0
    tiles = [(slice(y, y + side), slice(x, x + side)) for y in range(0, a.shape[0] - side + 1, side // 2)
             for x in range(0, a.shape[1] - side + 1, side // 2)]
    tiles = [t for t in tiles if min(a[t].std(), b[t].std()) >= TEXTURE]  # textured in both frames
    if not tiles:
        return 0.0
    shifts = np.sort(np.hypot(*_shifts(np.stack([a[t] for t in tiles]), np.stack([b[t] for t in tiles]))))
    return float(shifts[max(0, len(shifts) - 1 - OUTLIERS)]) * scale


def _luma(frame) -> np.ndarray:
    f = np.asarray(frame)
    f = f.astype(np.float32) / 255 if f.dtype == np.uint8 else f.astype(np.float32, copy=False)
    return f @ np.array([0.299, 0.587, 0.114], np.float32)


def _shrink(img: np.ndarray, s: int) -> np.ndarray:
    """Mean over s x s blocks (the edge that does not fill a block is dropped)."""
    if s == 1:
        return img
    h, w = img.shape[0] // s * s, img.shape[1] // s * s
    return img[:h, :w].reshape(h // s, s, w // s, s).mean(axis=(1, 3))


def _shifts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) that move each tile of a (NxTxT) onto the same tile of b: the peak of their phase
    correlation, refined to a fraction of a pixel by a parabola through the peak and its neighbours; all
    tiles in one batch of FFTs."""
    n, h, w = a.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    fa = np.fft.fft2((a - a.mean((1, 2), keepdims=True)) * window)
    fb = np.fft.fft2((b - b.mean((1, 2), keepdims=True)) * window)
    cross = fb * np.conj(fa)
    r = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    k = np.arange(n)
    py, px = np.unravel_index(r.reshape(n, -1).argmax(1), (h, w))
    mid = r[k, py, px]
    out = []
    for p, size, left, right in ((py, h, r[k, (py - 1) % h, px], r[k, (py + 1) % h, px]),
                                 (px, w, r[k, py, (px - 1) % w], r[k, py, (px + 1) % w])):
        denom = left - 2 * mid + right
        curved = denom < -1e-12  # a peak: refine it; else keep the whole pixel
        frac = np.where(curved, 0.5 * (left - right) / np.where(curved, denom, -1.0), 0.0)
        d = p + np.clip(frac, -0.5, 0.5)
        out.append(np.where(d > size / 2, d - size, d))
    return out[0], out[1]
