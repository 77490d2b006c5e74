"""The long run's weights carried over to a network without the LayerNorm's division (norm "centre"),
the division faded out while the network trains: the speed target's network (its norms fold into the
convolutions at export, so the exported graph has none) without training it from scratch.

A first try (2026-11-30) divided each norm by one fixed spread at once and the network overflowed; here every norm
divides by a blend of each pixel's own spread and a fixed one, s (the 99th percentile of the pixels'
spreads on real blurred photos), the pixel's share falling linearly from 1 to 0 over the first FADE
training steps; then it trains on as a centre norm. The norm's weights are stored divided by s, so at the
end the network is a plain centre-norm network (config norm "centre") that loads and exports as one.
Otherwise the recipe of training/trial_long.py (the run's recipe, a cosine to 1%, EMA 0.99). Run from
the repository root (training/ on PYTHONPATH):
    python training/trial_centre.py [--seed N] [--steps N] [--fade N] [--resume]   (seed 3, 900, 450)
then  blur2clip eval --data ../shared/data/realmotion --weights runs/trial-centre99[-sN]/stage3.safetensors
Both tries (s the root mean square of the spreads, then their 99th percentile) blew up as the fade ended
(the model card, 2026-12-03). With --levels N only the norms of the first N levels (config
centre_levels: the full-resolution ones, where most of the norms' work per pixel is) lose their division.
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from blur2clip import model as net
from blur2clip.device import emulated
from blur2clip.train import TrainConfig, train
from blur2clip.weights import load_model, read_metadata, save
from long import MODEL, SYNTH, W_MIDDLE

INIT = "training/long-run.safetensors"
PHOTOS = sorted(Path("../shared/data/blurred").glob("*/*.png"))[:8]  # where the spreads are measured

seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 3
steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 900
fade = int(sys.argv[sys.argv.index("--fade") + 1]) if "--fade" in sys.argv else 450
levels = int(sys.argv[sys.argv.index("--levels") + 1]) if "--levels" in sys.argv else 0  # 0: every level
out = Path("runs/trial-centre99" + (f"-s{seed}" if seed != 3 else "") + (f"-{steps}" if steps != 900 else "")
           + (f"-levels{levels}" if levels else ""))
centring = dict(centre_levels=levels) if levels else dict(norm="centre")  # the trained network's config
init = out / "init.safetensors"
spreads = {}  # norm module (by its name in the network) -> s


def measure_spreads(model) -> dict[str, float]:
    """The 99th percentile of each LayerNorm's per-pixel spread over PHOTOS (256 px centre crops): divided
    by it, hardly a pixel comes out larger than the LayerNorm made it (with the root mean square of the
    spreads, the pixels of the largest spread grew up to 50x as the fade ended, and the network blew up)."""
    sums, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, net.LayerNorm2d):
            def hook(m, args, name=name):
                sums.setdefault(name, []).append(args[0].var(1, unbiased=False).sqrt().flatten())
            hooks.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        for path in PHOTOS:
            img = Image.open(path).convert("RGB")
            w, h = img.size
            img = img.crop(((w - 256) // 2, (h - 256) // 2, (w + 256) // 2, (h + 256) // 2))
            model(torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None])
    for h in hooks:
        h.remove()
    return {name: float(torch.quantile(torch.cat(v)[::3], 0.99)) for name, v in sums.items()}


step = [0]  # training forwards so far (the network's forward runs once a step; a resume goes on from its own)
if "--resume" in sys.argv and (out / "checkpoint.pt").is_file():
    step[0] = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]


def faded_forward(self, x):
    """(x - mean) * w' + b for w' = w / s, its division by s blended with the pixel's own spread while the
    fade lasts: x_c * w' * s / (a * sigma + (1 - a) * s), a falling from 1 to 0 over `fade` steps."""
    xc = x - x.mean(1, keepdim=True)
    a = max(0.0, 1.0 - step[0] / fade)
    if a > 0:
        s = self.spread
        xc = xc * (s / (a * torch.sqrt(xc.pow(2).mean(1, keepdim=True) + self.eps) + (1 - a) * s))
    return xc * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


net.CentreNorm2d.forward = faded_forward
made = net.Blur2Clip.__init__


def init_with_spreads(self, *args, **kwargs):
    """Every network made (the trained one and its average) knows its norms' spreads and counts steps."""
    made(self, *args, **kwargs)
    for name, m in self.named_modules():
        if isinstance(m, net.CentreNorm2d):
            m.spread = spreads[name]
    self.register_forward_pre_hook(lambda m, args: step.__setitem__(0, step[0] + 1) if m.training else None)


net.Blur2Clip.__init__ = init_with_spreads
if not init.is_file():
    source = load_model(INIT).eval()
    spreads = measure_spreads(source)
    centre = net.Blur2Clip(replace(source.config, **centring))
    spreads = {name: spreads[name] for name, m in centre.named_modules() if isinstance(m, net.CentreNorm2d)}
    state = source.state_dict()
    for name, s in spreads.items():
        state[f"{name}.weight"] = state[f"{name}.weight"] / s  # the centre norm's weight: w / s
    centre.load_state_dict(state)
    out.mkdir(parents=True, exist_ok=True)
    save(centre, init, spreads=spreads)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():  # the fade's start is the LayerNorm network
        gap = float((load_model(init).eval()(x) - source(x)).abs().max())
        print(f"init: its output against the LayerNorm network's: {gap:.2e}")
    print(f"spreads of the {len(spreads)} norms: {min(spreads.values()):.3g} .. {max(spreads.values()):.3g}")
spreads.update(read_metadata(init)["spreads"])
train(TrainConfig(data="../shared/data/photos", out=str(out), stage="3", steps=[steps] * 3,
                  init=str(init), model=replace(MODEL, **centring), batch=8,
                  lr=5e-4, warmup=50, seed=seed, workers=1, threads=1, ema=0.99, val_every=300,
                  ckpt_every=100, compile=True, precision="fp32" if emulated("cpu", "bf16") else "bf16",
                  resume="--resume" in sys.argv, crop=192, synth=SYNTH, w_middle=W_MIDDLE, w_reblur=1.0,
                  w_still=0.03))
