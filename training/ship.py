"""Stores a run's stage files in weights/ under their shipped names (float16) and writes weights/manifest.json.

Run from the repository root after training (python training/w16.py):  python training/ship.py runs/w16
"""

import json
import sys
from pathlib import Path

from blur2clip.weights import load_model, manifest_entry, read_metadata, save

DATA = ("synthetic motion blur (camera shake and 0-3 independently moving layers, averaged in linear "
        "light) over 583 sharp photos: Kodak24, BSDS500, SUN, Urban100 subset, MATE backgrounds")

run = Path(sys.argv[1])
weights = Path(__file__).resolve().parent.parent / "weights"
manifest = {"default": {"alias": "stage3"}}
for stage in (1, 2, 3):
    source, target = run / f"stage{stage}.safetensors", weights / f"blur2clip-w16-stage{stage}.safetensors"
    # float16 storage: half the size, the same frames to within a 1/255 step (see the model card)
    save(load_model(source), target, half=True, training=read_metadata(source)["training"])
    manifest[f"stage{stage}"] = manifest_entry(target, f"stage{stage}", stage=stage, urls=[], license="MIT",
                                               data=DATA)
(weights / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(json.dumps(manifest, indent=2))
