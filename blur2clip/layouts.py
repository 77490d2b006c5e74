"""One class per data layout: what trains, what validates, what evaluation scores, and what was skipped.

Every layout class takes (root, frames_per_blur, frames), scans and checks the folder once (raising
ValueError that names the folder and what is wrong) and offers the same methods: `summary` lines,
`check_crop`, the endless `train_set`, the fixed `validation` set, the evaluation samples `items` and
their count. `CLASSES` maps a layout's name to its class; `data.open_data` picks one.

- Photos: sharp photos given synthetic motion (`samples.SyntheticBlur`);
- Sequences, Videos: real consecutive frames, N of them averaged into a blur (`samples.FootageBlur`);
- GoPro, Pairs: a given blur beside its sharp middle frame, the only frame known (`middle_only`);
- Clips: a real blurred photo beside all its true frames; for evaluation only.

What validates is decided by one rule, `hold_out`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from . import footage
from .files import atomic_path
from .footage import IMAGE_SUFFIXES, FrameSequence
from .samples import BlurSample, FootageBlur, SyntheticBlur, decode_rgb, synthetic_sample, to_tensor
from .synth import SynthConfig

FIXED_SEED = 12345  # seeds the validation set and the evaluation samples of photos
# The largest synthetic sample `eval` makes of a photo: its sub-frames take about 3 KB per pixel (0.8 GB at
# 512 px, 1.7 at 768), and scoring it about 8 KB (7.9 GB measured at 1024 px), growing with the square of
# the side
MAX_EVAL_SYNTH = 1024


# ---------------------------------------------------------------- the held-out rule

def is_held_out(path: Path, every: int = 10) -> bool:
    """One name in `every`, chosen by a hash of the last part of `path` (stable across machines)."""
    return int(hashlib.sha1(Path(path).name.encode()).hexdigest(), 16) % every == 0


def hold_out(items: list, name_of: Callable, test_folder: bool = True, every: int = 10) -> tuple[list, list]:
    """(training, validation) items: those under a test/ folder (with `test_folder`), else one in `every`
    by a hash of the name (`is_held_out`), else the last item. Each step applies only when it leaves
    something on both sides, so a lone item is held out whole; footage then cuts it in time instead."""
    names = [Path(name_of(x)) for x in items]
    rules = [lambda n: "test" in n.parts[:-1]] if test_folder else []
    for rule in [*rules, lambda n: is_held_out(n, every)]:
        held = [rule(n) for n in names]
        if any(held) and not all(held):
            return [x for x, h in zip(items, held) if not h], [x for x, h in zip(items, held) if h]
    return items[:-1], items[-1:]


def list_photos(root: str | Path) -> list[Path]:
    """Every photo below `root`, sorted, hidden files skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder of photos")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def split_photos(photos: list[Path], every: int = 10) -> tuple[list[Path], list[Path]]:
    """(training photos, validation photos) by `hold_out`, test/ folders not preferred: the photos
    collections hold test/ folders of their own, and runs already started keep their split."""
    return hold_out(photos, lambda p: p, test_folder=False, every=every)


# ---------------------------------------------------------------- what every layout offers

class Data:
    """A checked data folder of one layout: `found` (every photo or sequence), `train`, `val`, `skipped`."""

    layout: ClassVar[str]
    description: ClassVar[str]
    middle_only: ClassVar[bool] = False  # only the middle frame is known: trains stage 1, scores middle & reblur

    def __init__(self, root: str | Path, frames_per_blur: int = 7, frames: int = 7):
        self.root, self.frames_per_blur, self.frames = Path(root), frames_per_blur, frames
        self.found, self.skipped = self.scan()
        self.train, self.val = self.split()

    def scan(self) -> tuple[list, list[str]]:
        """(everything usable in the folder, 'name: why skipped' lines); ValueError when nothing is."""
        raise NotImplementedError

    def split(self) -> tuple[list, list]:
        return hold_out(self.found, lambda s: s.name)

    def found_lines(self) -> list[str]:
        """The summary's lines about what was found."""
        raise NotImplementedError

    def stream(self, items: list, size: int, seed: int, synth: SynthConfig, train: bool, device: str = "cpu"):
        """The endless dataset of BlurSamples of `size` px made from `items` (synthetic ones rendered on
        `device`)."""
        raise NotImplementedError

    def scored_samples(self, per_sequence: int, size: int | None, all_photos: bool
                       ) -> Iterator[tuple[str, BlurSample]]:
        """(name, sample) for evaluation, in a fixed order."""
        raise NotImplementedError

    def count_items(self, per_sequence: int = 4, all_photos: bool = False) -> int:
        """How many samples `items` yields."""
        raise NotImplementedError

    def summary(self) -> list[str]:
        """A few lines for the terminal: layout, counts, resolution, frames per blur, what was skipped."""
        lines = self.found_lines()
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)}: " + "; ".join(self.skipped[:5])
                         + (" …" if len(self.skipped) > 5 else ""))
        return lines

    def check_crop(self, crop: int) -> None:
        """ValueError when training frames are smaller than the training crop (photos are rescaled)."""
        small = [s for s in self.train if min(s.size) < crop]
        if small:
            w, h = small[0].size
            raise ValueError(f"{small[0].name}: frames of {w}x{h} are smaller than the {crop} px training crop")

    def check_eval_size(self, size: int | None) -> None:
        """SettingsError when scoring at this size cannot be done (footage: any size is a crop of it)."""

    def train_set(self, crop: int, seed: int, synth: dict | None = None,
                  device: str = "cpu") -> torch.utils.data.Dataset:
        """The endless training stream; `synth` overrides SynthConfig fields (the motion and camera
        statistics of synthetic samples, and the input degradations of footage); `device`: where synthetic
        motion is rendered (its samples come back on the CPU; footage is always cut on the CPU)."""
        cfg = SynthConfig(size=crop, frames=self.frames, **(synth or {}))
        return self.stream(self.train, crop, seed, cfg, train=True, device=device)

    def make_validation(self, count: int, size: int, seed: int = FIXED_SEED) -> dict:
        """`count` fixed samples of `size` px from the held-out part, stacked: {"blurred", "frames", "clean"}."""
        ds = self.stream(self.val, size, seed, SynthConfig(size=size, frames=self.frames), train=False)
        batch = torch.utils.data.default_collate([ds[i] for i in range(count)])
        return {k: v for k, v in batch._asdict().items() if k != "travel"}  # validation scores frames only

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
        with atomic_path(path) as tmp:
            # written as bytes, so the file gets the mode the umask gives (safetensors' own files are 0600)
            tmp.write_bytes(save({k: v.contiguous() for k, v in val.items()}, metadata={"data": key}))
        return val

    def items(self, per_sequence: int = 4, size: int | None = None, all_photos: bool = False):
        """Evaluation samples in a fixed order: (name, blurred 3xHxW, frames Fx3xHxW or 1x3xHxW, clean 3xHxW).
        Footage is scored at full frame unless `size` asks for centred crops; photos get `size` px synthetic
        samples (256 by default) of the held-out photos, or of all of them with `all_photos`."""
        for name, sample in self.scored_samples(per_sequence, size, all_photos):
            yield (name, *sample[:3])


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _resolution(seqs: list[FrameSequence]) -> str:
    sizes = sorted({s.size for s in seqs})
    return "x".join(map(str, sizes[0])) + (f" to {'x'.join(map(str, sizes[-1]))}" if len(sizes) > 1 else "")


def _why(skipped: list[str]) -> str:
    return f" ({'; '.join(skipped[:3])})" if skipped else ""


# ---------------------------------------------------------------- the layouts

class Photos(Data):
    layout = "photos"
    description = "sharp photos, given synthetic motion"

    def scan(self):
        photos = list_photos(self.root)
        if not photos:
            raise ValueError(f"{self.root}: no photos found")
        return photos, []

    def split(self):
        return split_photos(self.found)

    def found_lines(self):
        return [f"{self.root}: photos (synthetic motion): {len(self.train)} for training, "
                f"{len(self.val)} held out for validation"]

    def check_crop(self, crop):
        pass  # photos are rescaled to the crop

    def check_eval_size(self, size):
        if (size or 0) > MAX_EVAL_SYNTH:
            from .errors import SettingsError

            raise SettingsError(f"{self.root}: synthetic samples of photos are made {MAX_EVAL_SYNTH} px at most "
                                f"(--size {size} would take about {8e3 * size ** 2 / 2 ** 30:.0f} GB of memory)")

    def stream(self, items, size, seed, synth, train, device="cpu"):
        return SyntheticBlur(items, synth, seed=seed, cache=train, device=device)

    def scored(self, all_photos: bool = False) -> list[Path]:
        """The held-out photos (the others may have trained the weights), or all of them."""
        return self.found if all_photos else self.val

    def scored_samples(self, per_sequence, size, all_photos):
        self.check_eval_size(size)
        cfg = SynthConfig(size=size or 256, frames=self.frames)
        for photo in self.scored(all_photos):
            j = self.found.index(photo)  # the sample of a photo does not depend on what else is scored
            try:
                image = decode_rgb(photo)
            except (OSError, ValueError) as e:  # listed, as the other layouts list theirs
                self.skipped.append(f"{photo.relative_to(self.root).as_posix()}: cannot be read "
                                    f"({str(e).splitlines()[0] if str(e) else type(e).__name__})")
                continue
            for k in range(per_sequence):
                yield photo.relative_to(self.root).as_posix(), synthetic_sample(image, [FIXED_SEED, j, k], cfg)

    def count_items(self, per_sequence=4, all_photos=False):
        return len(self.scored(all_photos)) * per_sequence


class Sequences(Data):
    """Folders of consecutive sharp frames; `frames_per_blur` of them averaged into each blur."""

    layout = "sequences"
    description = "folders of consecutive sharp frames (GoPro_Large_all)"

    def scan(self):
        if not self.middle_only and self.frames_per_blur < self.frames:
            from .errors import SettingsError

            raise SettingsError(f"frames per blur {self.frames_per_blur} cannot make {self.frames} frames: give "
                                f"--frames-per-blur {self.frames} or more")
        seqs, skipped = self.find()
        if not seqs:
            raise ValueError(f"{self.root}: no usable sequence for the {self.layout} layout{_why(skipped)}")
        return seqs, skipped

    def find(self) -> tuple[list[FrameSequence], list[str]]:
        return footage.scan_sequences(self.root, self.frames_per_blur)

    def exposure(self) -> int:
        """Frames (or blurred photos) per sample."""
        return self.frames_per_blur

    def split(self):
        """`hold_out`; a lone sequence keeps its last sixth (at least one blur) for validation."""
        if len(self.found) > 1:
            return super().split()
        s, n = self.found[0], self.exposure()
        cut = s.end - max(n, (s.end - s.first) // 6)
        train, val = s.part(s.first, cut), s.part(cut, s.end)
        if val.window_count(n) <= 0 or train.window_count(n) <= 0:
            where = self.root if s.name == "." else self.root / s.name  # "." : the folder itself holds the frames
            raise ValueError(f"{where}: one sequence of {s.end - s.first} frames is too short to keep a part "
                             f"for validation; add frames or sequences")
        return [train], [val]

    def found_lines(self):
        n = self.frames_per_blur
        per = ("1 blurred photo per sample, middle frame known only (trains stage 1)" if self.middle_only
               else f"{n} frames per blur into {self.frames} frames")
        samples = sum(s.window_count(n) for s in self.train)
        return [f"{self.root}: {self.layout} ({self.description})",
                f"  {_count(len(self.train), 'sequence')} for training ({_count(samples, 'sample')}), "
                f"{len(self.val)} for validation; {_resolution(self.found)}; {per}"]

    def stream(self, items, size, seed, synth, train, device="cpu"):
        if not train:  # the validation crops fit the smallest held-out frames
            size = min(size, *(min(s.size) for s in items))
        return FootageBlur(items, self.frames_per_blur, self.frames, size, seed=seed, train=train,
                           synth=synth if train else None)

    def evaluation_starts(self, seq: FrameSequence, count: int) -> list[int]:
        """`count` exposure starts spread evenly over `seq`, not overlapping where it is long enough."""
        k = seq.window_count(self.frames_per_blur)
        if k <= 0:
            return []
        return [seq.first + int(round(j)) for j in np.linspace(0, k - 1, min(count, k))]

    def scored_samples(self, per_sequence, size, all_photos):
        ds = FootageBlur(self.found, self.frames_per_blur, self.frames, size, train=False)
        for seq in self.found:
            for start in self.evaluation_starts(seq, per_sequence):
                yield seq.name, ds.sample(seq, start)

    def count_items(self, per_sequence=4, all_photos=False):
        return sum(len(self.evaluation_starts(s, per_sequence)) for s in self.found)


class Videos(Sequences):
    layout = "videos"
    description = "high-frame-rate videos, decoded with ffmpeg"

    def find(self):
        return footage.scan_videos(self.root, self.frames_per_blur)


class GoPro(Sequences):
    """GoPro_Large: blurred photos beside their sharp middle frames, per sequence."""

    layout = "gopro"
    description = "blur/ or blur_gamma/ beside sharp/ per sequence (GoPro_Large); middle frame only"
    middle_only = True

    def find(self):
        return footage.scan_gopro(self.root)

    def exposure(self):
        return 1


class Pairs(GoPro):
    """Blurred photos beside their sharp middle frames, one pair each."""

    layout = "pairs"
    description = ("NAME_blur*.png beside NAME_sharp*.png, the sharp middle frame of each blur; middle frame "
                   "only")

    def scan(self):
        seqs, skipped = footage.scan_pairs(self.root)
        if not seqs:
            raise ValueError(f"{self.root}: no NAME_blur*.png beside a NAME_sharp*.png of the same size"
                             f"{_why(skipped)}")
        return seqs, skipped

    def split(self):
        return hold_out(self.found, lambda s: s.name)  # a lone pair cannot be cut: it is held out whole

    def found_lines(self):
        return [f"{self.root}: pairs ({self.description})",
                f"  {_count(len(self.found), 'pair')}: {len(self.train)} for training, {len(self.val)} "
                f"held out for validation; {_resolution(self.found)}; middle frame known only (trains stage 1)"]


class Clips(Data):
    """Real blurred photos beside all their true frames: F predicted frames are scored against the true
    frame at the centre of each of F equal windows of the exposure (`window_centres`). Nothing trains."""

    layout = "clips"
    description = "blurry/NAME.png beside its true frames frames/NAME.mp4 (or frames/NAME/); evaluation only"

    def scan(self):
        if not footage.clip_dirs(self.root):
            raise ValueError(f"{self.root}: a clips folder holds blurry/ (or blurred/, blur/) beside frames/")
        seqs, skipped = footage.scan_clips(self.root)
        if not seqs:
            raise ValueError(f"{self.root}: no usable clip{_why(skipped)}")
        return seqs, skipped

    def split(self):
        return [], list(self.found)

    def found_lines(self):
        counts = sorted({s.count for s in self.found})
        per = f"{counts[0]}" + (f" to {counts[-1]}" if len(counts) > 1 else "")
        return [f"{self.root}: clips ({self.description})",
                f"  {_count(len(self.found), 'blurred photo')} with {per} true frames each, "
                f"scored at the centres of {self.frames} windows"]

    def stream(self, items, size, seed, synth, train, device="cpu"):
        raise ValueError(f"{self.root}: the clips layout is for evaluation only; train on photos, sequences "
                         f"or videos")

    def scored_samples(self, per_sequence, size, all_photos):
        for seq in self.found:
            yield seq.name, clip_sample(seq, self.frames, size)

    def count_items(self, per_sequence=4, all_photos=False):
        return len(self.found)


def window_centres(count: int, frames: int) -> list[int]:
    """Indices of the true frames at the centres of `frames` equal windows of `count` frames (48 into 7:
    3, 10, 17, 24, 30, 37, 44)."""
    return [(2 * i + 1) * count // (2 * frames) for i in range(frames)]


def clip_sample(seq: FrameSequence, frames: int, size: int | None = None) -> BlurSample:
    """A clip's blurred photo 3xHxW, its true frames at `frames` window centres Fx3xHxW, and the photo again
    as the clean blur; a centred `size` crop when given."""
    w, h = seq.size
    cw, ch = (min(size, w), min(size, h)) if size else (w, h)
    box = ((w - cw) // 2, (h - ch) // 2, cw, ch)
    keep = window_centres(seq.count, frames)
    if seq.video is not None:
        true = footage.decode_video(seq.video, box)
        if len(true) < seq.count:
            raise OSError(f"{seq.name}: {seq.video.name} ended after {len(true)} of {seq.count} frames")
        true = true[keep]
    else:
        true = np.stack([footage.read_frames(seq, i, 1, box)[0] for i in keep])
    photo = FrameSequence(seq.name, 1, seq.size, frames=seq.blurs)
    blurred = to_tensor(footage.read_frames(photo, 0, 1, box))[0]
    return BlurSample(blurred, to_tensor(true), blurred)


CLASSES: dict[str, type[Data]] = {c.layout: c for c in (Photos, Sequences, GoPro, Pairs, Videos, Clips)}
