"""A network whose first level has no LayerNorm division (config centre_levels 1), taught to give what
the shipped LayerNorm network gives: the speed target's faster network, held to the shipped quality.

The student starts from a centre-levels network already trained on the run's recipe
(training/trial_centre.py --levels 1); each step, both networks see the same synthetic blurred crops of
the training photos and the student's raw head (the middle frame's residual and the travel) is pulled
towards the teacher's by an L1 loss. No true frames are used: what the shipped weights do on a photo is
the target, so what the student can reach is the shipped quality, not more. AdamW, a cosine to 1%, an
average of the weights (decay 0.99) for what is written. Run from the repository root:
    python training/trial_distil.py STUDENT [--steps N] [--lr X] [--seed N] [--w-middle X] [--p-still P]
                                    [--w-still X] [--w-moving X] [--w-zero X] [--p-static-camera P]
                                    [--out DIR]
(800 steps, 1e-4, seed 5, the middle frame's 3 channels weighing as much as the travel's 2, the run's shares
of still samples and of a still camera, no still term, runs/trial-distil). Where the synthesis moved
nothing (true travel under STILL_PX), `--w-still` adds the student's gap to the teacher there and its own travel there (raw units), each
a mean over those pixels alone: the plain L1 is a mean over all pixels, where the moving ones dominate.
`--w-moving` adds the gap to the teacher as a mean over the pixels that moved alone (a small object's few
pixels weigh as much as a whole moving picture's). `--w-zero` pulls the whole head to zero on the samples
where nothing moved at all (there the truth is the input: no change, no travel), squared in units of
the still guard's threshold (STILL_BELOW, 0.03) so that the few large changes at edges, which the guard
lets through, weigh.
then  blur2clip eval --data ../shared/data/realmotion --weights runs/trial-distil/stage3.safetensors
"""

import json
import math
import sys
import time
from pathlib import Path

import torch

from blur2clip.data import open_data
from blur2clip.device import emulated
from blur2clip.losses import STILL_PX
from blur2clip.rendering import STILL_BELOW
from blur2clip.samples import StreamSampler
from blur2clip.loader import data_loader, shut_down
from blur2clip.train import Average
from blur2clip.weights import load_model, read_metadata, resolve, save
from long import SYNTH

args = sys.argv[1:]


def option(name: str, default):
    return type(default)(args[args.index(name) + 1]) if name in args else default


student_path = Path(args[0])
steps, lr, seed = option("--steps", 800), option("--lr", 1e-4), option("--seed", 5)
w_middle = option("--w-middle", 1.0)  # the middle frame's channels against the travel's
p_still, w_still = option("--p-still", SYNTH["p_still"]), option("--w-still", 0.0)
p_static = option("--p-static-camera", SYNTH["p_static_camera"])  # higher: more samples of objects alone
w_moving, w_zero = option("--w-moving", 0.0), option("--w-zero", 0.0)
out = Path(option("--out", "runs/trial-distil"))
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
torch.manual_seed(seed)
teacher = load_model("stage3").eval().requires_grad_(False)
student = load_model(student_path).train()
assert student.config.frames == teacher.config.frames and student.config.head == teacher.config.head == "travel"
average = Average(student, 0.99)
opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.9))
data = open_data("../shared/data/photos", frames=teacher.config.frames)
synth = dict(SYNTH, p_still=p_still, p_static_camera=p_static)
loader = data_loader(data.train_set(192, seed=seed * 1000 + 3, synth=synth), 8, StreamSampler(0), workers=1)
bf16 = not emulated("cpu", "bf16")
log = open(out / "log.jsonl", "a")
it, t0 = iter(loader), time.time()
for step in range(steps):
    batch = next(it)
    blurred = batch.blurred.contiguous(memory_format=torch.channels_last)
    for g in opt.param_groups:
        g["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / steps)))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        with torch.no_grad():
            target = teacher._head(blurred, *blurred.shape[2:]).float()
        pred = student._head(blurred, *blurred.shape[2:]).float()
    gap = (pred - target).abs()
    loss = (w_middle * gap[:, :3].mean() + gap[:, 3:].mean()) / (w_middle + 1)
    true = batch.travel.norm(dim=1, keepdim=True)  # px
    still, moved = (true < STILL_PX).float(), (true >= STILL_PX).float()  # NaN (unknown) is neither
    if w_still > 0:
        n = still.sum().clamp(min=1)
        loss = loss + w_still * ((gap * still).sum() / (5 * n) + (pred[:, 3:].abs() * still).sum() / (2 * n))
    if w_moving > 0:
        loss = loss + w_moving * (gap * moved).sum() / (5 * moved.sum().clamp(min=1))
    whole = still.flatten(1).all(1)  # the samples where nothing moved
    if w_zero > 0 and whole.any():
        loss = loss + w_zero * (pred[whole] / STILL_BELOW).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    average.update(student)
    if step % 20 == 19 or step in (0, steps - 1):
        rate = (time.time() - t0) / (step + 1)
        print(f"step {step + 1}/{steps} loss {loss.item():.5f}, {rate:.2f} s/step", flush=True)
        log.write(json.dumps({"step": step + 1, "loss": loss.item()}) + "\n")
        log.flush()
shut_down(it)  # the synthesis worker, else the process stays after the file is written
# What it was (the manifest and the model card read it): the teacher, this distillation, and the
# student's own training before it.
facts = {"distilled": {"teacher": resolve("stage3").name, "steps": steps, "lr": lr, "seed": seed,
                       "w_middle": w_middle, "p_still": p_still, "w_still": w_still, "w_moving": w_moving,
                       "w_zero": w_zero, "p_static_camera": p_static, "batch": 8, "crop": 192, "averaged": 0.99},
         "student": read_metadata(student_path).get("training")}
save(average.model.eval(), out / "stage3.safetensors", training=facts)
print(f"wrote {out / 'stage3.safetensors'}")
