"""Recipe of the shipped default weights (blur2clip-w16-stage{1,2,3}.safetensors).

Run from the repository root:  python training/w16.py [--resume]
Same as: blur2clip train --data ../shared/data/photos --out runs/w16 --stage all --steps 600,600,1200 \
             --batch 8 --crop 160 --workers 1 --threads 2
"""

import sys

from blur2clip.train import TrainConfig, train

cfg = TrainConfig(data="../shared/data/photos", out="runs/w16", stage="all", steps=[600, 600, 1200],
                  batch=8, crop=160, workers=1, threads=2, val_every=400, ckpt_every=100,
                  resume="--resume" in sys.argv)
train(cfg)
