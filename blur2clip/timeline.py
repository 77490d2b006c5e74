"""Frames at any instants of the exposure, from the frames the network predicts.

The network predicts K frames; frame k stands for the k-th of K equal windows of the exposure, centred at
t = (k + 0.5) / K (t runs from 0 to 1 over the exposure). A clip of N frames shows the instants at the
centres of N equal windows, t_j = (j + 0.5) / N (`instants`), the same rule that picks the true frames a
prediction is scored against. `resample(frames, n)` gives those N frames as a lazy sequence: each is made
when it is asked for, so 48 frames of a 24 MP photo never sit in memory together.

Between the two predicted frames around an instant, a pixel is blended only where the two agree; where
they differ by more than a little (an edge that moved) it takes the nearer frame whole. A frame therefore
never shows a moving thing twice: where the motion between two predicted frames is too large to blend,
the clip holds sharp and steps instead. The blend is done on the sRGB values: for two values that agree
to within 0.08 it is the linear-light blend to within 1/255, so the frames still average back to the
photo, at a fraction of the cost. The other modes are there to measure against: "linear" blends
everywhere, in linear light (ghosts where motion is large); "nearest" holds each predicted frame.

Arrays are FxHxWx3 (float32 sRGB 0..1, or uint8) in and HxWx3 of the same dtype out, in time order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MODES = ("guarded", "linear", "nearest")
GAMMA = 2.2
AGREE = 0.02  # a pixel whose two frames differ by less than this (sRGB, 0..1) is blended fully
DIFFER = 0.08  # ... by more than this: the nearer frame is taken whole; in between, a mix of the two
BAND_PIXELS = 2**19  # pixels blended at once


def instants(n: int) -> np.ndarray:
    """The centres of n equal windows of the exposure, in 0..1."""
    return (np.arange(n) + 0.5) / n


def neighbours(k: int, t: float) -> tuple[int, int, float]:
    """(a, b, u): the predicted frames a <= b around instant t (of k frames) and how far t is from a to b."""
    x = float(np.clip(t * k - 0.5, 0, k - 1))  # position in units of predicted frames
    a = int(np.floor(x))
    b = min(a + 1, k - 1)
    return a, b, x - a


class Instants(Sequence):
    """n frames, the k-th at the k-th of `instants(n)`, each made when asked for (`_at(t)`, t in 0..1)."""

    n: int

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(self.n))]
        if not -self.n <= j < self.n:
            raise IndexError(j)
        return self._at(float(instants(self.n)[j % self.n]))

    def _at(self, t: float) -> np.ndarray:
        raise NotImplementedError


class Timeline(Instants):
    """n frames at `instants(n)` made on demand from K predicted frames (FxHxWx3, float32 or uint8)."""

    def __init__(self, frames: np.ndarray, n: int, mode: str = "guarded"):
        if mode not in MODES:
            raise ValueError(f"unknown interpolation {mode!r}; one of {', '.join(MODES)}")
        if n < 1 or len(frames) < 1:
            raise ValueError(f"need frames to resample and n >= 1, got {len(frames)} frames and n={n}")
        self.frames, self.n, self.mode = frames, n, mode

    def _at(self, t: float) -> np.ndarray:
        a, b, u = neighbours(len(self.frames), t)
        if self.mode == "nearest" or a == b or u < 1e-6 or u > 1 - 1e-6:
            return self.frames[b if u >= 0.5 else a]
        return _blend(self.frames[a], self.frames[b], u, self.mode == "guarded")


def resample(frames: np.ndarray, n: int, mode: str = "guarded") -> np.ndarray | Timeline:
    """The frames at n instants: `frames` itself when n equals its count, else a lazy `Timeline`; a travel
    head's rendering.Motion renders the n instants exactly (mode does not apply)."""
    if n == len(frames):
        return frames
    at = getattr(frames, "at", None)  # rendering.Motion
    return at(n) if at is not None else Timeline(frames, n, mode)


def _blend(fa: np.ndarray, fb: np.ndarray, u: float, guarded: bool) -> np.ndarray:
    """Two frames blended at u, a band of rows at a time: its float32 work stays about 25 MB at any size."""
    out = np.empty(fa.shape, np.uint8 if fa.dtype == np.uint8 else np.float32)
    rows = max(1, BAND_PIXELS // max(1, fa.shape[-2]))
    for y in range(0, len(out), rows):
        out[y:y + rows] = _blend_band(fa[y:y + rows], fb[y:y + rows], u, guarded)
    return out


def _blend_band(fa: np.ndarray, fb: np.ndarray, u: float, guarded: bool) -> np.ndarray:
    integer = fa.dtype == np.uint8
    scale = 255.0 if integer else 1.0
    a, b = fa.astype(np.float32, copy=False), fb.astype(np.float32, copy=False)
    if guarded:  # nearer + share of the other, where the two agree
        nearer, far, w = (a, b, u) if u < 0.5 else (b, a, 1 - u)
        d = np.abs(a - b)
        share = np.maximum(np.maximum(d[..., :1], d[..., 1:2]), d[..., 2:])  # HxWx1: how far the two differ
        share -= DIFFER * scale
        share *= -w / ((DIFFER - AGREE) * scale)
        np.clip(share, 0, w, out=share)  # w where they agree, 0 (the nearer frame whole) where they differ
        out = far - nearer
        out *= share
        out += nearer
    else:  # everywhere, in linear light
        la, lb = np.clip(a / scale, 0, 1) ** GAMMA, np.clip(b / scale, 0, 1) ** GAMMA
        out = (la + u * (lb - la)) ** (1 / GAMMA) * scale
    if integer:
        out += 0.5
        return np.clip(out, 0, 255, out=out).astype(np.uint8)
    return out
