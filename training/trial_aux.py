"""Does the travel head's middle frame lack supervision? Trained from scratch beside auxiliary frames.

The travel head's deblurring learns from its middle instant alone (the other instants move the middle
frame and, held, train only the travel), where a frames head's learns from every frame. Here the same
network also predicts `aux_frames` frames as a frames head would (model.aux_frames: a second output
from the same last features, for training only), scored at the centres of as many windows (w_aux);
`trial_norm.py layer` is the same run without them (the three stages of 300, 300 and 900 steps of 128 px
crops, batch 8, seed 0). Run from the repository root:
    python training/trial_aux.py [--resume]
then  blur2clip eval --data ../shared/data/realmotion --weights runs/aux/stage3.safetensors --frames 7
"""

import sys
from dataclasses import replace

from blur2clip.train import TrainConfig, train
from long import MODEL, SYNTH, W_MIDDLE

train(TrainConfig(data="../shared/data/photos", out="runs/aux", stage="all", steps=[300, 300, 900],
                  model=replace(MODEL, aux_frames=7), synth=SYNTH, batch=8, crop=128, w_middle=W_MIDDLE,
                  w_reblur=1.0, w_still=0.03, w_aux=1.0, seed=0, workers=0, threads=1, ema=0.99,
                  val_every=300, ckpt_every=100, precision="bf16", compile=True, resume="--resume" in sys.argv))
