"""Weights files: safetensors with the model config (and training facts) in the file's own metadata.

Loading never runs code from a file. The shipped default weights live in the package (`_weights/`,
mapped from the repository's `weights/` folder) so the tool works offline out of the box.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DEFAULT = "default"
SHIPPED = {  # name -> file name of the weights that ship inside the package
    "default": "blur2clip-w16-stage3.safetensors",
    "stage1": "blur2clip-w16-stage1.safetensors",
    "stage2": "blur2clip-w16-stage2.safetensors",
    "stage3": "blur2clip-w16-stage3.safetensors",
}


class WeightsError(Exception):
    """A weights file that cannot be found or used; the message names the file and the reason."""


def shipped_dir() -> Path:
    """Folder of the weights that ship with the package (installed) or the repository (source tree)."""
    here = Path(__file__).resolve().parent
    for d in (here / "_weights", here.parent / "weights"):
        if d.is_dir():
            return d
    return here / "_weights"


def resolve(name_or_path: str | os.PathLike | None) -> Path:
    """A weights name ('default', 'stage1', ...) or a file path -> the file's path."""
    key = str(name_or_path or DEFAULT)
    if key in SHIPPED:
        path = shipped_dir() / SHIPPED[key]
    else:
        path = Path(key).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    return path


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(model, path: str | os.PathLike, **info) -> Path:
    """Write the model's tensors and config (plus any JSON-able `info`) atomically as safetensors."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "blur2clip", "config": json.dumps(model.config.to_dict())}
    meta.update({k: json.dumps(v) for k, v in info.items()})
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata stored in a weights file (config, training facts)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise WeightsError(f"{path}: not a readable safetensors weights file ({e})") from None
    if "config" not in meta:
        raise WeightsError(f"{path}: no blur2clip model config in the file's metadata")
    return {k: json.loads(v) if k != "format" else v for k, v in meta.items()}


def load_model(name_or_path: str | os.PathLike | None = None, device="cpu"):
    """Build the network from a weights file (name or path), on `device`, in eval mode."""
    from safetensors.torch import load_file

    from .model import Blur2Clip, ModelConfig

    path = resolve(name_or_path)
    meta = read_metadata(path)
    model = Blur2Clip(ModelConfig.from_dict(meta["config"]))
    try:
        model.load_state_dict(load_file(str(path), device="cpu"))
    except RuntimeError as e:
        raise WeightsError(f"{path}: tensors do not match the stored config ({str(e).splitlines()[0]})") from None
    return model.to(device).eval()
