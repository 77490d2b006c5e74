"""Copies a run's stage files into weights/ under their shipped names and writes weights/manifest.json.

Run from the repository root after training (python training/w16.py):  python training/ship.py runs/w16
"""

import json
import shutil
import sys
from pathlib import Path

from blur2clip.weights import manifest_entry

DATA = ("synthetic motion blur (camera shake and 0-3 independently moving layers, averaged in linear "
        "light) over 583 sharp photos: Kodak24, BSDS500, SUN, Urban100 subset, MATE backgrounds")

run = Path(sys.argv[1])
weights = Path(__file__).resolve().parent.parent / "weights"
manifest = {"default": {"alias": "stage3"}}
for stage in (1, 2, 3):
    target = weights / f"blur2clip-w16-stage{stage}.safetensors"
    shutil.copyfile(run / f"stage{stage}.safetensors", target)
    manifest[f"stage{stage}"] = manifest_entry(target, f"stage{stage}", stage=stage, urls=[], license="MIT",
                                               data=DATA)
(weights / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(json.dumps(manifest, indent=2))
