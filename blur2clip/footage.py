"""Real high-frame-rate footage as training and evaluation samples.

A blur is the average, in linear light, of N consecutive sharp frames (the exposure); its F ground-truth
frames split the same N frames into F equal parts of time (N >= F; when N is not a multiple of F a
sub-frame is shared by two frames in proportion), so the frames average back to the blur exactly.

Five layouts (see `data.detect_layout`):
- sequences: one folder per sequence of consecutive sharp frames (GoPro_Large_all);
- gopro: `blur/` or `blur_gamma/` beside `sharp/` per sequence (GoPro_Large): the blur is given and only
  the middle frame is known, so samples carry a single ground-truth frame;
- pairs: a flat folder of `NAME_blur*.png` beside `NAME_sharp*.png` (`Flower_blur1.png` beside
  `Flower_sharp1.png`): each pair is one blur and its sharp middle frame, as gopro;
- videos: a folder of videos (mp4, mov, mkv, ...), decoded by imageio-ffmpeg's ffmpeg, then like sequences;
- clips: a blurred photo per sample beside all of its true frames, any number of them (`blurry/NAME.png`
  with `frames/NAME.mp4` or a folder `frames/NAME/`); F predicted frames are scored against the true frame
  at the centre of each of F equal windows of the exposure (`window_centres`). For evaluation only.

Samples are (blurred 3xSxS, frames Fx3xSxS or 1x3xSxS, clean 3xSxS) in sRGB 0..1; sample i of a dataset
is a pure function of (seed, i), as for the synthetic data.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .synth import SynthConfig, degrade, to_linear, to_srgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm"}


@dataclass(frozen=True)
class Sequence:
    """Consecutive frames of one shot: image files, or a video file. `first`/`stop` bound the part in use."""

    name: str
    count: int  # frames in the whole shot
    size: tuple[int, int]  # width, height
    frames: tuple[Path, ...] = ()  # image files in time order (sequences), or the sharp frames (gopro)
    blurs: tuple[Path, ...] = ()  # gopro: the blurred photo of each sharp frame
    video: Path | None = None
    fps: float = 0.0
    first: int = 0
    stop: int | None = None

    @property
    def end(self) -> int:
        return self.count if self.stop is None else self.stop

    def part(self, first: int, stop: int) -> "Sequence":
        return replace(self, first=first, stop=stop)

    def windows(self, n: int) -> int:
        """Blurs of n frames that fit (gopro: one per blurred photo)."""
        return max(0, self.end - self.first - (0 if self.blurs else n - 1))


def natural_key(path: Path):
    """'frame10' after 'frame9'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith(".") and p.is_file()), key=natural_key)


def _sizes(paths) -> tuple[set, str | None]:
    """The distinct image sizes among `paths` (headers only), or the first unreadable file's problem."""
    sizes = set()
    for p in paths:
        try:
            with Image.open(p) as im:
                sizes.add(im.size)
        except Exception as e:  # PIL raises several types for a damaged file
            return sizes, f"{p.name} unreadable ({type(e).__name__})"
    return sizes, None


# ---------------------------------------------------------------- finding sequences

def scan_sequences(root: Path, n: int) -> tuple[list[Sequence], list[str]]:
    """Every folder below `root` holding frames directly: (usable sequences, 'name: why skipped' lines)."""
    seqs, skipped = [], []
    for folder in sorted({p.parent for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}):
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue
        name = folder.relative_to(root).as_posix() or root.name
        frames = _images(folder)
        sizes, bad = _sizes(frames)
        if bad or len(sizes) != 1 or len(frames) < n:
            skipped.append(f"{name}: " + (bad or (f"frames of {len(sizes)} different sizes" if len(sizes) > 1
                                                  else f"{len(frames)} frames, fewer than {n} per blur")))
            continue
        seqs.append(Sequence(name, len(frames), sizes.pop(), frames=tuple(frames)))
    return seqs, skipped


def scan_gopro(root: Path) -> tuple[list[Sequence], list[str]]:
    """Every folder below `root` with sharp/ beside blur_gamma/ (preferred: averaged in linear light) or blur/."""
    seqs, skipped = [], []
    for sharp in sorted(p for p in root.rglob("sharp") if p.is_dir()):
        folder = sharp.parent
        name = folder.relative_to(root).as_posix() or root.name
        blur_dir = next((folder / d for d in ("blur_gamma", "blur") if (folder / d).is_dir()), None)
        if blur_dir is None:
            skipped.append(f"{name}: sharp/ without blur/ or blur_gamma/")
            continue
        blurs = {p.name: p for p in _images(blur_dir)}
        pairs = [(blurs[p.name], p) for p in _images(sharp) if p.name in blurs]
        sizes, bad = _sizes([p for pair in pairs for p in pair])
        if bad or len(sizes) != 1 or not pairs:
            skipped.append(f"{name}: " + (bad or ("no sharp frame with a blurred photo of the same name"
                                                  if not pairs else "images of different sizes")))
            continue
        seqs.append(Sequence(name, len(pairs), sizes.pop(), frames=tuple(s for _, s in pairs),
                             blurs=tuple(b for b, _ in pairs)))
    return seqs, skipped


def find_pairs(images: list[Path]) -> list[tuple[Path, Path]]:
    """(blurred, sharp) pairs among `images`: NAME_blurX.EXT beside NAME_sharpX.EXT in the same folder (any
    image suffix, case of _blur/_sharp ignored), in name order."""
    by_key = {(p.parent, p.stem.lower()): p for p in images}
    pairs = []
    for p in sorted(images, key=lambda q: (q.parent, natural_key(q))):
        m = re.fullmatch(r"(.*)_blur(.*)", p.stem, flags=re.IGNORECASE)
        sharp = m and by_key.get((p.parent, f"{m[1]}_sharp{m[2]}".lower()))
        if sharp:
            pairs.append((p, sharp))
    return pairs


def scan_pairs(root: Path) -> tuple[list[Sequence], list[str]]:
    """Every blurred/sharp pair below `root` (`find_pairs`) as a sequence of one blur whose one known frame
    is the sharp photo: (usable pairs, 'name: why skipped' lines). Named by the blurred photo's path, less
    its suffix (Flower_blur1)."""
    images = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
              and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    seqs, skipped = [], []
    for blur, sharp in find_pairs(images):
        name = blur.relative_to(root).with_suffix("").as_posix()
        sizes, bad = _sizes([blur, sharp])
        if bad or len(sizes) != 1:
            skipped.append(f"{name}: " + (bad or f"{sharp.name} is not of the same size"))
            continue
        seqs.append(Sequence(name, 1, sizes.pop(), frames=(sharp,), blurs=(blur,)))
    return seqs, skipped


CLIP_PHOTOS = ("blurry", "blurred", "blur")  # the folder of blurred photos of the clips layout, beside frames/


def clip_dirs(root: Path) -> tuple[Path, Path] | None:
    """(blurred photos folder, frames folder) when `root` is laid out as clips, else None."""
    frames = root / "frames"
    photos = next((root / d for d in CLIP_PHOTOS if (root / d).is_dir()), None)
    return (photos, frames) if photos is not None and frames.is_dir() else None


def scan_clips(root: Path) -> tuple[list[Sequence], list[str]]:
    """Every blurred photo of a clips folder with its true frames (a video or a folder of frames of the
    photo's stem): sequences with `blurs` = (the photo,) and every true frame; 'name: why skipped' lines."""
    photos_dir, frames_dir = clip_dirs(root)
    seqs, skipped = [], []
    for photo in _images(photos_dir):
        name = photo.stem
        try:
            with Image.open(photo) as im:
                size = im.size
        except Exception as e:  # PIL raises several types for a damaged file
            skipped.append(f"{name}: {photo.name} unreadable ({type(e).__name__})")
            continue
        folder = frames_dir / name
        videos = sorted(p for p in frames_dir.glob(name + ".*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if folder.is_dir():
            frames = _images(folder)
            sizes, bad = _sizes(frames)
            if bad or not frames:
                skipped.append(f"{name}: " + (bad or "no frames in its folder"))
                continue
            seq = Sequence(name, len(frames), sizes.pop() if len(sizes) == 1 else (0, 0), frames=tuple(frames),
                           blurs=(photo,))
        elif videos:
            try:
                _, fps, vsize = probe_video(videos[0])
                corner = (0, 0, min(16, vsize[0]), min(16, vsize[1]))
                count = len(decode_video(videos[0], corner))  # exact, unlike the header's estimate
            except Exception as e:  # ffmpeg's failures arrive as several exception types
                skipped.append(f"{name}: {videos[0].name} is not a readable video "
                               f"({(str(e).strip() or type(e).__name__).splitlines()[0]})")
                continue
            seq = Sequence(name, count, vsize, video=videos[0], fps=fps, blurs=(photo,))
        else:
            skipped.append(f"{name}: no frames/{name}.mp4 (or other video) and no frames/{name}/ folder")
            continue
        if seq.size != size:
            what = "frames of different sizes" if seq.size == (0, 0) else "frames of {}x{}".format(*seq.size)
            skipped.append(f"{name}: the photo is {size[0]}x{size[1]} but its true frames are {what}")
            continue
        seqs.append(seq)
    return seqs, skipped


def window_centres(count: int, frames: int) -> list[int]:
    """Indices of the true frames at the centres of `frames` equal windows of `count` frames (48 into 7:
    3, 10, 17, 24, 30, 37, 44)."""
    return [(2 * i + 1) * count // (2 * frames) for i in range(frames)]


def clip_sample(seq: Sequence, frames: int, size: int | None = None):
    """(blurred 3xHxW, the true frames at `frames` window centres Fx3xHxW, blurred) of a clips sequence;
    a centred `size` crop when given."""
    w, h = seq.size
    cw, ch = (min(size, w), min(size, h)) if size else (w, h)
    box = ((w - cw) // 2, (h - ch) // 2, cw, ch)
    keep = window_centres(seq.count, frames)
    if seq.video is not None:
        true = decode_video(seq.video, box)
        if len(true) < seq.count:
            raise OSError(f"{seq.name}: {seq.video.name} ended after {len(true)} of {seq.count} frames")
        true = true[keep]
    else:
        true = np.stack([read_frames(seq, i, 1, box)[0] for i in keep])
    blurred = _tensor(read_frames(replace(seq, frames=seq.blurs, video=None), 0, 1, box))[0]
    return blurred, _tensor(true), blurred


def probe_video(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames, fps, (width, height) as decoded, rotation applied) read from the header; frames estimated."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), output_params=["-frames:v", "1"])
    try:
        meta = next(gen)
        for _ in gen:  # one frame, then ffmpeg ends by itself (closing early would kill it, noisily)
            pass
    finally:
        gen.close()
    fps, duration = float(meta.get("fps") or 0), float(meta.get("duration") or 0)
    if fps <= 0 or duration <= 0:
        raise ValueError("no frame rate or duration in the header")
    return int(duration * fps + 1e-6), fps, tuple(meta["size"])


def scan_videos(root: Path, n: int) -> tuple[list[Sequence], list[str]]:
    seqs, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES
                       and not p.name.startswith(".")):
        name = path.relative_to(root).as_posix()
        try:
            count, fps, size = probe_video(path)
        except Exception as e:  # ffmpeg's failures arrive as several exception types
            skipped.append(f"{name}: not a readable video ({(str(e).strip() or type(e).__name__).splitlines()[0]})")
            continue
        if count < n:
            skipped.append(f"{name}: {count} frames, fewer than {n} per blur")
            continue
        seqs.append(Sequence(name, count, size, video=path, fps=fps))
    return seqs, skipped


# ---------------------------------------------------------------- reading frames

def read_frames(seq: Sequence, first: int, n: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Frames first..first+n-1 of `seq`, cropped to box (x, y, w, h): n x h x w x 3 uint8. OSError if short."""
    x, y, w, h = box
    if seq.video is None:
        out = []
        for p in seq.frames[first:first + n]:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB").crop((x, y, x + w, y + h))))
        if len(out) < n:
            raise OSError(f"{seq.name}: frames {first}..{first + n - 1} past the end")
        return np.stack(out)
    import imageio_ffmpeg

    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)  # it warns that a crop changes the size
    # Input seeking lands on the first frame at or after the time given; half a frame early is exact.
    gen = imageio_ffmpeg.read_frames(str(seq.video), input_params=["-ss", f"{max(0.0, (first - 0.5) / seq.fps):.6f}"],
                                     output_params=["-frames:v", str(n), "-vf", f"crop={w}:{h}:{x}:{y}"])
    try:
        next(gen)  # the header
        out = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]
    finally:
        gen.close()
    if len(out) < n:
        raise OSError(f"{seq.name}: frames {first}..{first + n - 1} past the end of the video")
    return np.stack(out)


def decode_video(path: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    """Every frame of a video in order, cropped to box (x, y, w, h): n x h x w x 3 uint8."""
    import imageio_ffmpeg

    x, y, w, h = box
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    gen = imageio_ffmpeg.read_frames(str(path), output_params=["-vf", f"crop={w}:{h}:{x}:{y}"])
    try:
        next(gen)  # the header
        out = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen]
    finally:
        gen.close()
    return np.stack(out) if out else np.zeros((0, h, w, 3), np.uint8)


def _tensor(frames: np.ndarray) -> torch.Tensor:
    """n x h x w x 3 uint8 -> n x 3 x h x w float 0..1."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def split_weights(n: int, frames: int) -> torch.Tensor:
    """F x N: how much of each of N sub-frames goes into each of F frames (each row sums to 1)."""
    edges_f = np.arange(frames + 1) / frames
    edges_s = np.arange(n + 1) / n
    lo = np.maximum(edges_f[:-1, None], edges_s[None, :-1])
    hi = np.minimum(edges_f[1:, None], edges_s[None, 1:])
    return torch.from_numpy(np.clip(hi - lo, 0, None) * frames).float()


def blur_sample(sub: torch.Tensor, frames: int):
    """N x 3 x h x w sharp sub-frames (sRGB) -> (ground truth F x 3 x h x w, clean blur 3 x h x w, its linear)."""
    lin = to_linear(sub)
    gt = torch.einsum("fn,nchw->fchw", split_weights(len(sub), frames), lin)
    clean = lin.mean(0)
    return to_srgb(gt), to_srgb(clean), clean


# ---------------------------------------------------------------- datasets

class FootageBlur(torch.utils.data.Dataset):
    """Blurs made from real consecutive frames (sequences, videos) or given (gopro), cropped to `size`.

    train=True: random crops, flips, and the input-only camera degradations of `synth`; sample i is seeded
    by (seed, i) and picks a sequence in proportion to its windows. train=False: `evaluation_windows`.
    """

    def __init__(self, seqs: list[Sequence], n: int, frames: int, size: int | None, seed: int = 0,
                 train: bool = True, synth: SynthConfig | None = None):
        self.seqs, self.n, self.frames, self.size, self.seed, self.train = list(seqs), n, frames, size, seed, train
        self.synth = synth or SynthConfig()
        self.weights = np.array([s.windows(n) for s in self.seqs], dtype=np.float64)
        if not self.weights.sum():
            raise ValueError("no sequence is long enough for one blur")
        self.weights /= self.weights.sum()
        self._warned = False

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i: int):
        for attempt in range(20):  # a damaged frame is skipped: the next draw of the same stream replaces it
            rng = np.random.default_rng([self.seed, i, attempt])
            seq = self.seqs[int(rng.choice(len(self.seqs), p=self.weights))]
            start = seq.first + int(rng.integers(seq.windows(self.n)))
            try:
                return self.sample(seq, start, rng)
            except OSError as e:
                if not self._warned:
                    warnings.warn(f"skipping a sample: {e}", stacklevel=2)
                    self._warned = True
        raise OSError("20 samples in a row could not be read")

    def sample(self, seq: Sequence, start: int, rng: np.random.Generator | None = None):
        """The sample whose exposure starts at frame `start` (gopro: the blurred photo `start`)."""
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
            blurred = _tensor(read_frames(replace(seq, frames=seq.blurs), start, 1, box))[0]
            gt, clean = _tensor(read_frames(seq, start, 1, box)), blurred
        else:
            gt, clean, clean_lin = blur_sample(_tensor(read_frames(seq, start, self.n, box)), self.frames)
            blurred = degrade(clean_lin, rng, self.synth) if rng is not None and self.train else clean
        if rng is not None and self.train:
            if rng.random() < 0.5:
                blurred, gt, clean = blurred.flip(-1), gt.flip(-1), clean.flip(-1)
            if rng.random() < 0.2:
                blurred, gt, clean = blurred.flip(-2), gt.flip(-2), clean.flip(-2)
        return blurred.contiguous(), gt.contiguous(), clean.contiguous()


def evaluation_windows(seq: Sequence, n: int, count: int) -> list[int]:
    """`count` exposure starts spread evenly over the sequence, not overlapping where it is long enough."""
    k = seq.windows(n)
    if k <= 0:
        return []
    count = min(count, k)
    return [seq.first + int(round(j)) for j in np.linspace(0, k - 1, count)]


def split_sequences(seqs: list[Sequence], n: int, held_out) -> tuple[list[Sequence], list[Sequence]]:
    """(training, validation) sequences: those under a test/ folder, else one in ten by name, else the
    last sequence, else the last sixth (at least one blur) of a single sequence's frames."""
    tests = [s for s in seqs if "test" in Path(s.name).parts[:-1]]
    if tests and len(tests) < len(seqs):
        return [s for s in seqs if s not in tests], tests
    val = [s for s in seqs if held_out(Path(s.name))]
    if val and len(val) < len(seqs):
        return [s for s in seqs if s not in val], val
    if len(seqs) > 1:
        return seqs[:-1], seqs[-1:]
    s = seqs[0]
    cut = s.end - max(n, (s.end - s.first) // 6)
    train, val = s.part(s.first, cut), s.part(cut, s.end)
    if val.windows(n) <= 0 or train.windows(n) <= 0:
        raise ValueError(f"{s.name}: one sequence of {s.end - s.first} frames is too short to keep a part "
                         f"for validation; add frames or sequences")
    return [train], [val]
