"""blur2clip: one motion-blurred photo in, the short clip of sharp frames behind it out.

    import blur2clip
    frames = blur2clip.extract_frames(image)            # HxWx3 float32 0..1 -> FxHxWx3 float32
    result = blur2clip.make_clip("photo.jpg", "clip.mp4")

The names below are imported on first use, so `import blur2clip` (and the command line's --help) stays
fast and does not load torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("blur2clip")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"

# public name -> module that defines it
_API = {
    "load_model": "weights",
    "WeightsError": "weights",
    "Extractor": "pipeline",
    "extract_frames": "pipeline",
    "make_clip": "pipeline",
    "ClipResult": "pipeline",
    "read_photo": "media",
    "MediaError": "media",
    "train": "train",
    "TrainConfig": "train",
    "ModelConfig": "model",
}

__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # for editors and type checkers; never executed
    from .media import MediaError, read_photo
    from .model import ModelConfig
    from .pipeline import ClipResult, Extractor, extract_frames, make_clip
    from .train import TrainConfig, train
    from .weights import WeightsError, load_model


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(f".{module}", __name__)
    if name == "train":  # the import bound the submodule, made callable (see _Package)
        return globals()["train"]
    value = globals()[name] = getattr(mod, name)
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _CallableModule(types.ModuleType):
    """The submodule blur2clip.train, callable as its function: blur2clip.train(cfg) == blur2clip.train.train(cfg)."""

    def __call__(self, *args, **kwargs):
        return self.train(*args, **kwargs)


class _Package(types.ModuleType):
    """Python binds an imported submodule to the package attribute of its name, so `blur2clip.train` becomes
    the module blur2clip/train.py as soon as anything imports it. Rather than let that silently replace the
    function, the module is made callable: `blur2clip.train(cfg)`, `from blur2clip import train; train(cfg)`
    and `blur2clip.train.TrainConfig` all work, whatever was imported first."""

    def __setattr__(self, name: str, value) -> None:
        if name == "train" and isinstance(value, types.ModuleType) and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
