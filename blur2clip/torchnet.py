"""The network through torch: on GPUs (cuda, mps), for weights without an ONNX file, and to export one.

`TorchNet` runs a loaded network on a device at a precision (autocast, with a fall-back to fp32 for good
when a reduced-precision result is unusable) and applies the still-content guard (`keep_still`);
`export` writes the ONNX graph that engine.OnnxNet runs without torch: the same network and the same
guard, fed tiles padded to the network's multiple beforehand, so its height and width stay free.
Both take and give frames channels-last (Bxhxwx3 in, BxFxhxwx3 out), as extract.py blends them.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import device as devices
from .rendering import MOVED_ABOVE, STILL_BELOW, STILL_RADIUS  # noqa: F401 -- the guard's rule, one place

log = logging.getLogger(__name__)


def keep_still(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Where no predicted frame departs from the photo by more than STILL_BELOW anywhere within
    STILL_RADIUS px, the photo itself; above MOVED_ABOVE, the frames; a soft step between.

    x: Bx3xhxw photos, y: BxFx3xhxw frames. The network changes a sharp photo or a still background a
    little in every frame (about 39 dB on sharp photos): this keeps those pixels exactly as they were,
    while the frames of anything that moved (departures far above the thresholds) pass unchanged. Chosen
    on synthetic data (training/still.py; the model card has the figures)."""
    departure = (y - x[:, None]).abs().mean(2).amax(1, keepdim=True)  # Bx1xhxw
    k = 2 * STILL_RADIUS + 1
    departure = F.max_pool2d(departure, k, 1, STILL_RADIUS)
    # The box mean one axis at a time: 2k values read a pixel, not k*k.
    for size, pad in (((k, 1), (STILL_RADIUS, 0)), ((1, k), (0, STILL_RADIUS))):
        departure = F.avg_pool2d(departure, size, 1, pad, count_include_pad=False)
    w = ((departure - STILL_BELOW) / (MOVED_ABOVE - STILL_BELOW)).clamp(0, 1)[:, None]  # Bx1x1xhxw
    return x[:, None] + w * (y - x[:, None])


class TorchNet:
    """A torch network (Bx3xhxw -> BxFx3xhxw) on a device: tiles in, guarded frames out.

    device: as device.pick; precision: as device.precision; guard: apply keep_still (a travel head's
    guard is applied where its frames are rendered, rendering.Motion). Attributes: device
    (torch.device), precision (the one in use), batch (tiles per pass), config (the network's, or None)."""

    engine = "torch"

    def __init__(self, model, device="auto", precision="auto", threads: int = 0, guard: bool = True):
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = devices.pick(device)
        self.precision = devices.precision(precision, self.device)
        self.model = devices.place(model.eval(), self.device)
        self.config = getattr(model, "config", None)
        self.guard = guard
        self.travel = getattr(self.config, "head", "frames") == "travel"
        self.batch = 1 if self.device.type == "cpu" else 4  # several tiles per pass pay off on a GPU only
        self.ops = TorchOps(self.device)
        self.out_of_memory: tuple[type[BaseException], ...] = (devices.OutOfMemory,)

    def __call__(self, tiles: np.ndarray) -> torch.Tensor:
        """Bxhxwx3 float32 tiles -> BxFxhxwx3 float32 frames on the device (a view), not clamped; a travel
        head's Bx1xhxwx5, its middle frame and travel (`motion`), not guarded."""
        x = torch.from_numpy(tiles).permute(0, 3, 1, 2)  # Bx3xhxw
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        y = self._run(x, self.precision)
        if self.precision != "fp32" and _looks_broken(y, x):
            log.warning("%s output was not usable (NaN/Inf or black); using fp32 from now on", self.precision)
            self.precision = "fp32"
            y = self._run(x, "fp32")
        with torch.inference_mode():
            y = keep_still(x.float(), y) if self.guard and not self.travel else y
        return y.permute(0, 1, 3, 4, 2)

    def _run(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        net = (lambda x: motion(self.model, x)) if self.travel else self.model
        with torch.inference_mode():
            if precision == "fp32":
                y = net(x)
            else:
                with torch.autocast(self.device.type, dtype=devices.DTYPES[precision]):
                    y = net(x)
            return y.float()  # BxFx3xhxw, or Bx1x5xhxw

    def free(self) -> None:
        devices.free(self.device)

    def to_cpu(self) -> bool:
        """After running out of memory on a GPU: go on on the CPU (False when already there)."""
        if self.device.type == "cpu":
            return False
        self.device, self.precision = torch.device("cpu"), "fp32"
        self.model = devices.place(self.model, self.device)
        self.ops = TorchOps(self.device)
        return True


def motion(model, x: torch.Tensor, xp: torch.Tensor | None = None) -> torch.Tensor:
    """A travel head's middle frame and travel as one Bx1x5xhxw result (model.motion)."""
    middle, travel = model.motion(x, xp)
    return torch.cat([middle, travel], 1)[:, None]


def _looks_broken(y: torch.Tensor, x: torch.Tensor) -> bool:
    """Reduced precision failed: NaN/Inf anywhere, or black frames from an input that is not black."""
    if not torch.isfinite(y).all():
        return True
    return bool(y.amax() < 0.5 / 255 and x.amax() > 1 / 255)


class TorchOps:
    """extract.py's blending on a torch device: the few operations whose spelling differs from numpy's
    (engine.NumpyOps is the other side)."""

    def __init__(self, device: torch.device):
        self.device = device

    def zeros(self, shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def put(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device)

    def flip(self, a: torch.Tensor) -> torch.Tensor:
        return a.flip(0)

    def copy(self, a: torch.Tensor) -> torch.Tensor:
        return a.clone()

    def l1(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.dist(a, b, 1))  # the sum of |a - b|, in one pass

    def finish(self, frames: torch.Tensor, dtype: np.dtype, clamp: bool = True) -> np.ndarray:
        """Frames changed in place: NaN -> 0, clamped to 0..1 (uint8: scaled by 255 and rounded half up),
        then to numpy on the CPU (a GPU sends the smaller result); clamp False: NaN -> 0 only (float32)."""
        with torch.inference_mode():
            frames = frames.nan_to_num_(nan=0.0)
            if clamp:
                frames = frames.clamp_(0, 1)
            if dtype == np.uint8:
                frames = frames.mul_(255).add_(0.5).to(torch.uint8)  # truncation of v + 0.5: round half up
            return frames.contiguous().cpu().numpy()


# ----------------------------------------------------------------------------------------------------
# Export to ONNX


class _Graph(torch.nn.Module):
    """What the ONNX file computes: channels-last tiles, padded and as they are, -> guarded frames, or a
    travel head's middle frame and travel (Bx1xhxwx5, as TorchNet gives them)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, padded, tiles):  # Bxh'xw'x3 (h', w': multiples of config.multiple), Bxhxwx3
        x, xp = tiles.permute(0, 3, 1, 2), padded.permute(0, 3, 1, 2)  # Bx3xhxw, Bx3xh'xw'
        if self.model.config.head == "travel":
            return motion(self.model, x, xp).permute(0, 1, 3, 4, 2)
        y = self.model.predict(xp, x)  # BxFx3xhxw
        return keep_still(x, y).permute(0, 1, 3, 4, 2)  # BxFxhxwx3


class _GraphBlock(torch.nn.Module):
    """A model.NAFBlock as the graph computes it, the same function with each gate's two halves as two
    convolutions: no channel split, which onnxruntime's blocked-layout CPU kernels lack and so convert
    around. At 720p the network took 0.94x the time, the frames equal to 1e-7."""

    def __init__(self, block):
        from .model import CentreNorm2d

        super().__init__()
        c = block.conv2.in_channels
        self.norm1, self.norm2, self.sca, self.conv2, self.ffn2 = block.norm1, block.norm2, block.sca, \
            block.conv2, block.ffn2
        self.beta, self.gamma = block.beta, block.gamma
        self.conv1a, self.conv1b = _part(block.conv1, 0, c), _part(block.conv1, c, 2 * c)
        self.dwconv_a, self.dwconv_b = _part(block.dwconv, 0, c), _part(block.dwconv, c, 2 * c)
        self.ffn1a, self.ffn1b = _part(block.ffn1, 0, c), _part(block.ffn1, c, 2 * c)
        if isinstance(self.norm1, CentreNorm2d):  # linear: folded into the 1x1 convolutions after it
            for norm, convs in ((self.norm1, (self.conv1a, self.conv1b)), (self.norm2, (self.ffn1a, self.ffn1b))):
                for conv in convs:
                    _fold_centring(norm, conv)
            self.norm1 = self.norm2 = torch.nn.Identity()

    def forward(self, inp):
        n = self.norm1(inp)
        x = self.dwconv_a(self.conv1a(n)) * self.dwconv_b(self.conv1b(n))
        y = inp + self.conv2(x * self.sca(x)) * self.beta
        n = self.norm2(y)
        return y + self.ffn2(self.ffn1a(n) * self.ffn1b(n)) * self.gamma


def _part(conv: torch.nn.Conv2d, start: int, stop: int) -> torch.nn.Conv2d:
    """Output channels start..stop of a convolution with a bias, plain or depthwise (one input per output)."""
    depthwise = conv.groups > 1
    assert conv.bias is not None and conv.groups in (1, conv.in_channels) and conv.stride == (1, 1)
    part = torch.nn.Conv2d(stop - start if depthwise else conv.in_channels, stop - start, conv.kernel_size,
                           padding=conv.padding, dilation=conv.dilation, groups=stop - start if depthwise else 1)
    part.weight.data, part.bias.data = conv.weight.data[start:stop].clone(), conv.bias.data[start:stop].clone()
    return part


def _fold_centring(norm, conv: torch.nn.Conv2d) -> None:
    """conv(norm(x)) as conv(x) alone, for a CentreNorm2d `norm` and a 1x1 `conv` with a bias:
    W (w * (x - mean x) + b) + c = (W diag(w) (I - 1/C)) x + (W b + c)."""
    w = conv.weight.data[:, :, 0, 0].double()  # out x C
    scaled = w * norm.weight.data.double()
    conv.weight.data = (scaled - scaled.mean(1, keepdim=True)).to(conv.weight.dtype)[:, :, None, None]
    conv.bias.data = (conv.bias.data.double() + w @ norm.bias.data.double()).to(conv.bias.dtype)


def _upsampler(up: torch.nn.Sequential) -> torch.nn.ConvTranspose2d:
    """A decoder's 1x1 convolution and pixel shuffle (model.Blur2Clip.ups) as the one transposed convolution
    of kernel 2 and stride 2 that computes the same values: output channel o at (2y + i, 2x + j) is the
    convolution's channel 4o + 2i + j at (y, x). onnxruntime has no blocked-layout kernel for the shuffle
    (DepthToSpace); at 720p the network took 0.92x the time, the frames the same to the last bit."""
    conv, shuffle = up
    assert isinstance(shuffle, torch.nn.PixelShuffle) and shuffle.upscale_factor == 2 and conv.bias is None
    out4, c = conv.weight.shape[:2]
    t = torch.nn.ConvTranspose2d(c, out4 // 4, 2, stride=2, bias=False)
    t.weight.data = conv.weight.data[:, :, 0, 0].reshape(out4 // 4, 2, 2, c).permute(3, 0, 1, 2).contiguous()
    return t


def _for_graph(model):
    """A copy of the model with every NAFBlock as _GraphBlock and every upsampler as `_upsampler`'s."""
    import copy

    from .model import NAFBlock

    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, NAFBlock):
                setattr(module, name, _GraphBlock(child))
    model.ups = torch.nn.ModuleList(_upsampler(up) for up in model.ups)
    return model


def export(model, path: str | os.PathLike, source_sha256: str) -> None:
    """Write the network (model.Blur2Clip, float32 on the CPU) and the still guard as an ONNX graph at
    `path` (the caller writes it atomically), with dynamic batch, height and width; the model config and
    the sha256 of the weights file it came from go in its metadata. The same weights give the same bytes."""
    import onnx
    from torch.export import Dim

    model = model.float().cpu().eval()
    m = model.config.multiple
    tiles = torch.rand(2, 2 * m - 3, 3 * m - 5, 3, generator=torch.Generator().manual_seed(0))
    padded = F.pad(tiles.permute(0, 3, 1, 2), (0, 5, 0, 3), mode="replicate").permute(0, 2, 3, 1)
    b, h, w = Dim("batch", min=1, max=1024), Dim("rows", min=1, max=8192), Dim("cols", min=1, max=8192)
    shapes = {"padded": {0: b, 1: m * h, 2: m * w}, "tiles": {0: b, 1: Dim.AUTO, 2: Dim.AUTO}}
    quiet = logging.getLogger("torch.onnx")  # its notes (torchvision absent, axis names) are not for users
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_Graph(_for_graph(model)).eval(), (padded, tiles), dynamo=True, dynamic_shapes=shapes,
                                        input_names=["padded", "tiles"], output_names=["frames"], verbose=False)
    finally:
        quiet.setLevel(level)
    proto = program.model_proto
    # Only what the weights decide: no exporter notes (source paths, stack traces, shape facts in set order).
    graph = proto.graph
    for item in (proto, graph, *graph.node, *graph.value_info, *graph.input, *graph.output, *graph.initializer):
        del item.metadata_props[:]
        item.doc_string = ""
    _store_half(graph)
    meta = {"format": "blur2clip", "config": json.dumps(model.config.to_dict()), "source_sha256": source_sha256}
    if model.config.head == "travel":  # its output is the middle frame and travel (older files rendered frames)
        meta["outputs"] = "motion"
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save_model(proto, str(Path(path)))


def _store_half(graph) -> None:
    """float32 weights that float16 holds exactly (those of a float16 weights file, as shipped) are stored
    as float16 and cast back when the graph loads: half the file, the same values."""
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        value = numpy_helper.to_array(init)
        half = value.astype(np.float16)
        if value.size < 16 or not np.array_equal(half.astype(np.float32), value):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}.f16"))
        casts.append(helper.make_node("Cast", [f"{name}.f16"], [name], to=TensorProto.FLOAT, name=f"{name}.cast"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
