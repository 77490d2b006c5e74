"""Motion-blur synthesis: a sharp photo in, a blurred photo and the sharp frames of its exposure out.

The exposure is split into `frames` output frames of `k` sub-frames each, with k chosen so that
neighbouring sub-frames move about a pixel at most (no ghosting). Every sub-frame is the photo seen
through a smooth camera trajectory (translation, small rotation and zoom, mild perspective) with 0-3
foreground layers composited on top, each moving on its own (entering, leaving, occluding), and in a share
of the samples a swarm of small things moving each its own way. Averaging is done in linear light (gamma
2.2), so the ground-truth frames average exactly to the clean blur. Noise, saturated highlights and JPEG
are applied to the blurred input only.

All tensors are float32 in sRGB 0..1 unless named *_lin: CxHxW for images, FxCxHxW for frames.
`synthesize(..., device=)` renders on that device (a GPU makes the warping and averaging nearly free; the
random draws, photo resizing and JPEG stay on the CPU), with the same draws: on the CPU the same samples.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

GAMMA = 2.2


def to_linear(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1) ** GAMMA


def to_srgb(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1) ** (1 / GAMMA)


@dataclass
class SynthConfig:
    size: int = 192  # side of the square sample, px
    frames: int = 7
    max_step_px: float = 1.0  # most a pixel may move between neighbouring sub-frames
    min_sub: int = 4  # sub-frames per output frame, at least / at most
    max_sub: int = 16
    camera_px: float = 5.0  # median camera displacement over the exposure (log-normal, long tail)
    camera_tail: float = 0.9  # sigma of log(displacement)
    camera_rotation: float = 0.02  # radians, std over the exposure
    camera_zoom: float = 0.02  # relative scale change, std over the exposure
    camera_perspective: float = 0.01  # std of the perspective terms (normalised coordinates)
    camera_depth: float = 0.0  # parallax: std of the log of a smooth random inverse depth (0: a flat scene)
    p_static_camera: float = 0.1
    # of the samples whose camera moves, this share moves far: its travel drawn log-uniform in long_camera_px
    # (real photos that need the tool most are blurred far longer than the log-normal's median)
    p_long_camera: float = 0.0
    long_camera_px: tuple[float, float] = (30.0, 90.0)
    p_still: float = 0.0  # samples where nothing moves at all (frames equal the input, degradations kept)
    p_defocus: float = 0.0  # samples with the background out of focus: blur that is not motion, in the frames too
    defocus_px: tuple[float, float] = (1.0, 4.0)  # radius of the out-of-focus disc, px (uniform)
    layer_probs: tuple[float, ...] = (0.15, 0.35, 0.3, 0.2)  # P(0, 1, 2, 3 foreground layers)
    layer_px: float = 14.0  # median layer displacement over the exposure
    layer_tail: float = 0.6
    layer_warp: float = 0.0  # non-rigid layers: a smooth field moves their parts up to this share of their travel
    # samples with a swarm of small things moving each its own way (drops of a spray, birds, leaves, a far
    # crowd): motion confined to small regions, whose directions the photo cannot tell one by one
    p_swarm: float = 0.0
    swarm_count: tuple[int, int] = (8, 40)
    swarm_size: tuple[float, float] = (3.0, 14.0)  # px, uniform
    swarm_px: float = 16.0  # median travel of one of them (log-normal, layer_tail)
    max_motion_px: float = 100.0  # cap on any displacement over the exposure
    photo_scale: tuple[float, float] = (0.35, 1.0)  # random downscale of the source photo
    exposure: tuple[float, float] = (0.6, 1.4)  # linear gain on the scene
    p_highlights: float = 0.3  # bright areas brighter than white: saturated streaks in the input
    p_noise: float = 0.8
    p_jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (60, 95)

    def still(self) -> "SynthConfig":
        """The same sampling with no motion and no degradation (frames equal the input)."""
        return SynthConfig(size=self.size, frames=self.frames, camera_px=0.0, camera_rotation=0.0,
                           camera_zoom=0.0, camera_perspective=0.0, p_static_camera=1.0,
                           layer_probs=(1.0,), p_highlights=0.0, p_noise=0.0, p_jpeg=0.0,
                           photo_scale=self.photo_scale, exposure=(1.0, 1.0))


@dataclass
class Sample:
    blurred: torch.Tensor  # 3xHxW, the degraded input the model sees
    frames: torch.Tensor  # Fx3xHxW, ground truth, in time order
    clean: torch.Tensor  # 3xHxW, the blur before noise / highlights / JPEG (linear mean of frames)
    travel: torch.Tensor | None = None  # 2xHxW px (x, y): how far each pixel travels over the exposure (_travel)


def _bezier(rng: np.random.Generator, end: np.ndarray, wobble: float, t: np.ndarray) -> np.ndarray:
    """A smooth path from 0 to `end` (D-vector) with random curvature and speed changes: len(t) x D."""
    p1 = end / 3 + rng.normal(0, wobble, end.shape)
    p2 = 2 * end / 3 + rng.normal(0, wobble, end.shape)
    t = t[:, None]
    return 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * end


def _magnitude(rng, median, tail, cap):
    return float(min(cap, median * math.exp(rng.normal(0, tail))))


def _random_direction(rng, length):
    a = rng.uniform(0, 2 * math.pi)
    return np.array([math.cos(a), math.sin(a)]) * length


def _blob_mask(rng: np.random.Generator, n: int, device: torch.device) -> torch.Tensor:
    """An irregular soft-edged shape filling part of an n x n square: 1x1xnxn in 0..1."""
    line = torch.linspace(-1, 1, n, device=device)
    yy, xx = torch.meshgrid(line, line, indexing="ij")
    ax, ay = rng.uniform(0.5, 1.0, 2)
    ang = rng.uniform(0, math.pi)
    u = xx * math.cos(ang) + yy * math.sin(ang)
    v = -xx * math.sin(ang) + yy * math.cos(ang)
    ellipse = 1 - (u / ax) ** 2 - (v / ay) ** 2
    g = torch.from_numpy(rng.normal(0, 1, (1, 1, 6, 6)).astype(np.float32)).to(device)
    noise = F.interpolate(g, size=(n, n), mode="bicubic", align_corners=True)[0, 0]
    field = ellipse + rng.uniform(0.3, 0.8) * noise
    edge = rng.uniform(0.02, 0.12)  # soft, slightly variable edge
    return torch.sigmoid(field / edge)[None, None].clamp(0, 1)


def _smooth_field(rng: np.random.Generator, n: int, channels: int, scale: float,
                  device: torch.device) -> torch.Tensor:
    """A smooth random field over n x n px (channels x n x n), its values about N(0, scale^2)."""
    g = torch.from_numpy(rng.normal(0, scale, (1, channels, 5, 5)).astype(np.float32)).to(device)
    return F.interpolate(g, size=(n, n), mode="bicubic", align_corners=True)[0]


def _defocus(x: torch.Tensor, radius: float) -> torch.Tensor:
    """1xCxHxW linear light seen through a lens focused elsewhere: each point spread over a disc of
    `radius` px (its edge anti-aliased), the border reflected."""
    k = math.ceil(radius)
    line = torch.arange(-k, k + 1.0, device=x.device)
    yy, xx = torch.meshgrid(line, line, indexing="ij")
    disc = (radius + 0.5 - (xx**2 + yy**2).sqrt()).clamp(0, 1)
    c = x.shape[1]
    kernel = (disc / disc.sum()).expand(c, 1, -1, -1).contiguous()
    return F.conv2d(F.pad(x, (k, k, k, k), mode="reflect"), kernel, groups=c)


def _sample_grid(src: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of 1xCxHxW at pixel coordinates pix (...x2, x then y): C x ... ."""
    h, w = src.shape[-2:]
    g = torch.stack([(2 * pix[..., 0] + 1) / w - 1, (2 * pix[..., 1] + 1) / h - 1], -1)
    shape = g.shape[:-1]
    out = F.grid_sample(src, g.reshape(1, -1, shape[-1], 2), mode="bilinear",
                        padding_mode="reflection", align_corners=False)
    return out[0].reshape(src.shape[1], *shape)


def _prepare(photo: np.ndarray, rng: np.random.Generator, cfg: SynthConfig, min_side: int,
             device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 photo -> 1x3xhxw linear tensor on `device`, randomly rescaled, flipped and exposed."""
    img = Image.fromarray(photo)
    short = min(img.size)
    lo, hi = cfg.photo_scale
    s = rng.uniform(lo, hi)
    s = max(s, min_side / short)
    if s < 0.999:
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)
    elif s > 1.001:
        img = img.resize((round(img.width * s), round(img.height * s)), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).to(device).permute(2, 0, 1)[None]
    if rng.random() < 0.5:
        x = x.flip(-1)
    if rng.random() < 0.2:
        x = x.flip(-2)
    return to_linear(x) * rng.uniform(*cfg.exposure)


def synthesize(photo: np.ndarray, rng: np.random.Generator, cfg: SynthConfig = SynthConfig(),
               layer_photos: list[np.ndarray] | None = None, device: str | torch.device = "cpu") -> Sample:
    """Blur a sharp HxWx3 uint8 photo with random motion; layers are cut from `layer_photos` (or the photo).
    The sample's tensors are on `device`."""
    n, nf, device = cfg.size, cfg.frames, torch.device(device)
    if cfg.p_still > 0 and rng.random() < cfg.p_still:  # drawn only when used: older streams stay as they were
        still = replace(cfg, camera_px=0.0, camera_rotation=0.0, camera_zoom=0.0, camera_perspective=0.0,
                        p_static_camera=1.0, layer_probs=(1.0,), p_still=0.0)
        return synthesize(photo, rng, still, layer_photos, device)
    # --- how things move over the exposure (t in 0..1; 0.5 is the middle frame) ---
    static = rng.random() < cfg.p_static_camera
    cam_len = 0.0 if static else _magnitude(rng, cfg.camera_px, cfg.camera_tail, cfg.max_motion_px)
    if not static and cfg.p_long_camera > 0 and rng.random() < cfg.p_long_camera:  # drawn only when used
        cam_len = min(cfg.max_motion_px, math.exp(rng.uniform(*np.log(cfg.long_camera_px))))
    rot = 0.0 if static else rng.normal(0, cfg.camera_rotation)
    zoom = 0.0 if static else rng.normal(0, cfg.camera_zoom)
    persp = np.zeros(2) if static else rng.normal(0, cfg.camera_perspective, 2)
    n_layers = int(rng.choice(len(cfg.layer_probs), p=np.asarray(cfg.layer_probs) / sum(cfg.layer_probs)))
    layers = []
    for _ in range(n_layers):
        size = int(n * rng.uniform(0.25, 0.75))
        length = _magnitude(rng, cfg.layer_px, cfg.layer_tail, cfg.max_motion_px)
        layers.append(dict(size=size, length=length, end=_random_direction(rng, length),
                           rot=rng.normal(0, 0.08), zoom=rng.normal(0, 0.05),
                           centre=rng.uniform(-0.1 * n, 1.1 * n, 2),
                           # drawn only when used, here and for the depth below: older streams stay as they were
                           warp=_smooth_field(rng, n, 2, cfg.layer_warp * length, device)
                           if cfg.layer_warp > 0 else None))
    if cfg.p_swarm > 0 and rng.random() < cfg.p_swarm:  # drawn only when used, as the warp
        layers += _swarm(rng, cfg)
    depth = _smooth_field(rng, n, 1, cfg.camera_depth, device) if cfg.camera_depth > 0 and cam_len > 0 else None
    if depth is not None:  # inverse depth about 1 (the tracked plane), near parts moving further
        depth = depth[0].exp()
        depth /= depth.median()
    # Worst displacement of any pixel decides the sub-frame count.
    parallax = 0.0 if depth is None else cam_len * float((depth - 1).abs().max())
    longest = max([cam_len + parallax + abs(rot) * n + abs(zoom) * n] +
                  [L["length"] + abs(L["rot"]) * L["size"] + abs(L["zoom"]) * L["size"] +
                   (0.0 if L["warp"] is None else float(L["warp"].norm(dim=0).max())) for L in layers])
    k = int(np.clip(math.ceil(longest / (nf * cfg.max_step_px)), cfg.min_sub, cfg.max_sub))
    ns = nf * k
    t = (np.arange(ns) + 0.5) / ns  # sub-frame mid-times

    # --- the background seen by a moving camera ---
    margin = int(cam_len + (abs(rot) + abs(zoom)) * n) + 8
    bg = _prepare(photo, rng, cfg, n + 2 * margin, device)
    if cfg.p_defocus > 0 and rng.random() < cfg.p_defocus:  # drawn only when used, as above
        bg = _defocus(bg, rng.uniform(*cfg.defocus_px))
    bright = rng.random() < cfg.p_highlights
    if bright:  # a second set of channels: the light the input saw, brighter than white in places
        bg = torch.cat([bg, _highlights(bg, rng)], 1)  # 1x6xHxW
    H, W = bg.shape[-2:]
    c = torch.tensor([rng.uniform(margin + n / 2, max(margin + n / 2, W - margin - n / 2)),
                      rng.uniform(margin + n / 2, max(margin + n / 2, H - margin - n / 2))], device=device)
    cam = _bezier(rng, np.array([*_random_direction(rng, cam_len), rot, zoom, *persp]),
                  np.array([cam_len * 0.15] * 2 + [abs(rot) * 0.2, abs(zoom) * 0.2, 0, 0]) + 1e-9, t)
    cam -= _bezier_mid(cam, t)
    line = torch.arange(n, dtype=torch.float32, device=device)
    ys, xs = torch.meshgrid(line, line, indexing="ij")
    p = torch.stack([xs, ys], -1) - (n - 1) / 2  # nxnx2, centred output pixel positions
    subs, flow = _background(bg, p, c, torch.from_numpy(cam.astype(np.float32)).to(device), n, still=static,
                             depth=depth)

    # --- foreground layers, each with its own motion, composited in order ---
    pool, swarm_src = layer_photos or [photo], None
    for L in layers:
        if "gain" in L:  # a swarm's things (_swarm) are cut from one photo, each lit on its own
            if swarm_src is None:
                swarm_src = _prepare(pool[int(rng.integers(len(pool)))], rng, cfg, 64, device)
            src = swarm_src
        else:
            src = _prepare(pool[int(rng.integers(len(pool)))], rng, cfg, L["size"] + 2, device)
        sh, sw = src.shape[-2:]
        y0, x0 = int(rng.integers(0, sh - L["size"] + 1)), int(rng.integers(0, sw - L["size"] + 1))
        tex = src[:, :, y0:y0 + L["size"], x0:x0 + L["size"]] * L.get("gain", 1.0)
        tex = torch.cat([tex, _highlights(tex, rng)] if bright else [tex], 1)
        tex = torch.cat([tex, _blob_mask(rng, L["size"], device)], 1)  # colour channels + alpha
        path = _bezier(rng, np.array([*L["end"], L["rot"], L["zoom"]]),
                       np.array([L["length"] * 0.2] * 2 + [abs(L["rot"]) * 0.3, abs(L["zoom"]) * 0.3]) + 1e-9, t)
        path = (path - _bezier_mid(path, t)).astype(np.float32)
        # Only the output rows and columns the layer covers at some sub-frame are worked on (elsewhere its
        # alpha is 0 and nothing changes): the box around its square's corners along the path, and a margin.
        (y0, y1), (x0, x1) = _footprint(path, L["centre"], L["size"], n)
        if y0 == y1 or x0 == x1:  # never in the picture
            continue
        path = torch.from_numpy(path).to(device)
        # the output pixels' offsets from the layer's centre
        q = p[y0:y1, x0:x1] + (n - 1) / 2 - torch.from_numpy(L["centre"].astype(np.float32)).to(device)
        lgrid = _layer_map(q, path[:, None, None]) + (L["size"] - 1) / 2  # S x h x w x 2
        if L["warp"] is not None:  # its parts move apart and back: still the identity at the middle
            tau = torch.from_numpy((t - 0.5).astype(np.float32)).to(device)[:, None, None, None]
            lgrid = lgrid - tau * L["warp"][:, y0:y1, x0:x1].permute(1, 2, 0)
        inside = ((lgrid >= -0.5) & (lgrid <= L["size"] - 0.5)).all(-1).float()  # S x h x w
        h, w = y1 - y0, x1 - x0
        ls = F.grid_sample(tex, _norm(lgrid, L["size"]).reshape(1, -1, w, 2), mode="bilinear",
                           padding_mode="zeros", align_corners=False)[0]
        ls = ls.reshape(tex.shape[1], ns, h, w).transpose(0, 1)  # S x (C+1) x h x w
        a = ls[:, -1:] * inside[:, None]
        box = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
        subs[box] = torch.lerp(subs[box], ls[:, :-1], a)
        flow[box] = torch.lerp(flow[box], (lgrid - (L["size"] - 1) / 2 - q).permute(0, 3, 1, 2), a)

    # --- ground truth frames and the (degraded) blurred input ---
    frames_lin = subs[:, :3].clamp(0, 1).reshape(nf, k, 3, n, n).mean(1)  # F x 3 x n x n
    clean_lin = frames_lin.mean(0)
    input_lin = subs[:, 3:].mean(0).clamp(0, 1) if bright else clean_lin
    return Sample(blurred=degrade(input_lin, rng, cfg), frames=to_srgb(frames_lin), clean=to_srgb(clean_lin),
                  travel=_travel(flow, t))


def _swarm(rng: np.random.Generator, cfg: SynthConfig) -> list[dict]:
    """The layers of a swarm: swarm_count small things around one spot, each moving its own length in a
    direction spread by up to 180 degrees about the swarm's (rain falls together, a spray flies apart)."""
    n = cfg.size
    heading, spread = rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi)
    spot, reach = rng.uniform(0, n, 2), rng.uniform(0.1, 0.5) * n
    things = []
    for _ in range(int(rng.integers(cfg.swarm_count[0], cfg.swarm_count[1] + 1))):
        length = _magnitude(rng, cfg.swarm_px, cfg.layer_tail, cfg.max_motion_px)
        a = heading + rng.uniform(-spread, spread)
        things.append(dict(size=max(3, round(rng.uniform(*cfg.swarm_size))), length=length,
                           end=np.array([math.cos(a), math.sin(a)]) * length, rot=rng.normal(0, 0.3), zoom=0.0,
                           centre=spot + rng.normal(0, reach, 2), warp=None, gain=rng.uniform(0.5, 2.0)))
    return things


def _background(bg: torch.Tensor, p: torch.Tensor, c: torch.Tensor, cam: torch.Tensor, n: int, still: bool,
                depth: torch.Tensor | None = None):
    """(S x C x n x n sub-frames of the background 1xCxHxW seen around its point c under the camera states
    cam (Sx6), S x 2 x n x n flow). still: the camera did not move (its drawn path, within 1e-6 px of
    standing still, is taken as standing still): the background is sampled once and copied. depth: the
    scene's inverse depth (n x n, about 1) scales the camera's travel per pixel (parallax; no occlusion)."""
    if still:
        one = _sample_grid(bg, (p + c)[None]).permute(1, 0, 2, 3)  # 1 x C x n x n
        return one.repeat(len(cam), 1, 1, 1), torch.zeros(len(cam), 2, n, n, device=bg.device)
    moved = _camera_map(p, cam[:, None, None], n)  # S x n x n x 2
    if depth is not None:
        moved = moved + (depth - 1)[None, :, :, None] * cam[:, None, None, :2]
    # Where the middle frame shows what pixel p shows at sub-frame s: p + flow[s] (the middle frame's
    # camera state is the identity, so the background's flow is how far its map moves p).
    return _sample_grid(bg, moved + c).permute(1, 0, 2, 3), (moved - p).permute(0, 3, 1, 2)


def _travel(flow: torch.Tensor, t: np.ndarray) -> torch.Tensor:
    """2xHxW: how far each pixel's content travels over the exposure, the least-squares straight line d
    through its flow (Sx2xHxW at sub-frame times t): the frame at instant tau (-1/2 .. 1/2 of the
    exposure) is close to the middle frame sampled at p - tau * d."""
    tau = torch.from_numpy((t - 0.5).astype(np.float32)).to(flow.device)
    return -torch.einsum("s,schw->chw", tau, flow) / float((tau**2).sum())


def degrade(lin: torch.Tensor, rng: np.random.Generator, cfg: SynthConfig) -> torch.Tensor:
    """What a camera adds to the input only: sensor noise, then JPEG. Linear CxHxW in, sRGB out."""
    blurred = to_srgb(_noise(lin, rng) if rng.random() < cfg.p_noise else lin)
    if rng.random() < cfg.p_jpeg:
        blurred = _jpeg(blurred, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return blurred


def _bezier_mid(path: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Position at the middle of the exposure, so the middle frame is where the photo was framed."""
    return np.array([np.interp(0.5, t, path[:, i]) for i in range(path.shape[1])])


def _camera_map(p: torch.Tensor, v: torch.Tensor, n: int) -> torch.Tensor:
    """Output pixel offsets p (nxnx2) -> source offsets under camera states v (...x6: dx, dy, rot, zoom, px,
    py; Sx1x1x6 maps all sub-frames at once)."""
    cos, sin, s = torch.cos(v[..., 2]), torch.sin(v[..., 2]), 1 + v[..., 3]
    x, y = p[..., 0], p[..., 1]
    u = s * (cos * x - sin * y) + v[..., 0]
    w = s * (sin * x + cos * y) + v[..., 1]
    d = 1 + (v[..., 4] * x + v[..., 5] * y) / (n / 2)  # mild perspective
    return torch.stack([u / d, w / d], -1)


def _layer_map(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Offsets from the layer centre in the output (nxnx2) -> offsets in the layer's own texture, under
    layer states v (...x4: dx, dy, rot, zoom; Sx1x1x4 for all sub-frames)."""
    cos, sin, s = torch.cos(v[..., 2]), torch.sin(v[..., 2]), 1 + v[..., 3]
    x, y = q[..., 0] - v[..., 0], q[..., 1] - v[..., 1]
    return torch.stack([(cos * x + sin * y) / s, (-sin * x + cos * y) / s], -1)


def _footprint(path: np.ndarray, centre: np.ndarray, size: int, n: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((y0, y1), (x0, x1)): the output rows and columns (of n) where a layer of `size` px centred at
    `centre` (x, y) can show along its path (Sx4: dx, dy, rot, zoom; `_layer_map` inverted at its
    square's corners), widened by 2 px; an empty box when it never shows."""
    half = size / 2
    corners = np.array([[-half, -half], [-half, half], [half, -half], [half, half]])  # 4 x 2
    cos, sin, s = np.cos(path[:, 2]), np.sin(path[:, 2]), 1 + path[:, 3]  # S
    x = s[:, None] * (cos[:, None] * corners[:, 0] - sin[:, None] * corners[:, 1]) + path[:, :1] + centre[0]
    y = s[:, None] * (sin[:, None] * corners[:, 0] + cos[:, None] * corners[:, 1]) + path[:, 1:2] + centre[1]
    box = []
    for v in (y, x):
        lo, hi = int(np.clip(np.floor(v.min()) - 2, 0, n)), int(np.clip(np.ceil(v.max()) + 3, 0, n))
        box.append((lo, max(lo, hi)))
    return box[0], box[1]


def _norm(pix: torch.Tensor, size: int) -> torch.Tensor:
    return (2 * pix + 1) / size - 1


def _highlights(lin: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Bright areas pushed past white (light sources, speculars), so their blur saturates the input."""
    lum = lin.mean(1, keepdim=True)
    w = ((lum - 0.6) / 0.3).clamp(0, 1) ** 2
    return lin * (1 + w * rng.uniform(1.0, 8.0))


def _noise(lin: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Signal-dependent sensor noise in linear light."""
    shot, read = rng.uniform(0, 4e-3), rng.uniform(0, 1e-2)
    g = torch.Generator("cpu").manual_seed(int(rng.integers(2**31)))
    noise = torch.randn(lin.shape, generator=g, device=g.device).to(lin.device)  # the same noise anywhere
    return (lin + noise * torch.sqrt(shot * lin + read**2)).clamp(0, 1)


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    arr = (img.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    out = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(out).to(img.device).permute(2, 0, 1)
