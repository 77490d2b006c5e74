"""Photo array -> frames (extract.py): tiling matches the whole image, directions align, the torch blend
matches a plain reference blend, precision and memory fallbacks; device choice (device.py)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import SHARED, tiny_model

from blur2clip import device, extract, torchnet
from blur2clip.engine import NumpyOps
from blur2clip.errors import DeviceError
from blur2clip.extract import Extractor, extract_frames, ramp_weights, tile_spans
from blur2clip.torchnet import TorchOps

Ex = functools.partial(Extractor, device="cpu")  # pinned: "auto" would pick a GPU and reduced precision


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """HxWx3 float32 0..1 with edges and texture (a real photo when ../shared has one)."""
    path = SHARED / "photos" / "kodak24" / "kodim01.png"
    if path.is_file():
        from PIL import Image

        img = Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)
        return np.asarray(img, np.float32) / 255
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.4 * np.sin(np.stack([9 * xx, 7 * yy, 5 * (xx + yy)], -1) * 6)
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


class Copies(torch.nn.Module):
    """Every frame equals the input: what the blender must hand back unchanged."""

    def forward(self, x):
        return x.unsqueeze(1).repeat(1, 7, 1, 1, 1)


class FlipEveryOther(torch.nn.Module):
    """The tiny model, but every second forward pass returns its frames in reversed order (the model's
    direction of time is arbitrary per tile, as a real one's is on ambiguous content)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.calls = inner, inner.config, 0

    def forward(self, x):
        self.calls += 1
        y = self.inner(x)
        return y.flip(1) if self.calls % 2 == 0 else y


class BadWhenReduced(torch.nn.Module):
    """The tiny model, but NaN (or black) frames whenever autocast is on."""

    def __init__(self, inner, kind="nan"):
        super().__init__()
        self.inner, self.config, self.kind = inner, inner.config, kind

    def forward(self, x):
        y = self.inner(x)
        if torch.is_autocast_enabled(x.device.type):
            return torch.full_like(y, float("nan")) if self.kind == "nan" else torch.zeros_like(y)
        return y


class OOMAbove(torch.nn.Module):
    """The tiny model, but out of memory for tiles with a side over `limit` px."""

    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.config, self.limit, self.sizes = inner, inner.config, limit, []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        if max(x.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


# ---------------------------------------------------------------------------------------------------
# Tiling geometry and blending


@pytest.mark.parametrize("size", [1, 31, 96, 97, 150, 200, 257, 1000])
@pytest.mark.parametrize("tile,overlap,multiple", [(96, 32, 4), (64, 16, 16), (128, 64, 16), (40, 30, 16)])
def test_spans_cover_overlap_and_align(size, tile, overlap, multiple):
    spans = tile_spans(size, tile, overlap, multiple)
    assert spans[0][0] == 0 and spans[-1][1] == size
    if size <= tile:
        assert spans == [(0, size)]
        return
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert a0 < b0 and a1 - b0 >= overlap  # ordered, overlapping by at least `overlap`
    lengths = [stop - start for start, stop in spans]
    assert len(set(lengths[:-1])) == 1 and lengths[0] <= tile  # one tile size, batchable
    if tile - overlap >= 2 * multiple:  # on the network's grid; the last tile runs to the border
        assert all(start % multiple == 0 for start, _ in spans) and lengths[0] % multiple == 0
        assert lengths[0] <= lengths[-1] < lengths[0] + multiple
    weights = np.zeros(size)
    for i, (start, stop) in enumerate(spans):
        w = ramp_weights(spans, i)
        assert w.min() > 0 and w.max() <= 1
        weights[start:stop] += w
    triple = any(c0 < a1 for (_, a1), (c0, _) in zip(spans, spans[2:]))
    if not triple:  # complementary ramps: the weights already sum to 1 (the blender divides anyway)
        np.testing.assert_allclose(weights, 1, atol=1e-6)


@pytest.mark.parametrize(
    "h,w,tile,overlap", [(150, 200, 96, 32), (37, 51, 32, 8), (30, 4000, 128, 32), (300, 97, 64, 48)]
)
def test_blend_weights_sum_to_one(h, w, tile, overlap):
    """A model that returns the input for every frame comes back exactly, borders and corners included."""
    image = photo_like(h, w)
    frames = Ex(model=Copies(), tile=tile, overlap=overlap)(image)
    assert frames.shape == (7, h, w, 3)
    np.testing.assert_allclose(frames, np.broadcast_to(image, frames.shape), atol=2e-6)


def test_tiled_matches_untiled(model):
    # Tile starts sit on the network's padding grid, so inside a tile the network computes what it
    # computes on the whole image; what remains is the conv padding at tile edges (feathered away in
    # the overlap) and the channel attention's per-tile mean. Measured: mean 1.1e-5, max 9.6e-4.
    image = photo_like(150, 200)
    whole = Ex(model=model, tile=0)(image)
    tiled = Ex(model=model, tile=96, overlap=32)(image)
    diff = np.abs(tiled - whole)
    assert diff.mean() < 1e-4 and diff.max() < 1e-2
    assert np.abs(whole - image).mean() > 0.01  # the frames really differ from the input


def test_batched_tiles_equal_single_tiles(model):
    image = photo_like(150, 200)
    one = Ex(model=model, tile=64, overlap=16)(image)
    ex = Ex(model=model, tile=64, overlap=16)
    ex.batch = 3
    np.testing.assert_allclose(ex(image), one, atol=1e-5)


def test_many_photos_share_a_pass_and_match_one_at_a_time(model):
    ex = Ex(model=model, tile=0)
    photos = [photo_like(40, 56, seed=s) for s in range(3)]
    together = ex.many(photos, dtype=np.uint8)
    alone = [ex(p, dtype=np.uint8) for p in photos]
    assert len(together) == 3
    for a, b in zip(together, alone):
        assert np.abs(a.astype(int) - b).max() <= 1  # one shared pass: float rounding may differ by 1
    mixed = ex.many([photos[0], photo_like(30, 30)])  # other sizes: one at a time
    assert mixed[1].shape == (7, 30, 30, 3)


def test_direction_alignment_prevents_ghosts(model):
    image = photo_like(150, 200)
    consistent = Ex(model=model, tile=96, overlap=32)(image)  # 2x3 tiles, one direction
    aligned = Ex(model=FlipEveryOther(model), tile=96, overlap=32)(image)
    np.testing.assert_allclose(aligned, consistent, atol=1e-6)  # every flipped tile was turned back

    ex = Ex(model=FlipEveryOther(model), tile=96, overlap=32)
    ex.align = False
    ghosts = ex(image)  # opposite orders averaged in the overlaps, whole tiles reversed elsewhere
    assert np.abs(ghosts - consistent).mean() > 100 * np.abs(aligned - consistent).mean() + 0.01


def test_direction_follows_the_first_tile(model):
    """Whichever way the first tile runs, the whole result runs that way: one direction of time."""
    image = photo_like(150, 200)
    consistent = Ex(model=model, tile=96, overlap=32)(image)
    flipped_first = FlipEveryOther(model)
    flipped_first.calls = 1  # now the 1st, 3rd, ... passes come out reversed
    result = Ex(model=flipped_first, tile=96, overlap=32)(image)
    np.testing.assert_allclose(result, consistent[::-1], atol=1e-6)


def reference_blend(model, image: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """The blend written out plainly, in float64 over the whole image: each tile's frames (reversed when
    that agrees better with the average already placed in its top rows and left columns), weighted by
    the outer product of the ramps, summed, divided by the summed weights, clamped to 0..1."""
    h, w, _ = image.shape
    multiple = model.config.multiple
    ys, xs = tile_spans(h, tile, overlap, multiple), tile_spans(w, tile, overlap, multiple)
    acc = wsum = None
    for r, (y0, y1) in enumerate(ys):
        for c, (x0, x1) in enumerate(xs):
            x = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).permute(2, 0, 1)[None]
            with torch.no_grad():
                frames = model(x)[0].permute(0, 2, 3, 1).double().numpy()  # Fxhxwx3
            if acc is None:
                acc, wsum = np.zeros((len(frames), h, w, 3)), np.zeros((h, w))
            top = ys[r - 1][1] - y0 if r else 0
            left = xs[c - 1][1] - x0 if c else 0
            fwd = rev = 0.0
            for rows, cols in ((slice(0, top), slice(None)), (slice(top, None), slice(0, left))):
                sub_acc = acc[:, y0:y1, x0:x1][:, rows, cols]
                sub_w = wsum[y0:y1, x0:x1][rows, cols]
                if sub_w.size:
                    placed = sub_acc / sub_w[None, :, :, None]
                    fwd += np.abs(frames[:, rows, cols] - placed).sum()
                    rev += np.abs(frames[::-1][:, rows, cols] - placed).sum()
            if rev < fwd:
                frames = frames[::-1]
            wt = np.outer(ramp_weights(ys, r), ramp_weights(xs, c)).astype(np.float64)
            acc[:, y0:y1, x0:x1] += frames * wt[None, :, :, None]
            wsum[y0:y1, x0:x1] += wt
    return np.clip(acc / wsum[None, :, :, None], 0, 1)


@pytest.mark.parametrize("frames", [7, 21])
@pytest.mark.parametrize("h,w,tile,overlap", [(150, 200, 96, 32), (130, 90, 64, 24), (100, 260, 64, 16)])
def test_blend_matches_a_plain_reference_blend(frames, h, w, tile, overlap):
    """The band-by-band torch blend gives the plain whole-image blend: float within 1e-5, uint8 as its
    round(255 v) (where v is not within float error of a rounding boundary)."""
    net = FlipEveryOther(tiny_model(frames=frames))  # tiles come out in both directions: alignment matters
    image = photo_like(h, w)
    ex = Ex(model=net, tile=tile, overlap=overlap)
    got = ex(image)
    net.calls = 0
    want = reference_blend(net, image, tile, overlap)
    assert got.shape == want.shape == (frames, h, w, 3) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(want - want[::-1]).mean() > 1e-3  # a reversed tile would have shown
    net.calls = 0
    q = ex(image, dtype=np.uint8)
    exact = want * 255 + 0.5
    clear = np.abs(exact - np.round(exact)) > 255 * 1e-5  # not within float error of a boundary
    np.testing.assert_array_equal(q[clear], np.floor(exact[clear]).astype(np.uint8))


# ---------------------------------------------------------------------------------------------------
# Sizes, formats, inputs


@pytest.mark.parametrize(
    "h,w,tile", [(1, 1, 512), (37, 51, 0), (37, 51, 32), (30, 4000, 128), (4000, 30, 128)]
)
def test_odd_sizes(model, h, w, tile):
    image = photo_like(h, w)
    frames = Ex(model=model, tile=tile, overlap=min(16, tile // 2))(image)
    assert frames.shape == (7, h, w, 3) and frames.dtype == np.float32
    assert np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1
    if tile and max(h, w) > tile:
        whole = Ex(model=model, tile=0)(image)
        assert np.abs(frames - whole).mean() < 1e-3


def test_uint8_output_and_input(model):
    image = photo_like(40, 60)
    ex = Ex(model=model, tile=0)
    frames = ex(image)
    q = ex(image, dtype=np.uint8)
    assert q.dtype == np.uint8 and q.shape == frames.shape
    assert np.abs(q.astype(np.float32) - frames * 255).max() <= 0.5 + 1e-3
    tiled = Ex(model=model, tile=32, overlap=8)
    assert np.abs(tiled(image, dtype=np.uint8) - tiled(image) * 255).max() <= 0.5 + 1e-3  # band by band
    as_uint8 = (image * 255 + 0.5).astype(np.uint8)
    np.testing.assert_allclose(ex(as_uint8), ex(as_uint8.astype(np.float32) / 255))


@pytest.mark.parametrize("ops", [NumpyOps(), TorchOps(torch.device("cpu"))], ids=["numpy", "torch"])
def test_conversion_clamps_and_drops_nan(ops):
    x = np.array([np.nan, np.inf, -np.inf, -0.2, 0.5, 1.3, 0.998], np.float32)
    as_float = ops.finish(ops.put(x.copy()), np.dtype(np.float32))
    np.testing.assert_allclose(as_float, [0, 1, 0, 0, 0.5, 1, 0.998], rtol=1e-6)
    as_uint8 = ops.finish(ops.put(x.copy()), np.dtype(np.uint8))
    np.testing.assert_array_equal(as_uint8, [0, 255, 0, 0, 128, 255, 254])


def test_bad_arguments(model):
    with pytest.raises(ValueError):
        Ex(model=model)(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError):
        Ex(model=model)(np.zeros((10, 10, 4), np.float32))
    with pytest.raises(ValueError):
        Ex(model=model, tile=64, overlap=-1)
    with pytest.raises(ValueError):
        Ex(model=model, tile=16)
    assert Ex(model=model, tile=64).overlap == 32  # the default 64 px overlap, cut to half a tile
    with pytest.raises(ValueError):
        Ex(model=model, precision="int8")
    with pytest.raises(DeviceError, match="cuda:7"):
        Ex(model=model, device="cuda:7")  # no such GPU here (or not CUDA at all)


def test_extract_frames_with_weights_file(tiny_weights):
    frames = extract_frames(photo_like(33, 47), tiny_weights, device="cpu")
    assert frames.shape == (7, 33, 47, 3) and frames.dtype == np.float32


# ---------------------------------------------------------------------------------------------------
# Device, precision, memory


def test_auto_device_and_precision(monkeypatch):
    assert device.precision("auto", torch.device("cpu")) == "fp32"
    assert device.precision("bf16", torch.device("cpu")) == "bf16"
    assert device.precision("auto", torch.device("mps")) == "fp16"
    assert device.train_bf16("auto", torch.device("cpu")) is False and device.train_bf16("bf16", torch.device("cpu"))
    with pytest.raises(ValueError, match="fp16"):
        device.train_bf16("fp16", torch.device("cpu"))  # training: auto, fp32 or bf16
    if torch.cuda.is_available():
        monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count() - 1))  # torchrun's process: its own GPU
        assert device.pick("auto") == torch.device("cuda", torch.cuda.device_count() - 1)
        assert device.pick("cuda") == device.pick("auto")  # one rule for `clip` and `train`
        assert device.precision("auto", torch.device("cuda")) in ("bf16", "fp16")
    elif not torch.backends.mps.is_available():
        assert device.pick("auto") == torch.device("cpu")
        with pytest.raises(DeviceError, match="'cuda:1': CUDA is not available here"):
            device.pick("cuda:1")
    with pytest.raises(DeviceError, match="'gpu'"):
        device.pick("gpu")


def test_bf16_on_cpu_when_asked(model):
    image = photo_like(40, 60)
    ex = Ex(model=model, precision="bf16", tile=0)
    frames = ex(image)
    assert ex.precision == "bf16"  # finite, sensible output: no fallback
    assert np.abs(frames - Ex(model=model, tile=0)(image)).mean() < 0.02


@pytest.mark.parametrize("kind", ["nan", "black"])
def test_reduced_precision_falls_back_to_fp32(model, kind):
    image = photo_like(100, 120)
    ex = Ex(model=BadWhenReduced(model, kind), precision="bf16", tile=64, overlap=16)
    frames = ex(image)
    assert ex.precision == "fp32"
    np.testing.assert_allclose(frames, Ex(model=model, tile=64, overlap=16)(image), atol=1e-6)


def test_out_of_memory_halves_the_tile(model):
    image = photo_like(150, 200)
    wrapped = OOMAbove(model, limit=150)
    ex = Ex(model=wrapped, tile=0, overlap=32)
    frames = ex(image)
    assert ex.tile == 128 and max(wrapped.sizes[-1]) <= 150
    assert np.abs(frames - Ex(model=model, tile=0)(image)).mean() < 1e-3

    hopeless = Ex(model=OOMAbove(model, limit=50), tile=256, overlap=32)
    with pytest.raises(MemoryError):  # nowhere left to go on the CPU: a clear error, not a crash
        hopeless(image)




class Departs(torch.nn.Module):
    """Every frame is the input plus `change(x)` (BxFx3xhxw), F frames: a network with known departures."""

    def __init__(self, config, change, frames: int = 7):
        super().__init__()
        self.config, self.change, self.frames = config, change, frames

    def forward(self, x):
        return x[:, None].expand(-1, self.frames, -1, -1, -1) + self.change(x)


def test_still_pixels_keep_the_photo(model):
    """Departures below STILL_BELOW everywhere (the shimmer a network adds to a sharp photo): every frame
    is the photo itself; with keep_still=False the network's frames come back as they are."""
    img = photo_like(96, 128)
    small = Departs(model.config, lambda x: 0.5 * torchnet.STILL_BELOW * torch.sin(
        torch.arange(7.0).view(1, 7, 1, 1, 1) + 40 * x[:, None]))
    kept = Ex(model=small, tile=0)(img)
    assert np.abs(kept - img[None]).max() < 1e-6
    raw = Ex(model=small, tile=0, keep_still=False)(img)
    assert np.abs(raw - img[None]).max() > 0.4 * torchnet.STILL_BELOW


def test_what_moved_passes_and_its_surroundings_stay(model):
    """Frames that depart strongly inside a square keep the network's frames there; pixels farther than
    twice STILL_RADIUS from the square are the photo."""
    img = np.full((96, 96, 3), 0.5, np.float32)
    r = torchnet.STILL_RADIUS
    square = np.s_[..., 32:64, 32:64]
    step = torch.tensor([-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3]).view(1, 7, 1, 1, 1)

    def change(x):
        d = torch.zeros(x.shape[0], 7, *x.shape[1:]) + 0.01  # a faint shimmer everywhere
        d[square] += step.expand_as(d[square])
        return d

    out = Ex(model=Departs(model.config, change), tile=0, keep_still=True)(img)
    expected = img[None] + change(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(0, 2, 3, 1).numpy()
    inner = np.s_[:, 32 + r:64 - r, 32 + r:64 - r]
    assert np.abs(out[inner] - expected[inner]).max() < 1e-6
    far = np.ones((96, 96), bool)
    far[32 - 2 * r - 1:64 + 2 * r + 1, 32 - 2 * r - 1:64 + 2 * r + 1] = False
    assert np.abs(out[:, far] - 0.5).max() < 1e-6
    assert np.abs(out.mean(0)[inner[1:]] - 0.51).max() < 1e-5  # inside, the network's own mean


def test_the_earlier_module_names_still_import():
    """Code written against the single module before the split (`blur2clip.pipeline`) still runs."""
    from blur2clip import job, pipeline

    assert pipeline.Extractor is Extractor and pipeline.make_clip is job.make_clip
    assert pipeline.pick_device("cpu") == device.pick("cpu")

def test_torchs_cpu_allocator_failing_counts_as_out_of_memory():
    """A CPU allocation torch cannot make is a RuntimeError, not torch's OutOfMemoryError: it still maps to
    the out-of-memory exit code rather than an internal error."""
    from blur2clip.errors import is_out_of_memory

    with pytest.raises(RuntimeError) as e:
        torch.empty(2**60, dtype=torch.uint8)  # more than any machine has
    assert is_out_of_memory(e.value) and not is_out_of_memory(RuntimeError("another failure"))
