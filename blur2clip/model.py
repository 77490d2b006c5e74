"""The network: one blurred photo in, the sharp frames of its exposure out.

A NAFNet-style U-Net (per-pixel LayerNorm or, with config.norm "centre", each pixel's channels centred
without a division, and with config.centre_levels so in the first levels only; depthwise 3x3
convolutions, SimpleGate, simplified channel attention; no batch statistics) with one of two heads
(config.head):
- "frames": every frame at once as a residual on the input, frame_i = blurred + r_i;
- "travel": the middle frame as a residual on the input, and how far each pixel travels over the
  exposure (2 channels, px); the frame at instant tau (-1/2 .. 1/2 of the exposure) is the middle frame
  moved along tau times that travel (`render`). The frames cannot disagree with one motion, a still pixel
  stays still in every frame, and nothing is ever shown twice.
The head and the block scales start at zero, so an untrained network returns the input for every frame
(a stable start that already satisfies the reblur constraint).

Images are Bx3xHxW float tensors in sRGB, 0..1; any H and W (padded to the network's multiple inside).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .netconfig import ModelConfig  # noqa: F401 -- where the network is, its config too
from .timeline import instants as window_centres

TRAVEL_PX = 8.0  # px of travel per unit of the travel head's output


def render(mid: torch.Tensor, travel: torch.Tensor, n: int, hold: bool = False) -> torch.Tensor:
    """Bx3xHxW middle frames moved along Bx2xHxW travel (px, x then y) to n instants, the centres of n
    equal windows of the exposure (timeline.instants): Bxnx3xHxW. The frame at instant tau (-1/2 .. 1/2)
    shows at p what the middle frame shows at p - tau * travel (bilinear): what was at q in the middle of
    the exposure is at q + tau * travel at instant tau; the middle instant (n odd) is the middle frame.
    hold (training, n odd): the moved frames take the middle frame as given, so their loss trains the
    travel and only the middle instant's trains the middle frame (a travel still wrong does not teach it
    to blur)."""
    b, _, h, w = mid.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=mid.dtype, device=mid.device),
                            torch.arange(w, dtype=mid.dtype, device=mid.device), indexing="ij")
    base = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], -1)  # HxWx2: pixel centres in -1..1
    step = (travel * travel.new_tensor([2 / w, 2 / h]).view(1, 2, 1, 1)).permute(0, 2, 3, 1)  # BxHxWx2
    held = mid.detach() if hold and n % 2 else mid  # (n even: no middle instant to teach the middle frame)
    frames = [mid if 2 * k + 1 == n else  # the middle instant, tau = 0
              F.grid_sample(held, base - float(t - 0.5) * step, mode="bilinear", padding_mode="border",
                            align_corners=False)
              for k, t in enumerate(window_centres(n))]
    return torch.stack(frames, 1)


def stage_frames(stage: int, frames: int = 7) -> list[int]:
    """0-based indices of the frames trained at a stage: the middle; then those within the middle 3/7 of
    the exposure (frames 3, 4, 5 of 7; 7 to 15 of 21); then all."""
    mid = frames // 2
    if stage == 1:
        return [mid]
    if stage == 2:
        return [k for k in range(frames) if abs((k + 0.5) / frames - 0.5) <= 1.5 / 7 + 1e-9]
    return list(range(frames))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel."""

    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):  # x: BxCxHxW
        # As BxHxWxC (a free view when x is channels_last) so F.layer_norm does one fused pass.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class CentreNorm2d(LayerNorm2d):
    """The channels of each pixel centred on their mean, then scaled and shifted per channel: a LayerNorm
    without its division by the pixel's spread. Linear, so an exported graph folds it into the 1x1
    convolutions that follow it (torchnet._GraphBlock)."""

    def forward(self, x):  # x: BxCxHxW
        return (x - x.mean(1, keepdim=True)) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


NORM_LAYERS = {"layer": LayerNorm2d, "centre": CentreNorm2d}  # config.norm (netconfig.NORMS) -> its module


class SimpleGate(nn.Module):
    def forward(self, x):  # Bx2CxHxW -> BxCxHxW
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """Spatial mixing (1x1, depthwise 3x3, gate, channel attention) then a gated feed-forward, each residual."""

    def __init__(self, c: int, norm: str = "layer"):
        super().__init__()
        self.norm1 = NORM_LAYERS[norm](c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.dwconv = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.gate = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1))
        self.conv2 = nn.Conv2d(c, c, 1)
        self.norm2 = NORM_LAYERS[norm](c)
        self.ffn1 = nn.Conv2d(c, 2 * c, 1)
        self.ffn2 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))  # zero: the block starts as the identity
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp):  # inp: BxCxHxW
        x = self.gate(self.dwconv(self.conv1(self.norm1(inp))))  # BxCxHxW
        x = self.conv2(x * self.sca(x))
        y = inp + x * self.beta
        x = self.ffn2(self.gate(self.ffn1(self.norm2(y))))
        return y + x * self.gamma


class Blur2Clip(nn.Module):
    """Bx3xHxW blurred photo -> BxFx3xHxW frames (F = config.frames), all in sRGB 0..1 (not clamped)."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = cfg = config or ModelConfig()
        c = cfg.width
        levels = len(cfg.enc_blocks)
        norms = ["centre" if level < cfg.centre_levels else cfg.norm for level in range(levels)]  # per level
        self.intro = nn.Conv2d(3, c, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        for n, norm in zip(cfg.enc_blocks, norms):
            self.encoders.append(nn.Sequential(*[NAFBlock(c, norm) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c, cfg.norm) for _ in range(cfg.middle_blocks)])
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n, norm in zip(cfg.dec_blocks, reversed(norms)):
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c, norm) for _ in range(n)]))
        self.ending = nn.Conv2d(c, 3 * cfg.frames if cfg.head == "frames" else 5, 3, padding=1)
        nn.init.zeros_(self.ending.weight)  # every frame starts equal to the input
        nn.init.zeros_(self.ending.bias)

    def forward(self, x, with_travel: bool = False):  # x: Bx3xHxW
        """The frames; with_travel: (frames, travel Bx2xHxW px, or None for the "frames" head)."""
        return self.predict(self._padded(x), x, with_travel)

    def _padded(self, x):
        """x (Bx3xHxW) padded (replicated) to Bx3xH'xW', multiples of config.multiple."""
        h, w = x.shape[2:]
        m = self.config.multiple
        return F.pad(x, (0, -w % m, 0, -h % m), mode="replicate") if h % m or w % m else x

    def predict(self, xp, x, with_travel: bool = False):
        """The frames of x (Bx3xHxW), given xp: x padded (replicated) to H'xW', multiples of
        config.multiple. forward pads, then calls this; an exported graph takes both, padded beforehand
        (so its height and width stay free: engine.py)."""
        b, _, h, w = x.shape
        r = self._head(xp, h, w)  # Bx3FxHxW residuals, or Bx5xHxW: the middle's and the travel
        if self.config.head == "frames":
            frames, travel = x.unsqueeze(1) + r.view(b, self.config.frames, 3, h, w), None  # BxFx3xHxW
        else:
            travel = r[:, 3:] * TRAVEL_PX
            frames = render(x + r[:, :3], travel, self.config.frames, hold=self.training)
        return (frames, travel) if with_travel else frames

    def motion(self, x, xp=None):
        """The travel head's (middle frame Bx3xHxW, travel Bx2xHxW px) of x (xp: x padded, as `predict`
        takes it; None: padded here): what `render` moves to any instant (the engines render a clip's
        instants from them)."""
        if self.config.head != "travel":
            raise ValueError("only a travel head predicts a middle frame and its travel")
        r = self._head(self._padded(x) if xp is None else xp, *x.shape[2:])
        return x + r[:, :3], r[:, 3:] * TRAVEL_PX

    def _head(self, xp, h: int, w: int):
        """The head's raw output for the padded photos xp, cropped to h x w."""
        f = self.intro(xp)  # BxCxH'xW'
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            f = enc(f)
            skips.append(f)
            f = down(f)  # Bx2Cx(H/2)x(W/2)
        f = self.middle(f)  # Bx(16C)x(H'/16)x(W'/16)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            f = dec(up(f) + skip)  # Bx(C/2)x(2H)x(2W)
        return self.ending(f)[:, :, :h, :w]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: Blur2Clip, height: int = 720, width: int = 1280) -> int:
    """Multiply-accumulates of one forward pass at HxW, counted from the convolutions (the bulk of the work)."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        macs += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, height, width))
    for h in handles:
        h.remove()
    return macs


def with_travel_head(model: Blur2Clip) -> Blur2Clip:
    """The same network with the "travel" head: every layer kept, the middle frame's head weights kept,
    the travel's at zero (a warm start: the middle frame as sharp as before, every frame equal to it)."""
    if model.config.head == "travel":
        return model
    new = Blur2Clip(ModelConfig(**{**model.config.to_dict(), "head": "travel"}))
    kept = new.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("ending.")},
                               strict=False)
    assert set(kept.missing_keys) == {"ending.weight", "ending.bias"} and not kept.unexpected_keys, kept
    mid = 3 * (model.config.frames // 2)
    with torch.no_grad():
        new.ending.weight[:3] = model.ending.weight[mid:mid + 3]
        new.ending.bias[:3] = model.ending.bias[mid:mid + 3]
    return new.train(model.training)


def with_frames(model: Blur2Clip, frames: int) -> Blur2Clip:
    """The same network predicting `frames` frames: every layer kept, and the head's weights for each new
    frame interpolated in time between those of the two nearest old frames (a warm start for training).
    A "travel" head renders any count: only its config changes."""
    old = model.config.frames
    if frames == old:
        return model
    config = ModelConfig(**{**model.config.to_dict(), "frames": frames})
    new = Blur2Clip(config)
    if config.head == "travel":
        new.load_state_dict(model.state_dict())
        return new.train(model.training)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("ending.")}
    new.load_state_dict(state, strict=False)
    w, b = model.ending.weight.detach(), model.ending.bias.detach()  # (3*old)xCx3x3, (3*old)
    w, b = w.view(old, 3, *w.shape[1:]), b.view(old, 3)
    with torch.no_grad():
        for k in range(frames):
            x = min(max((k + 0.5) * old / frames - 0.5, 0.0), old - 1.0)  # position among the old frames
            a, u = int(x), x - int(x)
            c = min(a + 1, old - 1)
            new.ending.weight[3 * k:3 * k + 3] = (1 - u) * w[a] + u * w[c]
            new.ending.bias[3 * k:3 * k + 3] = (1 - u) * b[a] + u * b[c]
    return new.train(model.training)
