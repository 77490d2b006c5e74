"""blur2clip: one motion-blurred photo in, the short clip of sharp frames behind it out.

    import blur2clip
    frames = blur2clip.extract_frames(image)            # HxWx3 float32 0..1 -> FxHxWx3 float32
    result = blur2clip.make_clip("photo.jpg", "clip.mp4")

Training: `from blur2clip.train import TrainConfig, train` (the submodule `blur2clip.train`).

The names below are imported on first use, so `import blur2clip` (and the command line's --help) stays
fast and does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# A clip shows this many instants of the exposure at this rate: a second forward (then back, ping-pong)
# that moves smoothly where 7 frames jumped; `--frames 7 --fps 10` gives the clip of the first versions.
CLIP_FRAMES = 24
CLIP_FPS = 24.0
FRAMES_RANGE = (3, 96)  # the instants a clip or `frames=` may ask for
FPS_RANGE = (0.1, 1000)  # the rates a clip may play at

# public name -> module that defines it
_API = {
    "load_model": "weights",
    "Blur2ClipError": "errors",
    "SettingsError": "errors",
    "WeightsError": "errors",
    "DeviceError": "errors",
    "DataError": "errors",
    "Extractor": "extract",
    "extract_frames": "extract",
    "make_clip": "job",
    "ClipOptions": "job",
    "ClipResult": "job",
    "read_photo": "media",
    "MediaError": "errors",
    "TrainConfig": "train",
    "ModelConfig": "model",
}

__all__ = ["__version__", "CLIP_FRAMES", "CLIP_FPS", "FRAMES_RANGE", "FPS_RANGE", *_API]

if TYPE_CHECKING:  # for editors and type checkers; never executed
    from .errors import Blur2ClipError, DataError, DeviceError, MediaError, SettingsError, WeightsError
    from .extract import Extractor, extract_frames
    from .job import ClipOptions, ClipResult, make_clip
    from .media import read_photo
    from .model import ModelConfig
    from .train import TrainConfig
    from .weights import load_model


def __getattr__(name: str):
    if name == "__version__":  # asked for, not at every start: importlib.metadata takes 80 ms to import
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("blur2clip")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0.0.0"
        globals()[name] = value
        return value
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(f".{module}", __name__)
    value = globals()[name] = getattr(mod, name)
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
