"""A burst of the long run on a borrowed GPU: stage 3 of the long run's recipe for a fixed wall time.

    python training/gpu.py --seconds 420 --init training/long-run.safetensors --data PHOTOS --out RUN --export DIR

The GPU runs the network; the synthesis runs in worker processes, which set the pace: on the CPU (an H200's
15 workers gave 0.31-0.34 s per step of 8, about 24 samples/s) or, with --synth-device cuda (the default
here where there is a GPU; not yet run on one), driving the GPU, which renders the motion
(benchmarks/synth_speed.py). So the script first measures how many samples per second the workers make
(after as long again of warming up: the second burst's probe, without it, measured 10.3 samples/s probably
while the workers were still decoding their photos, where training ran at 24), then sizes the stage (its
cosine learning rate needs the step count up front) to end inside the time given. If the stage runs late
anyway, a timer stops it with the same signal a user would send (the checkpoint is written, `Stopped`
raised). Either way DIR receives the averaged weights (float16 safetensors, as
training/long-run.safetensors), the run's log.jsonl, curves.png and config.json, and a short JSON of the
figures (steps, samples/s, s/step). Continue on any machine with
`python training/long.py --init DIR/gpu-run.safetensors`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from long import MODEL, SYNTH, W_MIDDLE  # the long run's recipe, one place

from blur2clip.data import StreamSampler, open_data
from blur2clip.model import Blur2Clip, ModelConfig
from blur2clip.loader import data_loader, shut_down
from blur2clip.train import Stopped, TrainConfig, train
from blur2clip.weights import load_model, save


def sample_rate(data_root: str, crop: int, workers: int, seconds: float, device: str) -> float:
    """Samples per second that `workers` processes synthesize, rendering on `device`: counted over `seconds`
    after as many seconds of warming up (each worker decodes the photos it draws once, then keeps them)."""
    data = open_data(data_root, "auto", 7, MODEL.frames)
    loader = data_loader(data.train_set(crop, seed=999, synth=SYNTH, device=device), 8, StreamSampler(10**9),
                         workers, device)
    it = iter(loader)
    try:
        for _ in range(workers):  # every worker has started and made its first batch
            next(it)
        warm = time.time()
        while time.time() - warm < seconds:
            next(it)
        t0, n = time.time(), 0
        while time.time() - t0 < seconds:
            n += len(next(it)[0])
        return n / (time.time() - t0)
    finally:
        shut_down(it)


def export(run: Path, dest: Path, facts: dict) -> None:
    """The averaged weights as float16 (from the stage file, else the checkpoint), the log and the figures."""
    dest.mkdir(parents=True, exist_ok=True)
    stage = run / "stage3.safetensors"
    if stage.is_file():
        model, source = load_model(stage), stage.name
    else:
        ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
        model = Blur2Clip(ModelConfig.from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["ema"]["model"] if ckpt.get("ema") else ckpt["model"])
        source = f"checkpoint.pt step {ckpt['step']}"
    save(model.eval(), dest / "gpu-run.safetensors", half=True, training={"gpu_run": {**facts, "from": source}})
    for name in ("log.jsonl", "curves.png", "config.json"):
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    (dest / "gpu-run.json").write_text(json.dumps({**facts, "from": source}, indent=1))
    print(f"exported {source} -> {dest / 'gpu-run.safetensors'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, required=True, help="wall time for everything, export included")
    ap.add_argument("--init", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--export", required=True)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--synth-device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--probe", type=float, default=15.0,
                    help="seconds of measuring the synthesis rate (after as many of warming up)")
    ap.add_argument("--val-count", type=int, default=16)
    args = ap.parse_args()
    start = time.time()
    deadline = start + args.seconds - 25  # leave time to export

    rate = sample_rate(args.data, args.crop, args.workers, args.probe, args.synth_device)
    setup = 20 + args.val_count * 1.0  # model, validation set (made in this process), workers' start
    budget = deadline - time.time() - setup
    steps = max(20, int(0.9 * budget * rate / args.batch))
    print(f"{args.workers} workers make {rate:.1f} samples/s (rendering on {args.synth_device}); {budget:.0f} s "
          f"left: {steps} steps of {args.batch}", flush=True)
    timer = threading.Timer(max(1.0, deadline - time.time()), lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    t0 = time.time()
    cfg = TrainConfig(
        data=args.data, out=args.out, stage="3", steps=[steps], init=args.init, model=MODEL,
        synth=SYNTH, batch=args.batch, crop=args.crop, lr=args.lr, warmup=min(100, steps // 10),
        w_middle=W_MIDDLE, w_reblur=1.0, ema=0.999, workers=args.workers, synth_device=args.synth_device,
        threads=2, val_every=max(100, steps // 5), val_count=args.val_count,
        ckpt_every=200, seed=1)  # seed 1: other samples than the CPU run's stream (seed 0)
    stopped = False
    try:
        train(cfg)
    except Stopped as e:
        stopped = True
        print(e, flush=True)
    timer.cancel()
    logged = Path(args.out) / "log.jsonl"  # written from the first log_every steps on
    log = [json.loads(line) for line in logged.read_text().splitlines()] if logged.is_file() else []
    done = max((r.get("step", 0) for r in log if "stage" in r), default=0)
    facts = dict(steps_planned=steps, steps_logged=done, stopped_early=stopped, samples_per_s=round(rate, 1),
                 batch=args.batch, crop=args.crop, workers=args.workers, synth_device=args.synth_device,
                 train_s=round(time.time() - t0),
                 device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                 torch=torch.__version__, val=[r["val"] for r in log if "val" in r][-1:])
    export(Path(args.out), Path(args.export), facts)


if __name__ == "__main__":
    main()
