"""Before the machine goes: keep what a fresh machine needs to continue the long run.

    python training/snapshot.py [RUN]          (RUN: ../run/runs/long by default)

Writes training/long-run.safetensors (float16) from the run's newest weights — the averaged weights of
the checkpoint when it has them, else the checkpoint's own, else the newest stage file — and copies the
run's log.jsonl, curves.png and config.json into training/notes/. Prints what it took.
"""

import shutil
import sys
from pathlib import Path

import torch

from blur2clip.model import Blur2Clip, ModelConfig
from blur2clip.weights import load_model, save

here = Path(__file__).resolve().parent
run = Path(sys.argv[1] if len(sys.argv) > 1 else here.parent.parent / "run" / "runs" / "long")
ckpt_path = run / "checkpoint.pt"
if ckpt_path.is_file() and torch.load(ckpt_path, map_location="cpu", weights_only=True)["step"] > 0:
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = Blur2Clip(ModelConfig.from_dict(ckpt["config"]))
    averaged = bool(ckpt.get("ema"))
    model.load_state_dict(ckpt["ema"]["model"] if averaged else ckpt["model"])
    source = f"{ckpt_path} (stage {ckpt['stage']}, step {ckpt['step']}, {'averaged' if averaged else 'raw'})"
    info = {"stage": ckpt["stage"], "step": ckpt["step"], "averaged": averaged}
else:
    stage_file = sorted(run.glob("stage*.safetensors"))[-1]
    model, source, info = load_model(stage_file), str(stage_file), {"file": stage_file.name}
save(model.eval(), here / "long-run.safetensors", half=True, training={"long_run": info})
notes = here / "notes"
notes.mkdir(exist_ok=True)
for name in ("log.jsonl", "curves.png", "config.json"):
    if (run / name).is_file():
        shutil.copy2(run / name, notes / name)
print(f"training/long-run.safetensors <- {source}; notes copied to {notes}")
