"""Training and validation data: synthetic motion over a folder of sharp photos.

Sample i of a run is a pure function of (seed, i), so a run resumed at step s reads exactly the samples
it would have read, and several processes can share the stream by taking every world-th index.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .synth import SynthConfig, synthesize

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def list_photos(root: str | Path) -> list[Path]:
    """Every photo below `root`, sorted, hidden files skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder of photos")
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in PHOTO_SUFFIXES and not any(s.startswith(".") for s in p.parts[-1:]))


def is_held_out(path: Path, every: int = 10) -> bool:
    """One photo in `every`, chosen by a hash of its name (stable across machines), is kept for validation."""
    return int(hashlib.sha1(path.name.encode()).hexdigest(), 16) % every == 0


def split_photos(photos: list[Path], every: int = 10) -> tuple[list[Path], list[Path]]:
    """(training photos, validation photos)."""
    val = [p for p in photos if is_held_out(p, every)]
    return [p for p in photos if not is_held_out(p, every)], val


def read_photo(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class SyntheticBlur(torch.utils.data.Dataset):
    """Sample i: (blurred 3xSxS, frames Fx3xSxS, clean 3xSxS) synthesized from a random photo, seeded by i."""

    def __init__(self, photos: list[Path], synth: SynthConfig, seed: int = 0, cache: bool = True):
        if not photos:
            raise ValueError("no photos to synthesize from")
        self.photos, self.synth, self.seed, self.cache = list(photos), synth, seed, cache
        self._decoded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return 2**62  # an endless stream; the sampler decides where to start

    def _photo(self, j: int) -> np.ndarray:
        if j not in self._decoded:
            img = read_photo(self.photos[j])
            if not self.cache:
                return img
            self._decoded[j] = img
        return self._decoded[j]

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i])
        pick = rng.integers(len(self.photos), size=4)
        s = synthesize(self._photo(int(pick[0])), rng, self.synth,
                       layer_photos=[self._photo(int(j)) for j in pick[1:]])
        return s.blurred, s.frames, s.clean


class StreamSampler(torch.utils.data.Sampler):
    """Indices start, start+world, ... shifted by rank: a resumable, shardable endless stream."""

    def __init__(self, start: int = 0, rank: int = 0, world: int = 1):
        self.start, self.rank, self.world = start, rank, world

    def __iter__(self):
        i = self.start * self.world + self.rank
        while True:
            yield i
            i += self.world

    def __len__(self) -> int:
        return 2**62


def make_validation(photos: list[Path], count: int = 48, size: int = 256, seed: int = 12345) -> dict:
    """A fixed validation set: `count` samples from the held-out photos, as stacked tensors."""
    ds = SyntheticBlur(photos, SynthConfig(size=size), seed=seed, cache=False)
    items = [ds[i] for i in range(count)]
    return {"blurred": torch.stack([b for b, _, _ in items]),
            "frames": torch.stack([f for _, f, _ in items]),
            "clean": torch.stack([c for _, _, c in items])}


def load_or_make_validation(photos: list[Path], path: Path, count: int = 48, size: int = 256) -> dict:
    """The validation set cached at `path` (made once, then read back so every run scores the same)."""
    from safetensors.torch import load_file, save_file

    if path.is_file():
        return load_file(str(path))
    val = make_validation(photos, count, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in val.items()}, str(path))
    return val
