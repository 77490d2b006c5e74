"""What the network's channel LayerNorms cost in onnxruntime: a bound for the next architecture.

    python benchmarks/layout_bound.py [--weights PATH] [--size 512] [--repeat 6]

onnxruntime's CPU kernels keep a convolutional network in a blocked channel layout (NCHWc) between
convolutions, but a LayerNorm over the channels of each pixel has no blocked kernel: every one is reached
through a reorder to channels-last, a transpose back, and a reorder into the blocked layout again (so do
the channel attention's mean and its product). This times the exported graph of the weights as they are
beside the same graph with every LayerNorm taken out (and with the attention's product as a sum, which
the blocked layout can keep), and with every LayerNorm as an elementwise tanh (a norm without
statistics), on one thread and one square tile, the runs interleaved, best of `repeat`.
The variants compute something else: the figures bound what a block without channel LayerNorms (a norm
folded into the convolutions at export, or none) could save, not a result to ship. One computes the same
frames: the shipped graph as onnxruntime optimizes it for this CPU, with each transpose from channels-last
that feeds a reorder into the blocked layout folded into that reorder (its channels_last attribute), which
onnxruntime does not do itself; its largest difference from the shipped graph's frames is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name  # noqa: E402
from model_speed import load_network  # noqa: E402


def without_norms(attention_added: bool):
    """torchnet._GraphBlock.forward with the LayerNorms taken out; attention_added: the channel attention
    added to its input, not multiplied."""
    def forward(self, inp):
        x = self.dwconv_a(self.conv1a(inp)) * self.dwconv_b(self.conv1b(inp))
        y = inp + self.conv2(x + self.sca(x) if attention_added else x * self.sca(x)) * self.beta
        return y + self.ffn2(self.ffn1a(y) * self.ffn1b(y)) * self.gamma
    return forward


def tanh_norms(self, inp):
    """torchnet._GraphBlock.forward with each LayerNorm as a bounded elementwise squash, tanh(x / 2): a
    norm without statistics (its per-channel scale and shift would fold into the 1x1 convolutions after it,
    as CentreNorm2d's do). Trained from scratch it learned as the centre norm did (the model card)."""
    n = torch.tanh(inp * 0.5)
    x = self.dwconv_a(self.conv1a(n)) * self.dwconv_b(self.conv1b(n))
    y = inp + self.conv2(x * self.sca(x)) * self.beta
    n = torch.tanh(y * 0.5)
    return y + self.ffn2(self.ffn1a(n) * self.ffn1b(n)) * self.gamma


def folded_transposes(graph: Path, out: Path) -> Path:
    """The graph as onnxruntime optimizes it here (blocked layout and all), each Transpose NHWC -> NCHW
    whose only reader is a ReorderInput folded into it; load it with optimizations off."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    proto = onnx.load(str(out))
    readers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    folded = set()
    for node in proto.graph.node:
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        users = readers.get(node.output[0], [])
        if node.op_type == "Transpose" and perm == [0, 3, 1, 2] and len(users) == 1 \
                and users[0].op_type == "ReorderInput":
            users[0].input[0] = node.input[0]
            next(a for a in users[0].attribute if a.name == "channels_last").i = 1
            folded.add(node.output[0])
    kept = [node for node in proto.graph.node if node.output[0] not in folded]
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    onnx.save(proto, str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="a weights file (default: the shipped stage 3)")
    ap.add_argument("--size", type=int, default=512, help="side of the square tile, px")
    ap.add_argument("--repeat", type=int, default=6)
    args = ap.parse_args()

    import onnxruntime as ort

    from blur2clip import torchnet

    torch.set_num_threads(1)
    model, what = load_network(args.weights)
    as_is = torchnet._GraphBlock.forward
    variants = {"as shipped": as_is, "no LayerNorm": without_norms(False),
                "no LayerNorm, attention added": without_norms(True), "tanh instead of LayerNorm": tanh_norms}
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, forward) in enumerate(variants.items()):
            torchnet._GraphBlock.forward = forward
            try:
                torchnet.export(model, Path(tmp) / f"{i}.onnx", "bound")
            finally:
                torchnet._GraphBlock.forward = as_is
            sessions[name] = ort.InferenceSession(str(Path(tmp) / f"{i}.onnx"), options,
                                                  providers=["CPUExecutionProvider"])
        folded = ort.SessionOptions()
        folded.intra_op_num_threads = folded.inter_op_num_threads = 1
        folded.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sessions["as shipped, transposes folded"] = ort.InferenceSession(
            str(folded_transposes(Path(tmp) / "0.onnx", Path(tmp) / "folded.onnx")), folded,
            providers=["CPUExecutionProvider"])
    m = model.config.multiple
    side = max(m, args.size // m * m)
    tile = np.random.default_rng(0).random((1, side, side, 3), np.float32)
    best = dict.fromkeys(sessions, float("inf"))
    out = {}
    for _ in range(args.repeat):
        for name, session in sessions.items():
            start = time.perf_counter()
            out[name] = session.run(None, {"padded": tile, "tiles": tile})[0]
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"{cpu_name()}, onnxruntime {ort.__version__}, 1 thread; {what}; one {side}x{side} tile, "
          f"best of {args.repeat}")
    for name, seconds in best.items():
        print(f"  {name:32s} {seconds:6.3f} s  {seconds / best['as shipped']:.2f}x")
    same = np.abs(out["as shipped, transposes folded"] - out["as shipped"]).max()
    print(f"  transposes folded: frames differ from the shipped graph's by {same:.1e} at most")


if __name__ == "__main__":
    main()
