"""The machine a benchmark ran on, as its first line says it: speed differs between machines (vector
instructions above all), so every figure is read beside the CPU it came from."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name and its widest vector instructions, e.g. "AMD EPYC (AVX2, no AMX)"."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    if "avx512_bf16" in flags:
        isa += " with bf16"
    return f"{name} ({isa}, {'AMX' if 'amx_tile' in flags else 'no AMX'})"
