"""Another CPU engine beside onnxruntime: OpenVINO on the same exported graph, measured to choose by.

    python benchmarks/engines.py [--onnx PATH] [--threads 2] [--repeat 4]

OpenVINO is not a dependency: install it into a scratch folder (`pip install --target DIR openvino`) and
put DIR on PYTHONPATH to run this. For the shipped ONNX graph (stage 3 unless --onnx names one), prints
each engine's import and load time, then one whole 1280x720 pass and one 512 px tile (best of `repeat`,
interleaved) in float32, and OpenVINO in bf16 too (its inference precision on a CPU with bf16
instructions), with the largest difference from onnxruntime's output: the engine must give the same
frames within 1e-4. Every figure comes from this one run: compare them as ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", default=str(ROOT / "weights" / "blur2clip-w16-stage3.onnx"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=4)
    args = ap.parse_args()
    print(f"{cpu_name()}, {args.threads} threads, {Path(args.onnx).name}")

    start = time.perf_counter()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    print(f"  onnxruntime {ort.__version__}: import and load {time.perf_counter() - start:.2f} s")
    runs = {"onnxruntime f32": lambda feeds: session.run(None, feeds)[0]}
    try:
        start = time.perf_counter()
        import openvino as ov
    except ImportError:
        print("  OpenVINO is not installed: nothing to compare (see the docstring)")
        return
    core = ov.Core()
    model = core.read_model(args.onnx)
    for precision in ("f32", "bf16"):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": args.threads,
                                                     "INFERENCE_PRECISION_HINT": precision,
                                                     "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        runs[f"OpenVINO {precision}"] = lambda feeds, r=request: next(iter(r.infer(feeds).values()))
    print(f"  OpenVINO {ov.__version__}: import, read and compile (both precisions) "
          f"{time.perf_counter() - start:.2f} s")

    rng = np.random.default_rng(0)
    for h, w in ((720, 1280), (512, 512)):
        image = rng.random((1, h, w, 3), np.float32)
        feeds = {"padded": image, "tiles": image}
        reference = runs["onnxruntime f32"](feeds)
        diffs = {name: float(np.abs(run(feeds) - reference).max()) for name, run in runs.items()}
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeat):
            for name, run in runs.items():
                t = time.perf_counter()
                run(feeds)
                best[name] = min(best[name], time.perf_counter() - t)
        base = best["onnxruntime f32"]
        print(f"  {w}x{h}, one pass (best of {args.repeat}):")
        for name, seconds in best.items():
            print(f"    {name:18s} {seconds:6.3f} s  {seconds / base:5.2f}x onnxruntime  "
                  f"largest difference {diffs[name]:.1e}")


if __name__ == "__main__":
    main()
