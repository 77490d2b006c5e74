"""Makes examples/blurred.jpg: Kodak's kodim10 (a photo held out of training) blurred by the project's own
synthesis with a hand-shake-like camera path. Run from the repository root:

    python examples/make_example.py ../shared/data/photos/kodak24/kodim10.png
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from blur2clip.synth import SynthConfig, synthesize

SEED = 7  # a path that keeps the photo the right way round (synthesis flips at random)

photo = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
cfg = SynthConfig(size=512, photo_scale=(1.0, 1.0), camera_px=16, camera_tail=0.01, p_static_camera=0.0,
                  layer_probs=(1.0,), p_noise=0.0, p_jpeg=0.0, p_highlights=0.0, exposure=(1.0, 1.0))
s = synthesize(photo, np.random.default_rng(SEED), cfg)
out = Path(__file__).with_name("blurred.jpg")
Image.fromarray((s.blurred.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(out, quality=92)
print(out)
