"""Where the network runs, and at what precision: the one place for devices.

`pick` turns a name ('auto', 'cpu', 'cuda', 'cuda:1', 'mps') into a torch.device by one rule for every
command: 'auto' is this process's CUDA device (LOCAL_RANK under torchrun, else the first) when CUDA is
here, then MPS, then the CPU; a name is checked (DeviceError when that device is not here). `precision`
picks the inference precision, `train_bf16` the training one, `emulated` says when a CPU would emulate
it; `place` puts a model on a device (channels_last), and `OutOfMemory` / `free` are out-of-memory's type
and cache freeing. torch is imported when a function here first needs it (DTYPES and OutOfMemory
too), so the onnxruntime engine never loads it; `out_of_memory()` names the errors that can happen.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DeviceError, SettingsError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16", "fp16")

_CPUINFO = "/proc/cpuinfo"
_NATIVE = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


TORCH_EXTRA = "pip install 'blur2clip[torch]'"


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def has(module: str) -> bool:
    """Whether a package is installed (without importing it)."""
    return importlib.util.find_spec(module) is not None


def gpu_possible() -> bool:
    """Whether 'auto' could find a GPU, told without importing torch: torch is installed and built for
    CUDA or ROCm (torch/version.py says so), or this is a Mac with Apple silicon (MPS)."""
    if "torch" in sys.modules:  # loaded anyway: ask it
        return pick("auto").type != "cpu"
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    if sys.platform == "darwin":
        return True
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return True  # unknown: ask torch
    built = {line.split("=", 1)[0].split(":")[0].strip(): line.split("=", 1)[1].strip()
             for line in text.splitlines() if "=" in line}
    return any(built.get(k, "None") != "None" for k in ("cuda", "hip"))


def __getattr__(name: str):
    if name == "DTYPES":
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}
    if name == "OutOfMemory":
        import torch

        return getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def out_of_memory() -> tuple[type[BaseException], ...]:
    """The out-of-memory errors that can have happened: MemoryError, and torch's once torch is loaded."""
    return (MemoryError, __getattr__("OutOfMemory")) if "torch" in sys.modules else (MemoryError,)


def _mps() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> this process's CUDA device (LOCAL_RANK under torchrun, else the current one) when there is
    CUDA, then mps, then cpu.
    Anything else is checked: DeviceError names a device that is not here. A CUDA device is made the
    current one (so caches, autocast and streams use it, not GPU 0)."""
    import torch

    text = str(name)
    if text == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", _local_index())
        elif _mps():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise DeviceError(f"device {text!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {text!r}: CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", _local_index())
        count = torch.cuda.device_count()
        if device.index >= count:
            raise DeviceError(f"device {text!r}: this machine has {count} CUDA device{'s' * (count != 1)}")
        torch.cuda.set_device(device)
    elif device.type == "mps" and not _mps():
        raise DeviceError(f"device {text!r}: MPS is not available here")
    return device


def _local_index() -> int:
    """The CUDA device of this process: LOCAL_RANK under a launcher (torchrun sets it with WORLD_SIZE),
    else the current device."""
    import torch

    if "WORLD_SIZE" not in os.environ or "LOCAL_RANK" not in os.environ:
        return torch.cuda.current_device()
    rank = os.environ["LOCAL_RANK"]
    if not rank.isdigit():
        raise DeviceError(f"LOCAL_RANK={rank!r}: not a device number")
    return int(rank)


def precision(name: str, device: torch.device) -> str:
    """Inference: 'auto' -> fp32 on the CPU, bf16 on CUDA where supported (else fp16), fp16 on MPS; a
    name is checked (ValueError)."""
    import torch

    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp16" if device.type == "mps" else "fp32"
    if name not in PRECISIONS:
        raise SettingsError(f"precision {name!r}: use one of auto, {', '.join(PRECISIONS)}")
    return name


def train_bf16(name: str, device: torch.device) -> bool:
    """Training: whether the forward pass runs under bf16 autocast ('auto': on a CUDA device that has
    bf16; the weights stay float32). ValueError for a name other than auto, fp32, bf16."""
    import torch

    if name not in ("auto", "fp32", "bf16"):
        raise SettingsError(f"unknown precision {name!r}; one of auto, fp32, bf16")
    return name == "bf16" or (name == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())


def emulated(device: str, precision: str) -> str | None:
    """A one-line warning when bf16 or fp16 runs on a CPU without the instructions for it (then it is
    emulated, several times slower than fp32); None otherwise, or when the CPU's flags are unknown."""
    if device != "cpu" or precision not in _NATIVE:
        return None
    try:
        with open(_CPUINFO, encoding="ascii", errors="replace") as f:
            flags = {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return None
    if not flags or flags & set(_NATIVE[precision]):
        return None
    return (f"--precision {precision}: this CPU has no {' or '.join(_NATIVE[precision])}, so {precision} is "
            "emulated and runs several times slower than --precision fp32")


def place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model on `device`, its convolutions channels_last (the faster layout on CPUs and GPUs; MPS
    keeps the plain one)."""
    import torch

    model = model.to(device)
    if device.type != "mps":
        model = model.to(memory_format=torch.channels_last)
    return model


def channels_last_for_training(model: torch.nn.Module) -> torch.nn.Module:
    """channels_last for the convolutions. Parameters of 1x1 spatial size keep the plain strides that their
    gradients come with (the same memory either way), or DDP warns that grad strides do not match."""
    import torch

    model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        if p.dim() == 4 and p.shape[2:] == (1, 1):
            p.data = p.data.clone(memory_format=torch.contiguous_format)
    return model


def free(device: torch.device) -> None:
    """Give the device's cached memory back after running out of it."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
