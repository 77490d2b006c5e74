"""Real high-frame-rate footage on disk: finding it, checking it, and reading its frames.

A `FrameSequence` is one shot of consecutive frames: image files, a video file (decoded by imageio-ffmpeg's
ffmpeg), or with `blurs` the blurred photos that go with its sharp frames. The scanners below find every
usable one in a folder of a given layout (see `layouts`) and say in one line each why the others were
skipped:
- sequences: one folder per sequence of consecutive sharp frames (GoPro_Large_all);
- gopro: `blur/` or `blur_gamma/` beside `sharp/` per sequence (GoPro_Large): the blur is given and only
  the middle frame is known;
- pairs: a flat folder of `NAME_blur*.png` beside `NAME_sharp*.png` (`Flower_blur1.png` beside
  `Flower_sharp1.png`): each pair is one blur and its sharp middle frame, as gopro;
- videos: a folder of videos (mp4, mov, mkv, ...), then like sequences;
- clips: a blurred photo beside all of its true frames, any number of them (`blurry/NAME.png` with
  `frames/NAME.mp4` or a folder `frames/NAME/`).
Turning frames into samples is `samples.FootageBlur`'s work.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm"}


@dataclass(frozen=True)
class FrameSequence:
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

    def part(self, first: int, stop: int) -> FrameSequence:
        return replace(self, first=first, stop=stop)

    def window_count(self, n: int) -> int:
        """How many exposures of n consecutive frames fit in the part in use (with blurs: one per blurred
        photo)."""
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

def scan_sequences(root: Path, n: int) -> tuple[list[FrameSequence], list[str]]:
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
        seqs.append(FrameSequence(name, len(frames), sizes.pop(), frames=tuple(frames)))
    return seqs, skipped


def scan_gopro(root: Path) -> tuple[list[FrameSequence], list[str]]:
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
        seqs.append(FrameSequence(name, len(pairs), sizes.pop(), frames=tuple(s for _, s in pairs),
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


def scan_pairs(root: Path) -> tuple[list[FrameSequence], list[str]]:
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
        seqs.append(FrameSequence(name, 1, sizes.pop(), frames=(sharp,), blurs=(blur,)))
    return seqs, skipped


CLIP_PHOTOS = ("blurry", "blurred", "blur")  # the folder of blurred photos of the clips layout, beside frames/


def clip_dirs(root: Path) -> tuple[Path, Path] | None:
    """(blurred photos folder, frames folder) when `root` is laid out as clips, else None."""
    frames = root / "frames"
    photos = next((root / d for d in CLIP_PHOTOS if (root / d).is_dir()), None)
    return (photos, frames) if photos is not None and frames.is_dir() else None


def scan_clips(root: Path) -> tuple[list[FrameSequence], list[str]]:
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
            size_of = sizes.pop() if len(sizes) == 1 else (0, 0)
            seq = FrameSequence(name, len(frames), size_of, frames=tuple(frames), blurs=(photo,))
        elif videos:
            try:
                _, fps, vsize = probe_video(videos[0])
                corner = (0, 0, min(16, vsize[0]), min(16, vsize[1]))
                count = len(decode_video(videos[0], corner))  # exact, unlike the header's estimate
            except Exception as e:  # ffmpeg's failures arrive as several exception types
                skipped.append(f"{name}: {videos[0].name} is not a readable video "
                               f"({(str(e).strip() or type(e).__name__).splitlines()[0]})")
                continue
            seq = FrameSequence(name, count, vsize, video=videos[0], fps=fps, blurs=(photo,))
        else:
            skipped.append(f"{name}: no frames/{name}.mp4 (or other video) and no frames/{name}/ folder")
            continue
        if seq.size != size:
            what = "frames of different sizes" if seq.size == (0, 0) else "frames of {}x{}".format(*seq.size)
            skipped.append(f"{name}: the photo is {size[0]}x{size[1]} but its true frames are {what}")
            continue
        seqs.append(seq)
    return seqs, skipped


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


def scan_videos(root: Path, n: int) -> tuple[list[FrameSequence], list[str]]:
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
        seqs.append(FrameSequence(name, count, size, video=path, fps=fps))
    return seqs, skipped


# ---------------------------------------------------------------- reading frames

def read_frames(seq: FrameSequence, first: int, n: int, box: tuple[int, int, int, int]) -> np.ndarray:
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
