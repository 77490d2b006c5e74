"""Which engine runs the network: onnxruntime on the CPU (no torch), or torch (GPUs, and weights that
have no ONNX file). Nothing here imports torch; torchnet.py is the torch side.

`load` picks by one rule. engine "auto": onnxruntime when the device is the CPU (asked for, or 'auto'
on a machine whose torch has no GPU, or that has no torch), onnxruntime is installed, the weights have
an ONNX file made from them (beside the .safetensors file, same name; onnxfile.onnx_for) and nothing
asks for torch (a torch `model`, bf16/fp16, the guard switched off); torch otherwise. "onnx" and
"torch" insist, and say in one line what is missing (DeviceError: exit code 6; WeightsError: 5).

An engine's network takes Bxhxwx3 float32 tiles (numpy) and gives BxFxhxwx3 float32 frames, guarded
(torchnet.keep_still), not clamped: numpy from onnxruntime, a torch tensor on its device from torch;
its `ops` are the few blending operations that differ between the two (NumpyOps here, TorchOps there).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .device import TORCH_EXTRA, cpu_cores, gpu_possible, has
from .errors import DeviceError, SettingsError, WeightsError
from .netconfig import ModelConfig

log = logging.getLogger(__name__)

ENGINES = ("auto", "onnx", "torch")


def load(weights=None, model=None, device: str = "auto", precision: str = "auto", threads: int = 0,
         guard: bool = True, engine: str = "auto"):
    """The network that the options ask for: an OnnxNet or a torchnet.TorchNet (see the module's rule)."""
    if engine not in ENGINES:
        raise SettingsError(f"engine {engine!r}: use one of {', '.join(ENGINES)}")
    cpu = str(device) == "cpu" or (str(device) == "auto" and not gpu_possible())
    if engine == "onnx":
        why = ("a torch model was given" if model is not None else
               f"device {device} is not the CPU" if not cpu else
               f"precision {precision} runs in torch only" if precision not in ("auto", "fp32") else
               "the still guard is part of the ONNX graph" if not guard else
               "onnxruntime is not installed (pip install onnxruntime)" if not has("onnxruntime") else None)
        if why:
            raise DeviceError(f"--engine onnx: {why}; use --engine torch")
    path = onnx = None
    if model is None:
        from .onnxfile import onnx_for
        from .weights import resolve, sha256

        path = resolve(weights)
        if engine == "onnx" or (engine == "auto" and cpu and precision in ("auto", "fp32") and guard
                                and has("onnxruntime")):
            onnx = onnx_for(path)
            net = OnnxNet(onnx, threads) if onnx is not None else None
            if net is not None and not net.stale and (onnx == path or net.source == sha256(path)):
                return net
            if net is not None:  # a file left from other weights of that name (a run that went on)
                why = "made by an older blur2clip" if net.stale else f"made from other weights than {path}"
                if engine == "onnx":
                    raise WeightsError(f"{onnx}: {why}; export it again "
                                       f"(blur2clip weights export {path} --overwrite)")
                log.warning("%s was %s; using torch", onnx, why)
                onnx = None
            if engine == "onnx":
                raise WeightsError(f"{path}: no ONNX file made from these weights beside it; make one with "
                                   f"`blur2clip weights export {path}`, or use --engine torch")
    if not has("torch"):
        why = ("--engine torch" if engine == "torch" else
               "onnxruntime is not installed" if not has("onnxruntime") else
               f"device {device}" if not cpu else
               f"precision {precision}" if precision not in ("auto", "fp32") else
               "the still guard is off" if not guard else f"{path.name} has no ONNX file beside it")
        raise DeviceError(f"this needs torch ({TORCH_EXTRA}): {why}")
    from .torchnet import TorchNet

    if model is None:
        from .weights import load_model

        model = load_model(path)
    return TorchNet(model, device, precision, threads, guard)


class OnnxNet:
    """An exported graph (torchnet.export) in onnxruntime, on the CPU: tiles are padded to the network's
    multiple here (numpy, edge values repeated, as the network pads), so the graph's size stays free.
    Attributes as TorchNet's: device 'cpu', precision 'fp32', batch 1, config (from the file's metadata);
    and `lanes`: how many tiles the extractor runs side by side, one thread each (the threads asked for,
    or the cores this process may use). This small network keeps one core busier than onnxruntime's
    threads share one pass between them: measured on a 2-core AMD EPYC, the six 512 px tiles of a 720p
    photo took 0.7-0.85x the time two at a time (one thread each) as one at a time on two threads, with
    the same frames bit for bit (benchmarks/clip_speed.py prints both). A single pass (a photo that fits
    one tile) still uses every thread."""

    engine, device, precision, batch = "onnx", "cpu", "fp32", 1
    out_of_memory: tuple[type[BaseException], ...] = ()

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        self.path, self.ops, self.threads = Path(path), NumpyOps(), threads
        self.lanes = threads if threads > 0 else cpu_cores()
        self._sessions: dict[int, object] = {}
        session = self._session(self.threads if self.lanes == 1 else 1)  # the one tiled photos use
        meta = session.get_modelmeta().custom_metadata_map
        try:
            self.config = ModelConfig.from_dict(json.loads(meta["config"]))
        except (KeyError, ValueError, TypeError) as e:
            raise WeightsError(f"{path}: not a usable blur2clip ONNX file (config: {e})") from None
        self.source = meta.get("source_sha256")  # of the weights file it was made from
        # A travel head's graph made before its output became the middle frame and travel: export again
        self.stale = self.config.head == "travel" and meta.get("outputs") != "motion"

    def _session(self, threads: int):
        """The onnxruntime session with `threads` intra-op threads (0: onnxruntime's choice), made once."""
        if threads in self._sessions:
            return self._sessions[threads]
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep rather than spin, as OMP_WAIT_POLICY=PASSIVE makes torch's (cli.main): on a busy
        # 2-core machine that made 720p 1.6-2x faster (benchmarks/clip_speed.py). OMP_WAIT_POLICY=ACTIVE spins.
        spin = os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE"
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 -- onnxruntime's own error types for a damaged file
            raise WeightsError(f"{self.path}: not a usable blur2clip ONNX file ({' '.join(str(e).split())[:200]})") from None
        self._sessions[threads] = session
        return session

    def __call__(self, tiles: np.ndarray, lane: bool = False, release: bool = False) -> np.ndarray:
        """Bxhxwx3 float32 -> BxFxhxwx3 float32 (guarded, not clamped), or a travel head's Bx1xhxwx5 (its
        middle frame and travel). lane: one of `lanes` passes run side by side (one thread); otherwise
        every thread asked for. release: give the memory onnxruntime kept for its work back when done
        (the last passes of a photo: about 0.35 GB at 512 px tiles, two side by side; shrinking it after
        every pass cost 1.1x the time)."""
        m = self.config.multiple
        h, w = tiles.shape[1:3]
        padded = np.pad(tiles, ((0, 0), (0, -h % m), (0, -w % m), (0, 0)), mode="edge") if h % m or w % m else tiles
        session = self._session(1 if lane and self.lanes > 1 else self.threads)
        options = None
        if release:
            import onnxruntime as ort

            options = ort.RunOptions()
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return session.run(None, {"padded": padded, "tiles": tiles}, options)[0]

    def free(self) -> None:
        pass

    def to_cpu(self) -> bool:
        return False


class NumpyOps:
    """extract.py's blending in numpy: the operations whose spelling differs from torch's (TorchOps)."""

    @staticmethod
    def zeros(shape) -> np.ndarray:
        return np.zeros(shape, np.float32)

    @staticmethod
    def put(a: np.ndarray) -> np.ndarray:
        return a

    @staticmethod
    def flip(a: np.ndarray) -> np.ndarray:
        return a[::-1]

    @staticmethod
    def copy(a: np.ndarray) -> np.ndarray:
        return a.copy()

    @staticmethod
    def l1(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).sum(dtype=np.float64))

    @staticmethod
    def finish(frames: np.ndarray, dtype: np.dtype, clamp: bool = True) -> np.ndarray:
        """Frames changed in place: NaN -> 0, clamped to 0..1 (uint8: scaled by 255, rounded half up);
        clamp False: NaN -> 0 only (float32)."""
        np.nan_to_num(frames, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        if not clamp:
            return np.ascontiguousarray(frames)
        np.clip(frames, 0, 1, out=frames)
        if dtype == np.uint8:
            frames *= 255
            frames += 0.5
            return frames.astype(np.uint8)  # truncation of v + 0.5: round half up
        return np.ascontiguousarray(frames)
