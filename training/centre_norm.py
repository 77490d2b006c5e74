"""A LayerNorm network's weights as a CentreNorm network's (config.norm "centre"), to continue training from.

    python training/centre_norm.py IN.safetensors OUT.safetensors [--samples 64] [--size 256]

A LayerNorm divides the centred channels of each pixel by their spread sigma; a CentreNorm has no division
(so an exported graph folds it into the convolutions after it: model.CentreNorm2d). Each norm's weights
are divided by one number s, fitted over the pixels of synthetic blurred samples (training photos through
the long run's synthesis, never realmotion): s = E[sigma^2] / E[sigma], the least-squares fit of 1/sigma
by 1/s, so the network starts near its old function. Prints, per norm, s and how far sigma spreads.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blur2clip.layouts import list_photos, split_photos  # noqa: E402
from blur2clip.model import Blur2Clip, LayerNorm2d  # noqa: E402
from blur2clip.samples import SyntheticBlur  # noqa: E402
from blur2clip.synth import SynthConfig  # noqa: E402
from blur2clip.weightfile import read_metadata, save  # noqa: E402
from blur2clip.weights import load_model  # noqa: E402
from long import SYNTH  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.source)
    if model.config.norm != "layer":
        sys.exit(f"{args.source}: its norm is {model.config.norm!r}, not a LayerNorm")
    photos = split_photos(list_photos(ROOT.parent / "shared" / "data" / "photos"))[0]
    data = SyntheticBlur(photos, SynthConfig(**{**SYNTH, "size": args.size}), seed=12345)
    sums: dict[str, list[float]] = {}

    def hook(name):
        def record(module, inp, out):
            sigma = (inp[0].var(1, unbiased=False) + module.eps).sqrt()
            s = sums.setdefault(name, [0.0, 0.0, 0.0, float("inf"), 0.0])
            s[0] += float((sigma**2).sum())
            s[1] += float(sigma.sum())
            s[2] += sigma.numel()
            s[3], s[4] = min(s[3], float(sigma.min())), max(s[4], float(sigma.max()))
        return record

    norms = {n: m for n, m in model.named_modules() if isinstance(m, LayerNorm2d)}
    for name, m in norms.items():
        m.register_forward_hook(hook(name))
    with torch.no_grad():
        for i in range(args.samples):
            model(data[i].blurred.unsqueeze(0))
    centred = Blur2Clip(replace(model.config, norm="centre"))
    state = model.state_dict()
    for name, (sq, s1, n, low, high) in sums.items():
        scale = sq / s1
        state[f"{name}.weight"] = state[f"{name}.weight"] / scale
        print(f"{name:28s} s {scale:8.4f}  sigma {low:.4f}..{high:.4f}, mean {s1 / n:.4f}", file=sys.stderr)
    centred.load_state_dict(state)
    training = read_metadata(args.source).get("training", {})
    save(centred, args.out, training={**training, "centre_norm_from": str(args.source)})
    print(f"{args.source} -> {args.out}: {len(sums)} norms without their division", file=sys.stderr)


if __name__ == "__main__":
    main()
