"""Stores the stage files of training runs in weights/ under their shipped names (float16), exports the ONNX
file of each (for the onnxruntime engine; the same weights always give the same bytes) and writes
weights/manifest.json. With several runs, each stage comes from the last run that has its file.

Run from the repository root after training (python training/w16.py):
    python training/ship.py runs/w16 runs/w16b      # stages 1-2 from runs/w16, stage 3 from runs/w16b
    python training/ship.py --onnx-only             # the shipped .safetensors files as they are: ONNX + manifest
"""

import json
import sys
from pathlib import Path

from blur2clip.onnxfile import export_onnx
from blur2clip.weights import load_model, manifest_entry, read_metadata, save

DATA = ("synthetic motion blur (camera shake and 0-3 independently moving layers, averaged in linear "
        "light) over 583 sharp photos: Kodak24, BSDS500, SUN, Urban100 subset, MATE backgrounds")

args = sys.argv[1:]
onnx_only = "--onnx-only" in args
runs = [Path(a) for a in args if a != "--onnx-only"] or [Path("runs/w16")]
weights = Path(__file__).resolve().parent.parent / "weights"
manifest = {"default": {"alias": "stage3"}}
for stage in (1, 2, 3):
    target = weights / f"blur2clip-w16-stage{stage}.safetensors"
    if not onnx_only:
        source = [r / f"stage{stage}.safetensors" for r in runs if (r / f"stage{stage}.safetensors").is_file()][-1]
        # float16 storage: half the size, the same frames to within a 1/255 step (see the model card)
        save(load_model(source), target, half=True, training=read_metadata(source)["training"])
        print(f"stage {stage}: {source} -> {target}", file=sys.stderr)
    onnx = export_onnx(target, overwrite=True)
    print(f"stage {stage}: {target} -> {onnx}", file=sys.stderr)
    manifest[f"stage{stage}"] = manifest_entry(target, f"stage{stage}", stage=stage, urls=[], license="MIT",
                                               data=DATA)
(weights / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(json.dumps(manifest, indent=2))
