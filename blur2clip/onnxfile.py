"""The ONNX file of a weights file: the same network, and the still guard, as a graph that onnxruntime runs
without torch (engine.py). It sits beside the .safetensors file under the same name (`blur2clip weights
export` writes it; training/ship.py for the shipped files, listed in the manifest with their sha256), and
its metadata holds the model config and the sha256 of the file it was made from."""

from __future__ import annotations

import os
from pathlib import Path

from .device import TORCH_EXTRA, has
from .errors import WeightsError, output_error
from .weights import build, manifest_path, mismatch, read_manifest, resolve, sha256


def onnx_for(path: str | os.PathLike) -> Path | None:
    """The ONNX file that holds the weights at `path`: `path` itself for a .onnx file, else the .onnx file
    of the same name beside it, when there is one (None otherwise). A shipped one is checked against the
    manifest's sha256 (WeightsError when it fails); that any one was made from these very weights is
    checked when it is loaded (its metadata names the sha256 of the file it came from)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return path
    onnx = path.with_suffix(".onnx")
    if not onnx.is_file():
        return None
    if path.parent == manifest_path().parent:
        for entry in read_manifest().values():
            if entry.get("file") == path.name and entry.get("onnx"):
                reason = mismatch(onnx, entry["onnx"]["sha256"], entry["onnx"]["size"])
                if reason:
                    raise WeightsError(f"{onnx}: {reason} with {manifest_path()}; reinstall blur2clip")
    return onnx


def export_onnx(source: str | os.PathLike, out: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Write the ONNX file of a weights file (name, path or URL; see resolve) for the onnxruntime engine:
    by default beside it with the suffix .onnx, where `--weights FILE.safetensors` finds it. Exporting the
    same weights again gives the same bytes. An output is written as the clips are (files.atomic_file:
    whole or not at all, never over an existing file unless `overwrite`; MediaError otherwise). Needs
    torch, onnx and onnxscript."""
    from .files import atomic_file, check_target

    path = resolve(source)
    out = Path(out).expanduser() if out is not None else path.with_suffix(".onnx")
    if out.suffix != ".onnx":
        raise output_error(out, "an ONNX file's name ends in .onnx")
    check_target(out, overwrite, folder=False)
    missing = [m for m in ("torch", "onnx", "onnxscript") if not has(m)]
    if missing:
        raise WeightsError(f"{path}: exporting needs {', '.join(missing)} ({TORCH_EXTRA})")
    from .torchnet import export

    model, _ = build(path)
    return atomic_file(out, overwrite, lambda tmp: export(model, tmp, sha256(path)))
