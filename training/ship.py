"""Stores trained weights in weights/ under their shipped names (float16), exports the ONNX file of each
(for the onnxruntime engine; the same weights always give the same bytes) and writes weights/manifest.json.
With several runs, each stage comes from the last run that has its file; `stageN=FILE` takes stage N from
that weights file instead; a stage given by neither keeps its shipped file.

Run from the repository root after training (python training/w16.py, training/long.py):
    python training/ship.py runs/w16 runs/w16b      # stages 1-2 from runs/w16, stage 3 from runs/w16b
    python training/ship.py stage3=training/long-run.safetensors   # stage 3 from the long run's snapshot
    python training/ship.py --onnx-only             # the shipped .safetensors files as they are: ONNX + manifest
"""

import json
import sys
from pathlib import Path

from blur2clip.onnxfile import export_onnx
from blur2clip.weights import load_model, manifest_entry, read_metadata, save

# What each stage was trained on (the manifest's "data"): stages 1 and 2 come from the first training,
# stage 3 from the long run, whose synthesis adds still photos, defocus and a still term.
PHOTOS = "583 sharp photos: Kodak24, BSDS500, SUN, Urban100 subset, MATE backgrounds"
DATA = {
    1: f"synthetic motion blur (camera shake and 0-3 independently moving layers, averaged in linear light) "
       f"over {PHOTOS}",
    3: f"synthetic motion blur (camera shake, often a still camera, and 0-3 independently moving layers, "
       f"averaged in linear light; 5% still photos, 15% defocused) over {PHOTOS}",
}
DATA[2] = DATA[1]

args = sys.argv[1:]
onnx_only = "--onnx-only" in args
files = {int(a[5]): Path(a.split("=", 1)[1]) for a in args if a.startswith("stage") and "=" in a}
runs = [Path(a) for a in args if a != "--onnx-only" and "=" not in a]
if not (onnx_only or files or runs):
    sys.exit(__doc__)
weights = Path(__file__).resolve().parent.parent / "weights"
manifest = {"default": {"alias": "stage3"}}
for stage in (1, 2, 3):
    target = weights / f"blur2clip-w16-stage{stage}.safetensors"
    found = [r / f"stage{stage}.safetensors" for r in runs if (r / f"stage{stage}.safetensors").is_file()]
    source = files.get(stage) or (found[-1] if found else None)
    if not onnx_only and source is not None:
        # float16 storage: half the size, the same frames to within a 1/255 step (see the model card)
        save(load_model(source), target, half=True, training=read_metadata(source)["training"])
        print(f"stage {stage}: {source} -> {target}", file=sys.stderr)
    onnx = export_onnx(target, overwrite=True)
    print(f"stage {stage}: {target} -> {onnx}", file=sys.stderr)
    manifest[f"stage{stage}"] = manifest_entry(target, f"stage{stage}", stage=stage, urls=[], license="MIT",
                                               data=DATA[stage])
(weights / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(json.dumps(manifest, indent=2))
