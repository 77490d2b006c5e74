"""The long training run behind the next shipped weights, trained in stretches over days on a 2-core CPU.

Run it from its own git worktree and virtual environment, pinned to a commit, so that editing the project
never changes the code of the run in progress (see training/README.md for the whole routine):
    nohup nice -n 5 .venv/bin/python training/long.py --resume > runs/long.out 2>&1 &
Every stage file, checkpoint, log.jsonl, curves.png and config.json lands in runs/long/. On a fresh
machine without the run folder, continue from the weights committed in training/long-run.safetensors:
    python training/long.py --init training/long-run.safetensors
(the optimizer state is lost; the stage it was in starts over from those weights).
"""

import sys

from blur2clip.device import emulated
from blur2clip.model import ModelConfig
from blur2clip.train import TrainConfig, train

# The motion statistics of the trial "objects-k21" (training/trial_motion.py; the model card has the
# realmotion figures): a steadier camera, more and longer object motion, samples where nothing moves;
# 2 sub-frames per frame at least.
SYNTH = dict(p_static_camera=0.4, layer_probs=(0.1, 0.4, 0.3, 0.2), layer_px=24.0, layer_tail=0.7,
             camera_tail=1.0, p_still=0.05, min_sub=2,
             # From stage 3 step 6904 on: a background out of focus in 15% of the samples, blur that is not
             # motion and stays in the frames (trial "defocus" in training/trial_long.py: a sharp photo's
             # worst frame 48.7 dB against 39.6, a defocused one's 41.4 against 27.5; realmotion level).
             p_defocus=0.15)
# The travel head (model.py; trial "travel" in the model card): the middle frame and each pixel's travel,
# scored on 21 instants per pass (3 per window of 7). Only the middle instant teaches the middle frame, so
# its weight keeps its share of the loss at the trial's third: (1 + 9) / (21 + 9).
MODEL = ModelConfig(frames=21, head="travel")
W_MIDDLE = 9.0


def main(args: list[str]) -> None:
    # --init: the weights to start from (a frames head gets the travel head, its middle frame kept); the
    # run began from trial "travel" (600 steps), and a fresh machine goes on from the weights committed
    # at the end of the last stretch (training/long-run.safetensors). Without --init: the shipped weights.
    init = args[args.index("--init") + 1] if "--init" in args else "stage3"
    train(TrainConfig(
        data="../shared/data/photos", out="runs/long", stage="3", steps=[300, 300, 60000],
        init=init, model=MODEL, synth=SYNTH,
        batch=8, crop=192, lr=5e-4, warmup=100, w_middle=W_MIDDLE, w_reblur=1.0, ema=0.999,
        # From stage 3 step 4914 on: the travel made where the synthesis is still costs 0.03 per px (trial
        # "still" in training/trial_long.py: a sharp photo 9.4 dB nearer to itself, realmotion level).
        w_still=0.03,
        # From stage 3 step 5229 on (run step 21,129): each frame's error beyond the blur's own counts once
        # more (trial "harm" in training/trial_long.py: realmotion level, the nearly still scene 0.28 dB
        # nearer its photo, a sharp photo's worst frame 49.9 dB against 44.4, a 4 px object no longer loses).
        w_harm=1.0,
        # One thread for the network and one synthesis worker (from stage 3 step 3001 on): with the loss
        # compiled, the network's step (1.4 s alone) and the synthesis of a batch (1.2-1.5 s) each fit one
        # core. Measured: two threads beside one worker 2.3-2.5 s per step (oversubscribed), one thread
        # beside two workers 1.8-2.0 s (three processes on two cores), one and one 1.5-1.6 s.
        workers=1, threads=1, val_every=1000, ckpt_every=100, resume="--resume" in args,
        # bf16 autocast from stage 3 step 834 on (weights and loss in float32): on this CPU's avx512_bf16
        # the network's forward and backward take 0.7x the time; a CPU without bf16 instructions would
        # emulate it several times slower, so there the run stays in fp32 (where the CPU's flags cannot be
        # read, bf16). A run started anew with --init trains in bf16 from its first step.
        precision="fp32" if emulated("cpu", "bf16") else "bf16",
        # The loss through torch.compile from stage 3 step 1414 on: its dozens of passes over the 21 frames
        # took 60% of a step; compiled, the step takes 0.53x the time (training/README.md).
        compile=True,
    ))


if __name__ == "__main__":
    main(sys.argv[1:])
