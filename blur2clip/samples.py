"""What a training or evaluation sample is, and the endless streams that make them.

A sample is one `BlurSample`: (blurred 3xSxS, frames Fx3xSxS, clean 3xSxS) in sRGB 0..1, where `frames` is
1x3xSxS when only the middle frame is known (gopro, pairs) and `clean` is the blur before the input's
camera degradations. It is a named tuple, so a DataLoader stacks a batch of them into one of the same
type and `blurred, frames, clean = sample` reads it.

- `SyntheticBlur`: sharp photos given synthetic motion (`synth.synthesize`);
- `FootageBlur`: blurs made from real consecutive frames (sequences, videos) or given (gopro, pairs).

Sample i of a stream is a pure function of (seed, i), so a run resumed at step s reads exactly the samples
it would have read, and `StreamSampler` shares one stream among several processes by index.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from .footage import FrameSequence, read_frames
from .synth import SynthConfig, degrade, synthesize, to_linear, to_srgb


class BlurSample(NamedTuple):
    blurred: torch.Tensor  # 3xHxW, the input the model sees
    frames: torch.Tensor  # Fx3xHxW ground truth in time order, or 1x3xHxW: the middle frame only
    clean: torch.Tensor  # 3xHxW, the blur before noise / highlights / JPEG
    # 2xHxW px: how far each pixel travels over the exposure (synth.py), NaN where not known (real frames)
    travel: torch.Tensor | None = None


def decode_rgb(path: Path) -> np.ndarray:
    """A photo's pixels as HxWx3 uint8, as stored (training material; `media.read_photo` reads users' photos)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """n x h x w x 3 uint8 -> n x 3 x h x w float 0..1."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


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


class SyntheticBlur(torch.utils.data.Dataset):
    """Sample i: a random photo given random motion, seeded by (seed, i); up to three more photos of the list
    give the moving foreground layers. device: where the motion is rendered (a GPU: see synth.py); the
    samples come back on the CPU, as a DataLoader's workers hand them over."""

    def __init__(self, photos: list[Path], synth: SynthConfig, seed: int = 0, cache: bool = True,
                 device: str = "cpu"):
        if not photos:
            raise ValueError("no photos to synthesize from")
        self.photos, self.synth, self.seed, self.cache, self.device = list(photos), synth, seed, cache, device
        self._decoded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return 2**62  # an endless stream; the sampler decides where to start

    def _photo(self, j: int) -> np.ndarray:
        if j not in self._decoded:
            img = decode_rgb(self.photos[j])
            if not self.cache:
                return img
            self._decoded[j] = img
        return self._decoded[j]

    def __getitem__(self, i: int) -> BlurSample:
        rng = np.random.default_rng([self.seed, i])
        pick = rng.integers(len(self.photos), size=4)
        s = synthesize(self._photo(int(pick[0])), rng, self.synth,
                       layer_photos=[self._photo(int(j)) for j in pick[1:]], device=self.device)
        return BlurSample(s.blurred.cpu(), s.frames.cpu(), s.clean.cpu(), s.travel.cpu())


def synthetic_sample(photo: np.ndarray, seed: list[int], cfg: SynthConfig) -> BlurSample:
    """One photo given the motion that `seed` draws (its own layers): the fixed samples of evaluation."""
    s = synthesize(photo, np.random.default_rng(seed), cfg)
    return BlurSample(s.blurred, s.frames, s.clean, s.travel)


# ---------------------------------------------------------------- blurs from real frames

def split_weights(n: int, frames: int) -> torch.Tensor:
    """F x N: how much of each of N sub-frames goes into each of F frames (each row sums to 1). When N is not
    a multiple of F, a sub-frame is shared by two frames in proportion."""
    edges_f = np.arange(frames + 1) / frames
    edges_s = np.arange(n + 1) / n
    lo = np.maximum(edges_f[:-1, None], edges_s[None, :-1])
    hi = np.minimum(edges_f[1:, None], edges_s[None, 1:])
    return torch.from_numpy(np.clip(hi - lo, 0, None) * frames).float()


def blur_sample(sub: torch.Tensor, frames: int):
    """N x 3 x h x w sharp sub-frames (sRGB) -> (ground truth F x 3 x h x w, clean blur 3 x h x w, its linear):
    the blur is their average in linear light, and the F frames split the same time into equal parts, so they
    average back to the blur exactly."""
    lin = to_linear(sub)
    gt = torch.einsum("fn,nchw->fchw", split_weights(len(sub), frames), lin)
    clean = lin.mean(0)
    return to_srgb(gt), to_srgb(clean), clean


class FootageBlur(torch.utils.data.Dataset):
    """Blurs made from real consecutive frames (sequences, videos) or given (gopro, pairs), cropped to `size`.

    train=True: random crops, flips, and the input-only camera degradations of `synth`; sample i is seeded
    by (seed, i) and picks a sequence in proportion to its windows. train=False: `sample` at given starts.
    """

    def __init__(self, seqs: list[FrameSequence], n: int, frames: int, size: int | None, seed: int = 0,
                 train: bool = True, synth: SynthConfig | None = None):
        self.seqs, self.n, self.frames, self.size, self.seed, self.train = list(seqs), n, frames, size, seed, train
        self.synth = synth or SynthConfig()
        self.weights = np.array([s.window_count(n) for s in self.seqs], dtype=np.float64)
        if not self.weights.sum():
            raise ValueError("no sequence is long enough for one blur")
        self.weights /= self.weights.sum()
        self._warned = False

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i: int) -> BlurSample:
        for attempt in range(20):  # a damaged frame is skipped: the next draw of the same stream replaces it
            rng = np.random.default_rng([self.seed, i, attempt])
            seq = self.seqs[int(rng.choice(len(self.seqs), p=self.weights))]
            start = seq.first + int(rng.integers(seq.window_count(self.n)))
            try:
                return self.sample(seq, start, rng)
            except OSError as e:
                if not self._warned:
                    warnings.warn(f"skipping a sample: {e}", stacklevel=2)
                    self._warned = True
        raise OSError("20 samples in a row could not be read")

    def sample(self, seq: FrameSequence, start: int, rng: np.random.Generator | None = None) -> BlurSample:
        """The sample whose exposure starts at frame `start` (gopro, pairs: the blurred photo `start`)."""
        w, h = seq.size
        s = self.size
        if s and (w < s or h < s):
            raise ValueError(f"{seq.name}: frames of {w}x{h} are smaller than the {s}px samples")
        cw, ch = (s, s) if s else (w, h)
        if rng is None:
            x, y = (w - cw) // 2, (h - ch) // 2
        else:
            x, y = int(rng.integers(w - cw + 1)), int(rng.integers(h - ch + 1))
        box = (x, y, cw, ch)
        if seq.blurs:
            blurred = to_tensor(read_frames(replace(seq, frames=seq.blurs), start, 1, box))[0]
            gt, clean = to_tensor(read_frames(seq, start, 1, box)), blurred
        else:
            gt, clean, clean_lin = blur_sample(to_tensor(read_frames(seq, start, self.n, box)), self.frames)
            blurred = degrade(clean_lin, rng, self.synth) if rng is not None and self.train else clean
        if rng is not None and self.train:
            if rng.random() < 0.5:
                blurred, gt, clean = blurred.flip(-1), gt.flip(-1), clean.flip(-1)
            if rng.random() < 0.2:
                blurred, gt, clean = blurred.flip(-2), gt.flip(-2), clean.flip(-2)
        unknown = torch.full((2, *blurred.shape[1:]), float("nan"))
        return BlurSample(blurred.contiguous(), gt.contiguous(), clean.contiguous(), unknown)
