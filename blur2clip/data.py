"""Training, validation and evaluation data from a folder in any of six layouts.

- photos: sharp photos given synthetic motion (`synth`), the default weights' data;
- sequences, gopro, videos: real high-frame-rate footage (`footage`);
- pairs: a blurred photo beside its sharp middle frame, NAME_blur*.png beside NAME_sharp*.png;
- clips: real blurred photos beside all their true frames, for evaluation only (`footage.scan_clips`).

`open_data(root)` detects the layout (or takes it), checks the folder once (broken or short sequences are
skipped and listed) and gives the training stream, the fixed validation set and the evaluation samples.
Sample i of a training stream is a pure function of (seed, i), so a run resumed at step s reads exactly
the samples it would have read, and several processes share the stream by taking every world-th index.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import footage
from .footage import IMAGE_SUFFIXES as PHOTO_SUFFIXES
from .footage import FootageBlur
from .synth import SynthConfig, synthesize

LAYOUTS = {
    "photos": "sharp photos, given synthetic motion",
    "sequences": "folders of consecutive sharp frames (GoPro_Large_all)",
    "gopro": "blur/ or blur_gamma/ beside sharp/ per sequence (GoPro_Large); middle frame only",
    "pairs": "NAME_blur*.png beside NAME_sharp*.png, the sharp middle frame of each blur; middle frame only",
    "videos": "high-frame-rate videos, decoded with ffmpeg",
    "clips": "blurry/NAME.png beside its true frames frames/NAME.mp4 (or frames/NAME/); evaluation only",
}



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
    """(training photos, validation photos): one in `every` by a hash of its name; when the hash holds out
    none (a small folder), the last photo. A lone photo is held out, leaving nothing to train on."""
    return _hold_out(photos, lambda p: p, every)


def _hold_out(items: list, path_of, every: int = 10) -> tuple[list, list]:
    val = [x for x in items if is_held_out(path_of(x), every)] or items[-1:]
    return [x for x in items if x not in val], val


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


def detect_layout(root: str | Path) -> str:
    """The layout of a data folder: clips, gopro, videos, sequences or photos (see LAYOUTS)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    if footage.clip_dirs(root):
        return "clips"
    files = [p for p in root.rglob("*") if not p.name.startswith(".") and p.is_file()]
    if any(p.parent.name == "sharp" and any((p.parent.parent / d).is_dir() for d in ("blur", "blur_gamma"))
           for p in files):
        return "gopro"
    if any(p.suffix.lower() in footage.VIDEO_SUFFIXES for p in files):
        return "videos"
    images = [p for p in files if p.suffix.lower() in PHOTO_SUFFIXES]
    if not images:
        raise ValueError(f"{root}: no photos, frame sequences or videos found")
    paired = footage.find_pairs(images)
    if paired and 2 * len(paired) >= len(images) / 2:  # at least half of the images are in pairs
        return "pairs"
    return "sequences" if _consecutive(images) else "photos"


def _consecutive(images: list[Path], pairs: int = 6) -> bool:
    """Whether neighbouring images of a folder look like consecutive video frames rather than photos."""
    folders: dict[Path, list[Path]] = {}
    for p in images:
        folders.setdefault(p.parent, []).append(p)
    votes = []
    for folder in sorted(folders)[:3]:
        names = sorted(folders[folder], key=footage.natural_key)
        mid = len(names) // 2
        for a, b in zip(names[mid:mid + pairs // 2], names[mid + 1:mid + 1 + pairs // 2]):
            try:
                with Image.open(a) as ia, Image.open(b) as ib:
                    if ia.size != ib.size:
                        votes.append(False)
                        continue
                    ta, tb = (np.asarray(i.convert("L").resize((32, 32)), dtype=np.float32) / 255 for i in (ia, ib))
            except Exception:  # an unreadable file: decided by the others
                continue
            votes.append(float(np.abs(ta - tb).mean()) < 0.06)
    return bool(votes) and sum(votes) > len(votes) / 2


@dataclass
class Data:
    """A checked data folder: what trains, what validates, and what was skipped."""

    root: Path
    layout: str
    sequences: list  # every photo (Path) or footage.Sequence, for evaluation
    train: list  # the part that trains (sequences may be cut in time when there is only one)
    val: list  # the part held out for validation
    skipped: list[str] = field(default_factory=list)
    frames_per_blur: int = 7  # sub-frames averaged into one blur (sequences, videos)
    frames: int = 7  # ground-truth frames per blur

    @property
    def middle_only(self) -> bool:
        """Only the middle frame is known (gopro, pairs): trains stage 1, scores the middle frame and the
        reblur."""
        return self.layout in ("gopro", "pairs")

    def summary(self) -> list[str]:
        """A few lines for the terminal: layout, counts, resolution, frames per blur, what was skipped."""
        n = self.frames_per_blur
        if self.layout == "photos":
            lines = [f"{self.root}: photos (synthetic motion): {len(self.train)} for training, "
                     f"{len(self.val)} held out for validation"]
        elif self.layout == "pairs":
            sizes = sorted({s.size for s in self.sequences})
            res = "x".join(map(str, sizes[0])) + (f" to {'x'.join(map(str, sizes[-1]))}" if len(sizes) > 1 else "")
            lines = [f"{self.root}: pairs ({LAYOUTS['pairs']})",
                     f"  {_count(len(self.sequences), 'pair')}: {len(self.train)} for training, {len(self.val)} "
                     f"held out for validation; {res}; middle frame known only (trains stage 1)"]
        elif self.layout == "clips":
            counts = sorted({s.count for s in self.sequences})
            per = f"{counts[0]}" + (f" to {counts[-1]}" if len(counts) > 1 else "")
            lines = [f"{self.root}: clips ({LAYOUTS['clips']})",
                     f"  {_count(len(self.sequences), 'blurred photo')} with {per} true frames each, "
                     f"scored at the centres of {self.frames} windows"]
        else:
            sizes = sorted({s.size for s in self.sequences})
            res = "x".join(map(str, sizes[0])) + (f" to {'x'.join(map(str, sizes[-1]))}" if len(sizes) > 1 else "")
            per = ("1 blurred photo per sample, middle frame known only (trains stage 1)" if self.middle_only
                   else f"{n} frames per blur into {self.frames} frames")
            samples = sum(s.windows(n) for s in self.train)
            lines = [f"{self.root}: {self.layout} ({LAYOUTS[self.layout]})",
                     f"  {_count(len(self.train), 'sequence')} for training ({_count(samples, 'sample')}), "
                     f"{len(self.val)} for validation; {res}; {per}"]
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)}: " + "; ".join(self.skipped[:5])
                         + (" …" if len(self.skipped) > 5 else ""))
        return lines

    def check_crop(self, crop: int) -> None:
        """ValueError when footage frames are smaller than the training crop (photos are rescaled)."""
        small = [s for s in self.train if self.layout != "photos" and min(s.size) < crop]
        if small:
            w, h = small[0].size
            raise ValueError(f"{small[0].name}: frames of {w}x{h} are smaller than the {crop} px training crop")

    def train_set(self, crop: int, seed: int, synth: dict | None = None) -> torch.utils.data.Dataset:
        """The endless training stream; `synth` overrides SynthConfig fields (the motion and camera
        statistics of synthetic samples, and the input degradations of footage)."""
        cfg = SynthConfig(size=crop, frames=self.frames, **(synth or {}))
        if self.layout == "photos":
            return SyntheticBlur(self.train, cfg, seed=seed)
        return FootageBlur(self.train, self.frames_per_blur, self.frames, crop, seed=seed, synth=cfg)

    def make_validation(self, count: int, size: int, seed: int = 12345) -> dict:
        """`count` fixed samples of `size` px from the held-out part, as stacked tensors."""
        if self.layout == "photos":
            ds = SyntheticBlur(self.val, SynthConfig(size=size, frames=self.frames), seed=seed, cache=False)
        else:
            size = min(size, *(min(s.size) for s in self.val))
            ds = FootageBlur(self.val, self.frames_per_blur, self.frames, size, seed=seed, train=False)
        items = [ds[i] for i in range(count)]
        return {k: torch.stack([it[j] for it in items]) for j, k in enumerate(("blurred", "frames", "clean"))}

    def validation(self, path: Path, count: int = 48, size: int = 256) -> dict:
        """The validation set cached at `path`: made once, then read back so every run scores the same."""
        from safetensors import safe_open
        from safetensors.torch import load_file, save

        key = f"{self.layout}:{self.frames_per_blur}:{self.frames}:{count}:{size}:{len(self.val)}"
        if path.is_file():
            with safe_open(str(path), framework="pt") as f:
                stored = (f.metadata() or {}).get("data")
            if stored == key or (stored is None and self.layout == "photos"):  # None: made before layouts
                return load_file(str(path))
        val = self.make_validation(count, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        # written as bytes, so the file gets the mode the umask gives (safetensors' own files are 0600)
        tmp.write_bytes(save({k: v.contiguous() for k, v in val.items()}, metadata={"data": key}))
        tmp.replace(path)
        return val

    def scored(self, all_photos: bool = False) -> list:
        """What evaluation scores: every sequence, pair or clip; of photos the held-out ones (the others may
        have trained the weights), or all of them with `all_photos`."""
        return self.val if self.layout == "photos" and not all_photos else self.sequences

    def items(self, per_sequence: int = 4, size: int | None = None, all_photos: bool = False):
        """Evaluation samples over what `scored` gives, in a fixed order: (name, blurred 3xHxW, frames
        Fx3xHxW or 1x3xHxW, clean 3xHxW). Footage is scored at full frame unless `size` asks for centred
        crops; photos get `size` px synthetic samples (256 by default)."""
        if self.layout == "photos":
            cfg = SynthConfig(size=size or 256, frames=self.frames)
            for photo in self.scored(all_photos):
                j = self.sequences.index(photo)  # the sample of a photo does not depend on what else is scored
                image = read_photo(photo)
                for k in range(per_sequence):
                    s = synthesize(image, np.random.default_rng([12345, j, k]), cfg)
                    yield photo.relative_to(self.root).as_posix(), s.blurred, s.frames, s.clean
            return
        if self.layout == "clips":
            for seq in self.sequences:
                yield (seq.name, *footage.clip_sample(seq, self.frames, size))
            return
        ds = FootageBlur(self.sequences, self.frames_per_blur, self.frames, size, train=False)
        for seq in self.sequences:
            for start in footage.evaluation_windows(seq, self.frames_per_blur, per_sequence):
                yield (seq.name, *ds.sample(seq, start))

    def count_items(self, per_sequence: int = 4, all_photos: bool = False) -> int:
        """How many samples `items` yields."""
        if self.layout == "photos":
            return len(self.scored(all_photos)) * per_sequence
        if self.layout == "clips":
            return len(self.sequences)
        return sum(len(footage.evaluation_windows(s, self.frames_per_blur, per_sequence)) for s in self.sequences)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def open_data(root: str | Path, layout: str = "auto", frames_per_blur: int = 7, frames: int = 7) -> Data:
    """Scan a data folder (layout "auto" detects it); ValueError names the folder and what is wrong."""
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    elif not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    if frames_per_blur < frames and layout in ("sequences", "videos"):
        raise ValueError(f"{frames_per_blur} frames per blur cannot make {frames} frames; give at least {frames}")
    if layout == "photos":
        photos = list_photos(root)
        if not photos:
            raise ValueError(f"{root}: no photos found")
        train, val = split_photos(photos)
        return Data(root, layout, photos, train, val, frames_per_blur=frames_per_blur, frames=frames)
    if layout == "pairs":
        seqs, skipped = footage.scan_pairs(root)
        if not seqs:
            why = f" ({'; '.join(skipped[:3])})" if skipped else ""
            raise ValueError(f"{root}: no NAME_blur*.png beside a NAME_sharp*.png of the same size{why}")
        train, val = _hold_out(seqs, lambda s: Path(s.name))
        return Data(root, layout, seqs, train, val, skipped, frames_per_blur, frames)
    if layout == "sequences":
        seqs, skipped = footage.scan_sequences(root, frames_per_blur)
    elif layout == "gopro":
        seqs, skipped = footage.scan_gopro(root)
    elif layout == "clips":
        if not footage.clip_dirs(root):
            raise ValueError(f"{root}: a clips folder holds blurry/ (or blurred/, blur/) beside frames/")
        seqs, skipped = footage.scan_clips(root)
        if not seqs:
            why = f" ({'; '.join(skipped[:3])})" if skipped else ""
            raise ValueError(f"{root}: no usable clip{why}")
        return Data(root, layout, seqs, [], seqs, skipped, frames_per_blur, frames)
    else:
        seqs, skipped = footage.scan_videos(root, frames_per_blur)
    if not seqs:
        why = f" ({'; '.join(skipped[:3])})" if skipped else ""
        raise ValueError(f"{root}: no usable {layout} sequence{why}")
    train, val = footage.split_sequences(seqs, 1 if layout == "gopro" else frames_per_blur, is_held_out)
    return Data(root, layout, seqs, train, val, skipped, frames_per_blur, frames)
