"""Trials at test time on a travel head's weights: what changes when the same weights are used otherwise.
The model card ("Four things at test time") has the figures. Run from the repository root:

    python training/test_time.py local PX  eval --data ../shared/data/realmotion --weights W --frames 7
        every block's channel attention averages over a PX-wide window (scaled to each level) instead of
        the whole tile: the test-time local converter (Chu et al., ECCV 2022); then `blur2clip eval ...`
    python training/test_time.py twice eval ...
        the network run again on its own middle frame, the first pass's travel kept
    python training/test_time.py deconv W SCENES SCALES [ITERATIONS]
        realmotion's middle frame (whole images, e.g. SCENES 0000,0002) after Richardson-Lucy in linear
        light (gamma 2.2) along the predicted travel times each of SCALES (e.g. 1,2,3), from the middle frame
    python training/test_time.py coarse W
        realmotion's middle frame (whole images, every scene) at full size; from the photo at half size
        (the change enlarged and added to the photo); the half size's low band with the full size's high
        band; the full size run on the half size's result (coarse to fine)
    python training/test_time.py backproject W
        realmotion at 7 frames as the command line makes them (tiles, still guard), then with every frame
        moved by what the frames' average misses of the photo (photo - reblur: in sRGB, in linear light,
        and as a ratio in linear light; the average over the 7 frames or over 48 instants)
    python training/test_time.py scale W
        realmotion at 7 frames with the travel times 0 .. 3 (the guard decided again), and the scale each
        photo would pick by itself: the one whose 16 instants average back closest to the photo
"""

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import blur2clip.model as M


class LocalMean(nn.Module):
    """The mean over a k x k window around each pixel (the whole map when it is smaller), by running sums;
    the edge values repeated where the window would leave the map."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        h, w = x.shape[2:]
        kh, kw = min(h, self.k), min(w, self.k)
        if (kh, kw) == (h, w):
            return x.mean((2, 3), keepdim=True)
        s = F.pad(x.double().cumsum(-1).cumsum(-2), (1, 0, 1, 0))
        out = (s[:, :, kh:, kw:] + s[:, :, :-kh, :-kw] - s[:, :, :-kh, kw:] - s[:, :, kh:, :-kw]) / (kh * kw)
        oh, ow = out.shape[2:]
        pad = ((w - ow) // 2, (w - ow + 1) // 2, (h - oh) // 2, (h - oh + 1) // 2)
        return F.pad(out.to(x.dtype), pad, mode="replicate")


def local_attention(px: int) -> None:
    """Every Blur2Clip built from now on averages its channel attention over px-wide windows."""
    build = M.Blur2Clip.__init__

    def init(self, config=None):
        build(self, config)
        n = len(self.encoders)
        levels = [(seq, i) for i, seq in enumerate(self.encoders)] + [(self.middle, n)] + \
                 [(seq, n - 1 - j) for j, seq in enumerate(self.decoders)]
        for seq, level in levels:
            for block in seq:
                block.sca[0] = LocalMean(max(1, px >> level))

    M.Blur2Clip.__init__ = init


def twice() -> None:
    """The head's middle frame is the network's output for its own first middle frame."""
    head = M.Blur2Clip._head

    def again(self, xp, h, w):
        first = head(self, xp, *xp.shape[2:])
        second = head(self, xp + first[:, :3], *xp.shape[2:])
        return torch.cat([first[:, :3] + second[:, :3], first[:, 3:]], 1)[:, :, :h, :w]

    M.Blur2Clip._head = again


def line_blur(m, travel, samples: int = 25):
    """The photo the middle frame m makes when moved along its travel: the mean of model.render's frames."""
    return M.render(m, travel, samples).mean(1)


def _scenes(names: str | None = None):
    """(name, photo 1x3xHxW, true frames 7x3xHxW) of realmotion's scenes (all, or the comma-separated names),
    through the clips layout: the true frames at the centres of 7 windows (the middle one is frames[3])."""
    from blur2clip.data import open_data

    wanted = None if names is None else set(names.split(","))
    for name, sample in open_data("../shared/data/realmotion", "auto", 7, 7).scored_samples(1, None, True):
        if wanted is None or name in wanted:
            yield name, sample.blurred[None], sample.frames


def _psnr(a, b) -> float:
    return float(-10 * torch.log10(((a.clamp(0, 1) - b) ** 2).mean()))


def _middle(model):
    def middle(x):
        with torch.no_grad():
            return model.motion(x)[0] if model.config.head == "travel" else model(x)[:, model.config.frames // 2]
    return middle


def deconv(weights: str, scenes: str, scales: str, iterations: int = 10) -> None:
    from blur2clip.weights import load_model

    model, rows = load_model(weights), []
    for scene, photo, frames in _scenes(scenes):
        true = frames[3:4]
        with torch.no_grad():
            mid, travel = model.motion(photo)
        row, linear = [_psnr(photo, true), _psnr(mid, true)], photo.clamp(1e-4, 1) ** 2.2
        for scale in map(float, scales.split(",")):
            m = mid.clamp(1e-4, 1) ** 2.2
            for _ in range(iterations):
                ratio = linear / line_blur(m, scale * travel).clamp_min(1e-4)
                m = (m * line_blur(ratio, scale * travel)).clamp(1e-4, 1)
            row.append(_psnr(m ** (1 / 2.2), true))
        rows.append(row)
        print(scene, " ".join(f"{v:.2f}" for v in row), flush=True)
    print("mean", " ".join(f"{v:.2f}" for v in np.mean(rows, 0)), f"(the photo, the network, scales {scales})")


def coarse(weights: str) -> None:
    from blur2clip.weights import load_model

    middle, rows = _middle(load_model(weights)), []
    half = lambda x: F.interpolate(x.clamp(0, 1) ** 2.2, scale_factor=0.5, mode="area") ** (1 / 2.2)  # noqa: E731
    for scene, photo, frames in _scenes():
        true = frames[3:4]
        grow = lambda x: F.interpolate(x, size=photo.shape[2:], mode="bilinear", align_corners=False)  # noqa: E731
        full, small = middle(photo), half(photo)
        from_half = photo + grow(middle(small) - small)
        bands = full - grow(F.interpolate(full - photo, scale_factor=0.5, mode="area")) + from_half - photo
        row = [_psnr(x, true) for x in (photo, full, from_half, bands, middle(from_half.clamp(0, 1)))]
        rows.append(row)
        print(scene, " ".join(f"{v:.2f}" for v in row), flush=True)
    print("mean", " ".join(f"{v:.2f}" for v in np.mean(rows, 0)),
          "(the photo, full size, half size, bands, coarse to fine)")


def _realmotion(weights: str):
    """For every realmotion scene: its name, the photo (HxWx3), the travel head's Motion as the command line
    makes it, a function giving metrics.score of 7 frames (7xHxWx3), and the photo's own pPSNR."""
    from blur2clip import metrics
    from blur2clip.extract import Extractor

    extractor = Extractor(weights, device="cpu", threads=1)
    for name, blurred, frames in _scenes():
        photo, truth = blurred[0].permute(1, 2, 0).numpy(), (frames[None], blurred)
        score = lambda f: metrics.score(torch.from_numpy(np.asarray(f)).permute(0, 3, 1, 2)[None], *truth)  # noqa: E731
        yield name, photo, extractor(photo), score, metrics.baseline(*truth)["ppsnr"]


def _summary(rows: dict, photo: dict) -> None:
    """Mean pPSNR / middle / outer / reblur of each variant over the scenes, and the scenes under their photo."""
    for key in next(iter(rows.values())):
        mean = [np.mean([r[key][s] for r in rows.values()]) for s in ("ppsnr", "middle", "outer", "reblur")]
        under = [f"{n} {r[key]['ppsnr'] - photo[n]:+.2f}" for n, r in rows.items() if r[key]["ppsnr"] < photo[n]]
        print(f"{key:9s} " + " / ".join(f"{v:.2f}" for v in mean), "under the photo:", ", ".join(under) or "none")
    print(f"{'photo':9s} {np.mean(list(photo.values())):.2f}")


def backproject(weights: str) -> None:
    from blur2clip.metrics import GAMMA

    lin, srgb = (lambda a: np.clip(a, 0, 1) ** GAMMA), (lambda a: np.clip(a, 0, 1) ** (1 / GAMMA))
    rows, photos = {}, {}
    for name, photo, motion, score, photos[name] in _realmotion(weights):
        seven = np.asarray(motion.at(7))
        variants = {"as made": seven}
        for count in (7, 48):
            frames = seven if count == 7 else np.asarray(motion.at(48))
            variants[f"sRGB {count}"] = np.clip(seven + photo - frames.mean(0), 0, 1)
            variants[f"linear {count}"] = srgb(lin(seven) + lin(photo) - lin(frames).mean(0))
            variants[f"ratio {count}"] = srgb(lin(seven) * (lin(photo) + 1e-3) / (lin(frames).mean(0) + 1e-3))
        rows[name] = {k: score(v) for k, v in variants.items()}
        print(name, " ".join(f"{k}: {v['ppsnr']:.2f}" for k, v in rows[name].items()), flush=True)
    _summary(rows, photos)


def scale(weights: str, scales=(0, 0.5, 0.75, 1, 1.25, 1.5, 2, 3)) -> None:
    from blur2clip.metrics import psnr, reblur
    from blur2clip.rendering import Motion

    rows, photos, picked = {}, {}, []
    for name, photo, motion, score, photos[name] in _realmotion(weights):
        rows[name], closest = {}, []
        for k in scales:
            moved = Motion.guarded(photo, motion.middle, motion.travel * k, 7)
            rows[name][f"x{k}"] = score(moved)
            average = reblur(torch.from_numpy(np.asarray(moved.at(16))).permute(0, 3, 1, 2)[None])
            closest.append(psnr(average, torch.from_numpy(photo).permute(2, 0, 1)[None], dims=(1, 2, 3)).item())
        picked.append(scales[int(np.argmax(closest))])
        rows[name]["picked"] = rows[name][f"x{picked[-1]}"]
        print(name, " ".join(f"{k}: {v['ppsnr']:.2f}" for k, v in rows[name].items()), flush=True)
    _summary(rows, photos)
    print("picked by the average:", picked)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "deconv":
        sys.exit(deconv(args[0], args[1], args[2], *map(int, args[3:4])))
    if mode == "coarse":
        sys.exit(coarse(args[0]))
    if mode in ("backproject", "scale"):
        sys.exit({"backproject": backproject, "scale": scale}[mode](args[0]))
    if mode == "local":
        local_attention(int(args.pop(0)))
    elif mode == "twice":
        twice()
    else:
        sys.exit(f"test_time.py: unknown trial {mode!r} (local PX, twice, deconv, coarse, backproject or scale)")
    from blur2clip.cli import main

    sys.exit(main(args))
