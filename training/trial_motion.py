"""Small-scale recipe trials, judged on real motion (blur2clip eval --data ../shared/data/realmotion).

Each trial continues the shipped stage-3 weights for the same number of steps on the same settings, so
the only difference between two trials is the recipe change named. Run from the repository root:
    python training/trial_motion.py NAME [--resume]        (NAME: one of TRIALS)
then  blur2clip eval --data ../shared/data/realmotion --weights runs/trial-NAME/stage3.safetensors
"""

import sys

from blur2clip.model import ModelConfig
from blur2clip.train import TrainConfig, train

# The motion statistics measured against realmotion: a steadier camera, more and longer object motion,
# and samples where nothing moves.
OBJECTS = dict(p_static_camera=0.4, layer_probs=(0.1, 0.4, 0.3, 0.2), layer_px=24.0, layer_tail=0.7,
               camera_tail=1.0, p_still=0.05)

TRIALS = {
    "base": dict(),  # the shipped recipe, trained longer: what more steps alone give
    "objects": dict(synth=OBJECTS),
    "objects-crop224": dict(synth=OBJECTS, crop=224),
    # 21 frames per pass (3 per window of 7), the head started from the shipped one interpolated in time;
    # 2 sub-frames per frame at least keeps the synthesis as fast as 7 frames of 4
    "objects-k21": dict(synth={**OBJECTS, "min_sub": 2}, model=ModelConfig(frames=21)),
    # the pairwise term (mirrored frames' sum and difference) kept for the whole stage instead of fading
    # out over its first half: does it make the frames move apart?
    "pairs-kept": dict(pairs_fade=0.0),
    # each 32 px cell scored against its canonical direction of time (losses.py) instead of the better
    # order per sample: can the frames move apart when the target no longer depends on a coin toss?
    "local": dict(order="local"),
    # the travel head (model.py): the middle frame and each pixel's travel, scored against the synthesis'
    # own travel; the middle frame's head starts from the shipped one, the travel at zero
    "travel": dict(synth=OBJECTS, model=ModelConfig(head="travel")),
}

name = sys.argv[1]
train(TrainConfig(data="../shared/data/photos", out=f"runs/trial-{name}", stage="3", steps=[600] * 3,
                  init="stage3", batch=8, crop=160, lr=5e-4, warmup=50, seed=2, workers=1, threads=2,
                  val_every=300, ckpt_every=100, resume="--resume" in sys.argv, **TRIALS[name]))
