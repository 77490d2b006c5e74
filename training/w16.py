"""Recipe of the shipped default weights (blur2clip-w16-stage{1,2,3}.safetensors).

Run from the repository root:  python training/w16.py [--resume]   then  python training/ship.py runs/w16 runs/w16b
Same as:
  1. blur2clip train --data ../shared/data/photos --out runs/w16 --stage all --steps 600,600,1200 \
         --batch 8 --crop 160 --workers 1 --threads 2 --val-every 400 --ckpt-every 100
  2. blur2clip train --data ../shared/data/photos --out runs/w16b --stage 3 --steps 2800 \
         --init runs/w16/stage3.safetensors --batch 8 --crop 160 --lr 5e-4 --warmup 50 --seed 1 \
         --workers 1 --threads 2 --val-every 400 --ckpt-every 100
The second run continues stage 3 from the first run's stage-3 file on a fresh stream of samples (seed 1)
at half the peak learning rate; stages 1 and 2 ship from the first run.
"""

import sys

from blur2clip.train import TrainConfig, train

resume = "--resume" in sys.argv
common = dict(data="../shared/data/photos", batch=8, crop=160, workers=1, threads=2, val_every=400, ckpt_every=100,
              resume=resume)
train(TrainConfig(out="runs/w16", stage="all", steps=[600, 600, 1200], **common))
train(TrainConfig(out="runs/w16b", stage="3", steps=[2800, 2800, 2800], init="runs/w16/stage3.safetensors",
                  lr=5e-4, warmup=50, seed=1, **common))
