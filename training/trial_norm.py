"""Which norm for the next long run: the LayerNorm of today's blocks against a CentreNorm (no division, so
the exported graph has no norm at all: model.CentreNorm2d), each trained from scratch at small scale.

A LayerNorm network does not carry over: its norms' weights divided by one fitted spread each (s =
E[sigma^2] / E[sigma] over synthetic samples), the long run's weights overflowed to NaN within the
encoder (without the division the gates' products grow block by block), so the choice is made from scratch:
the long run's design and synthesis, the three stages of 300, 300 and 900 steps of 128 px crops, batch
8, the default learning rate, seed 0; two runs differ only in `norm`. Run from the repository root:
    python training/trial_norm.py NORM [--resume]       (NORM: layer or centre)
then  blur2clip eval --data ../shared/data/realmotion --weights runs/norm-NORM/stage3.safetensors --frames 7
"""

import sys
from dataclasses import replace

from blur2clip.train import TrainConfig, train
from long import MODEL, SYNTH, W_MIDDLE

norm = sys.argv[1]
train(TrainConfig(data="../shared/data/photos", out=f"runs/norm-{norm}", stage="all", steps=[300, 300, 900],
                  model=replace(MODEL, norm=norm), synth=SYNTH, batch=8, crop=128, w_middle=W_MIDDLE,
                  w_reblur=1.0, w_still=0.03, seed=0, workers=0, threads=1, ema=0.99, val_every=300,
                  ckpt_every=100, precision="bf16", compile=True, resume="--resume" in sys.argv))
