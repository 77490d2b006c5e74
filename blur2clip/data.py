"""Training, validation and evaluation data from a folder in any of six layouts: the entry point.

- photos: sharp photos given synthetic motion (`synth`), the default weights' data;
- sequences, gopro, videos: real high-frame-rate footage (`footage`);
- pairs: a blurred photo beside its sharp middle frame, NAME_blur*.png beside NAME_sharp*.png;
- clips: real blurred photos beside all their true frames, for evaluation only.

`open_data(root)` detects the layout (or takes it) and returns that layout's class of `layouts` (a
`Data`): the folder checked once (broken or short sequences are skipped and listed), the training stream,
the fixed validation set and the evaluation samples. Sample i of a training stream is a pure function of
(seed, i), so a run resumed at step s reads exactly the samples it would have read, and several processes
share the stream by taking every world-th index (`StreamSampler`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from . import footage
from .errors import DataError, SettingsError
from .layouts import CLASSES, Data, is_held_out, list_photos, split_photos
from .samples import BlurSample, StreamSampler, SyntheticBlur

__all__ = ["LAYOUTS", "BlurSample", "Data", "StreamSampler", "SyntheticBlur", "detect_layout", "is_held_out",
           "list_photos", "open_data", "split_photos"]

LAYOUTS = {name: cls.description for name, cls in CLASSES.items()}


def open_data(root: str | Path, layout: str = "auto", frames_per_blur: int = 7, frames: int = 7) -> Data:
    """Scan a data folder (layout "auto" detects it); DataError (a ValueError) names the folder and what is
    wrong; SettingsError when the settings cannot make what is asked (7 frames per blur into 9 frames)."""
    try:
        return _open(root, layout, frames_per_blur, frames)
    except (SettingsError, DataError):
        raise
    except (ValueError, OSError) as e:  # the layouts' own ValueErrors; a folder gone, unreadable
        plain = isinstance(e, ValueError) or e.filename is None
        raise DataError(str(e) if plain else f"{e.filename}: {e.strerror or e}") from None


def _open(root, layout, frames_per_blur, frames) -> Data:
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in CLASSES:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(CLASSES)}")
    elif not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    return CLASSES[layout](root, frames_per_blur, frames)


def detect_layout(root: str | Path) -> str:
    """The layout of a data folder: clips, gopro, videos, pairs, sequences or photos (see LAYOUTS)."""
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
    images = [p for p in files if p.suffix.lower() in footage.IMAGE_SUFFIXES]
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
