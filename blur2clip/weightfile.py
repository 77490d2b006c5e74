"""One weights file: hashing, checking its size and sha256, saving, and building the network from it.

A weights file is safetensors: the network's tensors (float32, float16 or bfloat16) and, in the file's
metadata, the model config and training facts as JSON. Nothing is built from a file before its config
has passed ModelConfig.from_dict and its tensors' names, shapes and types match the network that config
describes (compared on the meta device, where building costs no memory).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


from .files import atomic_path
from .errors import WeightsError  # noqa: F401 -- raised here, and the API of weights


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mismatch(path: str | os.PathLike, sha: str | None = None, size: int | None = None) -> str | None:
    """What is wrong with the file at `path` against the expected size and sha256 (those given), or None."""
    if size is not None and (n := os.path.getsize(path)) != size:
        return f"size mismatch (expected {size} bytes, got {n})"
    if sha and (got := sha256(path)) != sha:
        return f"sha256 mismatch (expected {sha[:12]}…, got {got[:12]}…)"
    return None


def save(model, path: str | os.PathLike, half: bool = False, **info) -> Path:
    """Write the model's tensors and config (plus any JSON-able `info`) atomically as safetensors.

    half: store the tensors as float16 (half the size; loading casts them back to the model's float32)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float16 if half and v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    meta = {"format": "blur2clip", "config": json.dumps(model.config.to_dict())}
    meta.update({k: json.dumps(v) for k, v in info.items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # the mode any new file gets (safetensors creates its files 0600)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata stored in a weights file (config, training facts); the config is checked
    (types and ranges, see ModelConfig.from_dict) before anything is built from it."""
    from safetensors import safe_open

    from .netconfig import ModelConfig

    try:
        with safe_open(str(path), framework="numpy") as f:  # numpy: no torch to read the header
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise WeightsError(f"{path}: not a readable safetensors weights file ({_one_line(e)})") from None
    if "config" not in meta:
        raise WeightsError(f"{path}: no blur2clip model config in the file's metadata")
    out = {}
    for key, value in meta.items():
        try:
            out[key] = json.loads(value) if key != "format" else value
        except ValueError as e:
            raise WeightsError(f"{path}: metadata {key!r} is not JSON ({e})") from None
    try:
        ModelConfig.from_dict(out["config"])
    except ValueError as e:
        raise WeightsError(f"{path}: {e}") from None
    return out


DTYPES = ("F32", "F16", "BF16")  # tensors a weights file may hold (cast to float32 when loaded)


def _check_tensors(path: Path, model) -> None:
    """WeightsError unless the file holds exactly the model's tensors, with its shapes, as floats."""
    from safetensors import safe_open

    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: (f.get_slice(k).get_shape(), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 -- safetensors' own error types
        raise WeightsError(f"{path}: not a readable safetensors weights file ({_one_line(e)})") from None
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    if missing or extra:
        what = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        what += [f"{len(extra)} unexpected (e.g. {extra[0]})"] if extra else []
        raise WeightsError(f"{path}: tensors do not match the stored config: {', '.join(what)}")
    for key, shape in expected.items():
        got, dtype = found[key]
        if list(got) != shape:
            raise WeightsError(f"{path}: tensor {key} has shape {list(got)}, the stored config needs {shape}")
        if dtype not in DTYPES:
            raise WeightsError(f"{path}: tensor {key} is {dtype}; weights are F32, F16 or BF16")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def build(path: Path):
    """The network described by the file at `path`, with its tensors, on the CPU.

    The config is checked first, then the tensors' names, shapes and types against a network built on
    the meta device (no memory), so a file cannot make this allocate more than its tensors hold."""
    from .device import TORCH_EXTRA, has

    if not has("torch"):
        raise WeightsError(f"{path}: a .safetensors file is loaded with torch, which is not installed "
                           f"({TORCH_EXTRA}); its ONNX file beside it needs no torch")
    import torch
    from safetensors.torch import load_file

    from .model import Blur2Clip, ModelConfig

    meta = read_metadata(path)
    config = ModelConfig.from_dict(meta["config"])
    with torch.device("meta"):
        skeleton = Blur2Clip(config)
    _check_tensors(path, skeleton)
    try:
        tensors = load_file(str(path), device="cpu")  # device: CUDA-saved files load anywhere
    except Exception as e:  # noqa: BLE001 -- SafetensorError and the like for damaged data
        raise WeightsError(f"{path}: damaged tensor data ({_one_line(e)})") from None
    model = Blur2Clip(config)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise WeightsError(f"{path}: tensors do not match the stored config ({str(e).splitlines()[0]})") from None
    return model, meta


def check_file(path: str | os.PathLike) -> dict:
    """The file's metadata if it is a usable blur2clip weights file; else WeightsError."""
    return build(Path(path))[1]


def unusable(path: Path) -> str | None:
    try:
        check_file(path)
    except WeightsError as e:
        return str(e).removeprefix(f"{path}: ")
    return None
