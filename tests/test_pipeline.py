"""Photo -> frames: tiling matches the whole image, directions align, precision and memory fallbacks,
and the single-photo job (with a stand-in for media, and for real once media.py is there)."""

from __future__ import annotations

import functools
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, tiny_model

from blur2clip import CLIP_FRAMES, pipeline
from blur2clip.pipeline import ClipResult, Extractor, extract_frames, make_clip, ramp_weights, tile_spans

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


def test_conversion_clamps_and_drops_nan():
    x = np.array([np.nan, np.inf, -np.inf, -0.2, 0.5, 1.3, 0.998], np.float32)
    as_float = pipeline._convert(x.copy(), np.dtype(np.float32))
    np.testing.assert_allclose(as_float, [0, 1, 0, 0, 0.5, 1, 0.998], rtol=1e-6)
    as_uint8 = pipeline._convert(x.copy(), np.dtype(np.uint8))
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
    with pytest.raises(ValueError):
        Ex(model=model, device="cuda:7" if not torch.cuda.is_available() else "mps:9")


def test_extract_frames_with_weights_file(tiny_weights):
    frames = extract_frames(photo_like(33, 47), tiny_weights, device="cpu")
    assert frames.shape == (7, 33, 47, 3) and frames.dtype == np.float32


# ---------------------------------------------------------------------------------------------------
# Device, precision, memory


def test_auto_device_and_precision():
    assert pipeline.pick_precision("auto", torch.device("cpu")) == "fp32"
    assert pipeline.pick_precision("bf16", torch.device("cpu")) == "bf16"
    assert pipeline.pick_precision("auto", torch.device("mps")) == "fp16"
    if torch.cuda.is_available():
        assert pipeline.pick_device("auto").type == "cuda"
        assert pipeline.pick_precision("auto", torch.device("cuda")) in ("bf16", "fp16")
    elif not torch.backends.mps.is_available():
        assert pipeline.pick_device("auto") == torch.device("cpu")


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


# ---------------------------------------------------------------------------------------------------
# make_clip: the job's own logic, with a stand-in for media


@pytest.fixture
def fake_media(monkeypatch, tmp_path):
    """A minimal media module that records what make_clip asks of it."""
    import blur2clip

    from blur2clip import media as real_media
    from blur2clip.capture import Capture

    m = types.ModuleType("blur2clip.media")
    calls = m.calls = {}

    class MediaError(Exception):
        def __init__(self, path, reason):
            super().__init__(f"{path}: {reason}")

    class Photo:
        def __init__(self, pixels, path, exif):
            self.pixels, self.path, self.exif, self.bit_depth = pixels, path, exif, 8
            self.capture = Capture(exif)

    def read_photo(path, max_pixels=None):
        calls["read"] = (Path(path), max_pixels)
        return Photo(photo_like(60, 80), Path(path), b"Exif\0\0fake")

    def write_clip(frames, out, fmt, fps=10.0, loops=1, overwrite=False, quality="high", crf=None, capture=None):
        calls["clip"] = dict(frames=np.stack(frames), out=Path(out), fmt=fmt, fps=fps, loops=loops, quality=quality,
                             crf=crf, capture=capture)
        Path(out).write_bytes(b"clip")
        return Path(out)

    def write_still(image, out, capture=None, overwrite=False):
        calls["still"] = dict(image=image.copy(), exif=capture.exif)
        Path(out).write_bytes(b"still")
        return Path(out)

    m.MediaError, m.Photo, m.read_photo = MediaError, Photo, read_photo
    m.write_clip, m.write_still = write_clip, write_still
    suffixes = {".gif": "gif", ".webp": "webp", "": "frames"}
    m.clip_format = lambda out, fmt=None: fmt or suffixes.get(Path(out).suffix, "mp4")
    m.default_output = lambda photo, fmt="mp4": Path(photo).with_name(Path(photo).stem + "_clip." + fmt)
    m.play_order = lambda n, pingpong=False, reverse=False: (
        (list(range(n)) + list(range(n - 2, 0, -1)) if pingpong else list(range(n)))[:: -1 if reverse else 1]
    )
    m.clip_max_size = real_media.clip_max_size
    m.to_uint8 = lambda frames: (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
    monkeypatch.setitem(sys.modules, "blur2clip.media", m)
    monkeypatch.setattr(blur2clip, "media", m, raising=False)
    monkeypatch.setitem(sys.modules, "blur2clip.clipwriter", m)
    monkeypatch.setattr(blur2clip, "clipwriter", m, raising=False)
    photo = tmp_path / "shot.jpg"
    photo.write_bytes(b"not read by the stand-in")
    return m, photo


def test_make_clip_flow(fake_media, model):
    media, photo = fake_media
    ex = Ex(model=model, tile=0)
    res = make_clip(photo, still=photo.with_name("mid.jpg"), extractor=ex, frames=None, fps=12, loops=2,
                    max_size=40)  # frames=None: the network's seven, as they are
    assert isinstance(res, ClipResult)
    assert res.output == photo.with_name("shot_clip.mp4") and res.output.read_bytes() == b"clip"
    clip = media.calls["clip"]
    assert clip["fmt"] == "mp4" and clip["fps"] == 12 and clip["loops"] == 2
    assert clip["frames"].dtype == np.uint8 and clip["frames"].shape == (12, 30, 40, 3)  # pingpong 7 -> 12
    assert (res.frames, res.width, res.height) == (12, 40, 30)
    np.testing.assert_array_equal(media.calls["still"]["image"], clip["frames"][3])  # the middle frame
    assert media.calls["still"]["exif"] == b"Exif\0\0fake"
    assert set(res.timings) >= {"decode", "model", "encode"}
    assert res.seconds >= sum(res.timings.values()) * 0.99
    np.testing.assert_array_equal(clip["frames"][7:], clip["frames"][1:6][::-1])  # ... 6, 5, 4, 3, 2

    assert (clip["quality"], clip["crf"], clip["capture"].exif) == ("high", None, b"Exif\0\0fake")

    back = make_clip(photo, photo.with_name("r.gif"), extractor=ex, frames=7, pingpong=False, reverse=True,
                     max_size=40, quality="low", crf=30, metadata=False)
    assert back.frames == 7 and media.calls["clip"]["fmt"] == "gif"
    assert (media.calls["clip"]["quality"], media.calls["clip"]["crf"]) == ("low", 30)
    assert media.calls["clip"]["capture"] is None  # metadata=False: nothing of the photo's kept
    np.testing.assert_array_equal(media.calls["clip"]["frames"], clip["frames"][:7][::-1])


def test_make_clip_refuses_to_write_over_the_photo(fake_media, model):
    media, photo = fake_media
    ex = Ex(model=model, tile=0)
    for kw in (dict(out=photo), dict(out=photo.parent / "." / photo.name, overwrite=True), dict(still=photo)):
        with pytest.raises(media.MediaError, match="shot.jpg"):
            make_clip(photo, extractor=ex, **kw)
    link = photo.with_name("link.jpg")
    os.link(photo, link)  # another name for the same file
    with pytest.raises(media.MediaError, match="link.jpg"):
        make_clip(photo, link, fmt="mp4", extractor=ex, overwrite=True)
    with pytest.raises(media.MediaError, match="same.mp4"):
        make_clip(photo, photo.with_name("same.mp4"), still=photo.with_name("same.mp4"), extractor=ex)
    assert "read" not in media.calls  # refused before any work
    assert photo.read_bytes() == b"not read by the stand-in"
    existing = photo.with_name("taken.mp4")
    existing.write_bytes(b"keep")
    with pytest.raises(media.MediaError, match="taken.mp4"):
        make_clip(photo, existing, extractor=ex)
    assert existing.read_bytes() == b"keep"


# ---------------------------------------------------------------------------------------------------
# make_clip end to end, with the real media module




@pytest.fixture
def real_photo(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "blurred.jpg"
    Image.fromarray((photo_like(72, 96) * 255 + 0.5).astype(np.uint8)).save(path, quality=92)
    return path


@pytest.mark.parametrize("fmt", ["mp4", "frames"])
def test_make_clip_end_to_end(real_photo, tiny_weights, fmt):
    from blur2clip import media

    out = real_photo.with_name("clip.mp4" if fmt == "mp4" else "clip_frames")
    still = real_photo.with_name("middle.jpg")
    res = make_clip(real_photo, out, fmt=fmt, still=still, weights=tiny_weights, device="cpu", tile=64)
    assert res.output.exists() and res.still == still and still.is_file()
    # the default instants, forward and back; a folder of frames holds each instant once
    played = CLIP_FRAMES if fmt == "frames" else len(media.play_order(CLIP_FRAMES, pingpong=True))
    assert (res.width, res.height) == (96, 72) and res.frames == played and res.motion >= 0
    if fmt == "frames":
        assert res.output.is_dir() and len([p for p in res.output.iterdir() if p.is_file()]) == played
        distinct = {p.read_bytes() for p in res.output.iterdir() if p.is_file()}
        assert len(distinct) > played // 2  # instants, not copies
    else:
        assert res.output.stat().st_size > 0
    with pytest.raises(media.MediaError):
        make_clip(real_photo, out, fmt=fmt, weights=tiny_weights, device="cpu")  # exists, no overwrite


def test_make_clip_refuses_photo_for_real(real_photo, tiny_weights):
    from blur2clip import media

    before = real_photo.read_bytes()
    with pytest.raises(media.MediaError, match="blurred.jpg"):
        make_clip(real_photo, real_photo, fmt="mp4", weights=tiny_weights, device="cpu", overwrite=True)
    with pytest.raises(media.MediaError, match="blurred.jpg"):
        make_clip(real_photo, still=real_photo, weights=tiny_weights, device="cpu", overwrite=True)
    assert real_photo.read_bytes() == before


def test_on_tile_reports_each_pass_over_tiles(tiny_weights):
    ex = Extractor(tiny_weights, device="cpu", tile=64, overlap=16)
    seen = []
    ex.on_tile = lambda done, total: seen.append((done, total))
    ex(np.random.default_rng(0).random((100, 150, 3), dtype=np.float32))
    total = seen[0][1]
    assert total > 1 and seen == [(i, total) for i in range(1, total + 1)]
