"""Tiny data folders of every layout, made from the synthesis module's frames (consecutive sharp frames
of a random motion), for the data, training and evaluation tests."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from blur2clip.synth import SynthConfig, synthesize, to_linear, to_srgb


def consecutive_frames(count: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """count x size x size x 3 uint8: consecutive sharp frames of one random motion."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96]
    photo = np.stack([x / 96, y / 96, 0.5 + 0.5 * np.sin(x / 4 + y / 7)], -1) * 0.7 + 0.3 * rng.random((96, 96, 3))
    cfg = SynthConfig(size=size, frames=count, min_sub=1, max_sub=1, camera_px=count * 0.7, camera_tail=0.01,
                      p_static_camera=0.0, p_noise=0, p_jpeg=0, p_highlights=0, photo_scale=(1.0, 1.0))
    frames = synthesize((photo * 255).astype(np.uint8), rng, cfg).frames  # count x 3 x size x size
    return (frames.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def save_frames(folder: Path, frames: np.ndarray, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        paths.append(folder / f"{start + i:06d}.png")
        Image.fromarray(f).save(paths[-1])
    return paths


def make_sequences(root: Path, count: int = 16, names=("seq_a", "seq_b", "seq_c")) -> Path:
    """GoPro_Large_all style: root/train/NAME/000000.png ... (the last name under test/)."""
    for j, name in enumerate(names):
        split = "test" if j == len(names) - 1 else "train"
        save_frames(root / split / name, consecutive_frames(count, seed=j))
    return root


def linear_mean(frames: np.ndarray) -> np.ndarray:
    """The blur of uint8 frames, averaged in linear light (as GoPro's blur_gamma)."""
    lin = to_linear(torch.from_numpy(frames).float() / 255).mean(0)
    return (to_srgb(lin).numpy() * 255 + 0.5).astype(np.uint8)


def make_gopro(root: Path, windows: int = 3, n: int = 7, names=("GOPR0001_00", "GOPR0002_00")) -> Path:
    """GoPro_Large style: root/NAME/{blur,blur_gamma,sharp}/000000.png, one blur per 7 sharp frames."""
    for j, name in enumerate(names):
        frames = consecutive_frames(windows * n, seed=10 + j)
        for w in range(windows):
            part = frames[w * n:(w + 1) * n]
            for sub, img in (("sharp", part[n // 2]), ("blur_gamma", linear_mean(part)),
                             ("blur", part.mean(0).round().astype(np.uint8))):
                (root / name / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / name / sub / f"{w:06d}.png")
    return root


def write_video(path: Path, frames: np.ndarray, fps: int, quality: int = 9) -> Path:
    """n x h x w x 3 uint8 frames as an H.264 video, written with imageio-ffmpeg."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=fps,
                                         codec="libx264", quality=quality, macro_block_size=16,
                                         ffmpeg_log_level="error")
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return path


def make_videos(root: Path, count: int = 24, names=("clip_a.mp4", "clip_b.mp4"), fps: int = 240) -> Path:
    """Videos of consecutive frames at a high frame rate."""
    root.mkdir(parents=True, exist_ok=True)
    for j, name in enumerate(names):
        write_video(root / name, consecutive_frames(count, seed=20 + j), fps)
    return root


def make_photos(root: Path, count: int = 30) -> Path:
    """Unrelated small photos (not consecutive frames): enough that the 1-in-10 split holds some out."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        blocks = rng.random((6, 8, 3)).repeat(8, 0).repeat(8, 1)
        Image.fromarray((blocks * 255).astype(np.uint8)).save(root / f"photo{i:03d}.png")
    return root


def make_clips(root: Path, counts=(48, 12, 10), size: int = 48) -> Path:
    """The clips layout: root/blurry/NAME.png, the linear-light mean of its true frames, beside
    root/frames/NAME.mp4 (the first) or root/frames/NAME/*.png (the others); any frame count."""
    (root / "blurry").mkdir(parents=True, exist_ok=True)
    (root / "frames").mkdir(parents=True, exist_ok=True)
    for j, count in enumerate(counts):
        name = f"{j:04d}"
        frames = consecutive_frames(count, size=size, seed=30 + j)
        Image.fromarray(linear_mean(frames)).save(root / "blurry" / f"{name}.png")
        if j == 0:
            write_video(root / "frames" / f"{name}.mp4", frames, fps=24, quality=10)
        else:
            save_frames(root / "frames" / name, frames)
    return root


def make_pairs(root: Path, names=("Flower", "Istanbul", "Street"), n: int = 7) -> Path:
    """Blurred/sharp pairs in one flat folder, as GoPro's demo pairs: NAME_blur1.png (the linear-light mean of
    n consecutive frames) beside NAME_sharp1.png (their middle frame)."""
    root.mkdir(parents=True, exist_ok=True)
    for j, name in enumerate(names):
        frames = consecutive_frames(n, seed=40 + j)
        Image.fromarray(linear_mean(frames)).save(root / f"{name}_blur1.png")
        Image.fromarray(frames[n // 2]).save(root / f"{name}_sharp1.png")
    return root
