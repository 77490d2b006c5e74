"""The network: any size, starts as the identity, weights round-trip through a file."""

import pytest
import torch

from blur2clip import weights
from blur2clip.model import Blur2Clip, ModelConfig, count_macs, count_parameters, stage_frames
from conftest import tiny_config, tiny_model


@pytest.mark.parametrize("h,w", [(1, 1), (17, 33), (37, 51), (64, 8), (5, 130)])
def test_odd_sizes(h, w):
    m = tiny_model()
    with torch.no_grad():
        y = m(torch.rand(2, 3, h, w))
    assert y.shape == (2, 7, 3, h, w)
    assert torch.isfinite(y).all()


def test_untrained_network_returns_the_input_for_every_frame():
    m = Blur2Clip(tiny_config()).eval()
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        y = m(x)
    assert torch.equal(y, x.unsqueeze(1).expand_as(y))


def test_channels_last_gives_the_same_frames():
    m = tiny_model()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        a = m(x)
        b = m.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(a, b, atol=1e-5)


def test_saved_weights_load_and_give_the_same_frames(tmp_path):
    m = tiny_model(seed=3)
    path = weights.save(m, tmp_path / "w.safetensors", training={"steps": 5})
    meta = weights.read_metadata(path)
    assert meta["config"] == m.config.to_dict() and meta["training"] == {"steps": 5}
    loaded = weights.load_model(path)
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert torch.equal(m(x), loaded(x))


def test_damaged_weights_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(weights.WeightsError, match="bad.safetensors"):
        weights.load_model(bad)
    with pytest.raises(weights.WeightsError, match="not found"):
        weights.load_model(tmp_path / "missing.safetensors")


def test_stage_frames_and_size_figures():
    assert stage_frames(1) == [3] and stage_frames(2) == [2, 3, 4] and stage_frames(3) == list(range(7))
    default = Blur2Clip(ModelConfig())
    assert 1.5e6 < count_parameters(default) < 2.5e6
    macs = count_macs(Blur2Clip(tiny_config()), 32, 32)
    # convolutions work per pixel; only the channel attention's 1x1 convs on pooled maps do not grow
    assert 3.99 * macs < count_macs(Blur2Clip(tiny_config()), 64, 64) < 4 * macs
    seven, nine = Blur2Clip(tiny_config(frames=7)), Blur2Clip(tiny_config(frames=9))
    head = nine.ending  # 3 output channels a frame
    per_channel = 32 * 32 * head.kernel_size[0] * head.kernel_size[1] * head.in_channels // head.groups
    assert count_macs(nine, 32, 32) - count_macs(seven, 32, 32) == 2 * 3 * per_channel


def test_half_precision_storage_is_half_the_size_and_loads_as_float32(tmp_path):
    m = tiny_model(seed=5)
    full = weights.save(m, tmp_path / "full.safetensors")
    half = weights.save(m, tmp_path / "half.safetensors", half=True)
    from safetensors.torch import load_file

    stored = load_file(str(half))
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    assert half.stat().st_size < full.stat().st_size  # (a tiny net's file is mostly its header)
    loaded = weights.load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert (m(x) - loaded(x)).abs().max() < 1e-2


# ---------------------------------------------------------------- the travel head

def test_render_moves_the_middle_frame_along_the_travel():
    from blur2clip.model import render

    g = torch.Generator().manual_seed(0)
    mid = torch.rand(1, 3, 40, 60, generator=g)
    still = render(mid, torch.zeros(1, 2, 40, 60), 5)
    assert torch.allclose(still, mid.unsqueeze(1).expand(1, 5, 3, 40, 60), atol=1e-5)
    travel = torch.tensor([10.0, -5.0]).view(1, 2, 1, 1).expand(1, 2, 40, 60)  # 10 px right, 5 px up
    frames = render(mid, travel, 5)  # instants -0.4 .. 0.4: 4 px right and 2 px up per 0.4
    last = frames[0, 4]  # what was at q is at q + (4, -2)
    assert torch.allclose(last[:, 10:-10, 14:], mid[0, :, 12:-8, 10:-4], atol=1e-5)
    assert torch.allclose(frames[0, 2], mid[0], atol=1e-5)
    assert torch.allclose(frames[0, 0][:, 10:-10, :-14], mid[0, :, 8:-12, 4:-10], atol=1e-5)


def test_the_travel_head_starts_from_the_middle_frame_and_renders_any_count():
    from blur2clip.model import with_frames, with_travel_head

    frames_model = tiny_model().eval()
    model = with_travel_head(frames_model).eval()
    assert model.config.head == "travel" and model.ending.out_channels == 5
    x = torch.rand(2, 3, 29, 43)
    with torch.no_grad():
        out, travel = model(x, with_travel=True)
        before = frames_model(x)
    assert out.shape == (2, 7, 3, 29, 43) and travel.shape == (2, 2, 29, 43) and not travel.any()
    assert torch.allclose(out[:, 3], before[:, 3], atol=1e-5)  # the middle frame is kept
    assert torch.allclose(out, out[:, 3:4].expand_as(out), atol=1e-5)  # no travel yet: every frame the middle
    more = with_frames(model, 48)
    assert more.config.frames == 48 and more.ending.out_channels == 5
    with torch.no_grad():
        assert more(x).shape == (2, 48, 3, 29, 43)


def test_a_travel_head_file_round_trips_with_its_config(tmp_path):
    from blur2clip.model import with_travel_head

    model = with_travel_head(tiny_model()).eval()
    with torch.no_grad():
        model.ending.weight[3:] += 0.01  # some travel
    path = weights.save(model, tmp_path / "travel.safetensors")
    loaded = weights.load_model(path).eval()
    assert loaded.config.head == "travel"
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        a, ta = model(x, with_travel=True)
        b, tb = loaded(x, with_travel=True)
    assert ta.abs().max() > 0.01 and torch.allclose(a, b, atol=1e-5) and torch.allclose(ta, tb, atol=1e-5)


def test_an_unknown_head_is_refused():
    with pytest.raises(ValueError, match="head"):
        ModelConfig.from_dict({"head": "flow"})


def test_an_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="norm"):
        ModelConfig.from_dict({"norm": "batch"})


def test_a_centre_norm_network_round_trips_and_a_layer_norm_config_is_stored_as_before(tmp_path):
    """config.norm "centre" is stored in the file and comes back; the LayerNorm (the default) is not
    written at all, so the files of older networks are written byte for byte as they were."""
    assert "norm" not in ModelConfig().to_dict() and ModelConfig.from_dict({}).norm == "layer"
    model = tiny_model(seed=2, norm="centre")
    path = weights.save(model, tmp_path / "centre.safetensors")
    loaded = weights.load_model(path)
    assert loaded.config.norm == "centre" and model.config.to_dict()["norm"] == "centre"
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-5)


def test_centre_levels_put_the_centre_norm_in_the_first_levels_only(tmp_path):
    """config.centre_levels N: the blocks of the N full-resolution-most levels, encoder and decoder, have
    centre norms, every other block its LayerNorms; stored in the file only when set, range-checked."""
    from blur2clip.model import CentreNorm2d, LayerNorm2d

    model = tiny_model(seed=4, enc_blocks=[1, 2, 1], dec_blocks=[1, 1, 2], centre_levels=1)
    kinds = {name: type(m) for name, m in model.named_modules() if isinstance(m, LayerNorm2d)}
    centre = sorted(name for name, kind in kinds.items() if kind is CentreNorm2d)
    assert centre == ["decoders.2.0.norm1", "decoders.2.0.norm2", "decoders.2.1.norm1", "decoders.2.1.norm2",
                      "encoders.0.0.norm1", "encoders.0.0.norm2"]
    assert len(kinds) - len(centre) == 2 * (2 + 1 + 1 + 1 + 1)  # the other levels' blocks and the middle's
    assert "centre_levels" not in ModelConfig().to_dict()
    loaded = weights.load_model(weights.save(model, tmp_path / "levels.safetensors"))
    assert loaded.config.centre_levels == 1
    x = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-5)
    with pytest.raises(ValueError, match="centre_levels"):
        ModelConfig.from_dict({"centre_levels": -1})


def test_a_centre_norm_centres_each_pixel_without_dividing():
    from blur2clip.model import CentreNorm2d

    norm = CentreNorm2d(5)
    x = torch.randn(2, 5, 6, 7)
    y = norm(x)
    assert y.mean(1).abs().max() < 1e-6  # each pixel's channels centred
    assert torch.allclose(norm(3 * x), 3 * y, atol=1e-5)  # no division by the spread: it scales with x


def test_in_training_only_the_middle_instant_teaches_the_middle_frame():
    from blur2clip.model import render

    mid = torch.rand(1, 3, 16, 20, requires_grad=True)
    travel = torch.full((1, 2, 16, 20), 3.0, requires_grad=True)
    frames = render(mid, travel, 5, hold=True)
    frames[:, [0, 1, 3, 4]].sum().backward()  # the moved frames only
    assert mid.grad is None or not mid.grad.any()
    assert travel.grad.abs().sum() > 0
    render(mid, travel, 5, hold=True)[:, 2].sum().backward()  # the middle instant is the middle frame itself
    assert torch.equal(mid.grad, torch.ones_like(mid))


def test_a_training_travel_network_holds_its_middle_frame():
    """In train mode the moved frames reach the travel's weights only; in eval mode they reach both."""
    from blur2clip.model import with_travel_head

    model = with_travel_head(tiny_model())
    with torch.no_grad():
        model.ending.weight[3:] = torch.randn_like(model.ending.weight[3:]) * 0.3
    x = torch.rand(1, 3, 24, 32)
    for training, middle_learns in ((True, False), (False, True)):
        model.train(training).zero_grad()
        model(x)[:, [0, 1, 5, 6]].sum().backward()  # the moved frames only
        assert model.ending.weight.grad[3:].abs().sum() > 0
        assert bool(model.ending.weight.grad[:3].abs().sum() > 0) == middle_learns
