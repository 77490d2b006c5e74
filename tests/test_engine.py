"""The two engines (engine.py): onnxruntime and torch give the same frames; which one `auto` picks; the ONNX
files (onnxfile.py): the shipped ones re-export to the same bytes and match the manifest, `blur2clip
weights export` on a user's file and its errors; the onnxruntime path of the command line loads no torch."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import torch
import pytest
from conftest import ROOT, tiny_model
from test_cli import env, photo
from test_extract import photo_like

from blur2clip import cli, weights
from blur2clip.cli import ExitCode
from blur2clip.errors import DeviceError, WeightsError
from blur2clip.extract import Extractor
from blur2clip.onnxfile import export_onnx, onnx_for

SHIPPED = ROOT / "weights" / "blur2clip-w16-stage3.safetensors"


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    """A user's weights file (a tiny random network) with its ONNX file beside it."""
    path = weights.save(tiny_model(seed=3), tmp_path_factory.mktemp("user") / "mine.safetensors")
    export_onnx(path)
    return path


def both(weights_file, **kw) -> tuple[Extractor, Extractor]:
    return (Extractor(weights_file, device="cpu", engine="onnx", **kw),
            Extractor(weights_file, device="cpu", engine="torch", **kw))


@pytest.mark.parametrize("h, w, tile", [(37, 53, 0), (101, 77, 0), (150, 203, 64), (97, 130, 48)])
def test_onnxruntime_and_torch_give_the_same_frames(user_file, h, w, tile):
    """Odd sizes (padded to the network's multiple before the graph), whole and in tiles, guard on."""
    onnx, torch_ = both(user_file, tile=tile, overlap=16)
    assert (onnx.engine, torch_.engine) == ("onnx", "torch")
    image = photo_like(h, w)
    a, b = onnx(image), torch_(image)
    assert a.shape == b.shape == (7, h, w, 3)
    assert np.abs(a - b).max() < 1e-4
    assert np.abs(a - image[None]).max() > 0.01  # the network did change the frames
    assert np.abs(onnx(image, np.uint8).astype(int) - torch_(image, np.uint8)).max() <= 1


def test_tiles_run_side_by_side_give_the_frames_of_one_at_a_time(user_file):
    """onnxruntime on several threads runs that many tiles at once, one thread each (OnnxNet.lanes), in
    the order the blending takes them: the same frames, bit for bit, as one tile at a time; a photo that
    fits one tile still runs in one pass."""
    image = photo_like(150, 203)
    one = Extractor(user_file, device="cpu", engine="onnx", threads=1, tile=48, overlap=16)
    three = Extractor(user_file, device="cpu", engine="onnx", threads=3, tile=48, overlap=16)
    assert (one.net.lanes, three.net.lanes) == (1, 3)
    assert np.array_equal(three(image), one(image))
    assert np.array_equal(three(image, np.uint8), one(image, np.uint8))
    whole = Extractor(user_file, device="cpu", engine="onnx", threads=3, tile=0)
    assert np.abs(whole(image) - one(image)).max() > 0  # (the tiles above did run: one pass differs)
    assert np.array_equal(whole(image), Extractor(user_file, device="cpu", engine="onnx", threads=1, tile=0)(image))


def test_a_travel_head_agrees_in_both_engines(travel_weights):
    """A travel head's engines give its middle frame and travel, blended over tiles and rendered at any
    instant in numpy (rendering.Motion): the same in both engines, whole and tiled, and they really move."""
    from blur2clip.rendering import Motion

    path = travel_weights
    image = photo_like(101, 150)
    for tile in (0, 64):
        onnx, torch_ = both(path, tile=tile, overlap=16)
        a, b = onnx(image), torch_(image)
        assert isinstance(a, Motion) and isinstance(b, Motion)
        assert a.shape == b.shape == (7, 101, 150, 3)
        assert np.abs(np.asarray(a) - np.asarray(b)).max() < 1e-4
        assert np.abs(a.travel - b.travel).max() < 1e-3  # px
        assert np.abs(a[0] - a[-1]).max() > 0.05  # the frames move
        assert np.abs(np.asarray(a.at(48)) - np.asarray(b.at(48))).max() < 1e-4
        uint8 = onnx(image, np.uint8)
        assert uint8[3].dtype == np.uint8 and np.abs(uint8[3] / 255 - a[3]).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("norm", [{"norm": "layer"}, {"norm": "centre"}, {"centre_levels": 1}])
def test_the_graphs_rearranged_blocks_compute_the_same_network(norm):
    """The exported graph's NAFBlocks (each gate as two convolutions; a CentreNorm folded into the
    convolutions after it) and upsamplers (one transposed convolution each) are the same function: to
    float rounding, on a network whose block scales and norm weights are not trivial."""
    from blur2clip.model import NAFBlock
    from blur2clip.torchnet import _for_graph

    model = tiny_model(seed=3, **norm)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm" in name:
                p.normal_(1 if name.endswith("weight") else 0, 0.3)
    graph = _for_graph(model)
    assert not any(isinstance(m, (NAFBlock, torch.nn.PixelShuffle)) for m in graph.modules())
    assert any(isinstance(m, NAFBlock) for m in model.modules())  # the model itself is left as it was
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert (graph(x) - model(x)).abs().max() < 1e-5


def test_a_centre_norm_graph_has_no_norm_and_agrees_in_both_engines(tmp_path, user_file):
    """A CentreNorm network's graph holds no norm of any kind (its centring and scale are in the
    convolutions), and onnxruntime gives torch's frames, whole and tiled."""
    import onnx

    centre = weights.save(tiny_model(seed=5, norm="centre"), tmp_path / "centre.safetensors")
    ops = {"layer": [n.op_type for n in onnx.load(str(onnx_for(user_file))).graph.node],
           "centre": [n.op_type for n in onnx.load(str(export_onnx(centre))).graph.node]}
    assert "LayerNormalization" in ops["layer"] and "LayerNormalization" not in ops["centre"]
    # the only means left are those of the channel attention and the still guard, as in the LayerNorm's
    assert ops["centre"].count("ReduceMean") == ops["layer"].count("ReduceMean")
    image = photo_like(61, 90)
    for tile in (0, 48):
        onnx_, torch_ = both(centre, tile=tile, overlap=16)
        assert np.abs(onnx_(image) - torch_(image)).max() < 1e-4


def test_a_network_centred_in_its_first_level_keeps_the_other_norms_and_agrees_in_both_engines(tmp_path):
    """config.centre_levels 1: the first level's norms fold into its convolutions, the deeper levels keep
    their LayerNorms in the graph, and onnxruntime gives torch's frames, whole and tiled."""
    import onnx

    model = tiny_model(seed=6, enc_blocks=[1, 1], dec_blocks=[1, 2], centre_levels=1)
    path = weights.save(model, tmp_path / "levels.safetensors")
    ops = [n.op_type for n in onnx.load(str(export_onnx(path))).graph.node]
    assert ops.count("LayerNormalization") == 2 * (1 + 1 + 1)  # level 2's encoder and decoder, the middle
    image = photo_like(61, 90)
    for tile in (0, 48):
        onnx_, torch_ = both(path, tile=tile, overlap=16)
        assert np.abs(onnx_(image) - torch_(image)).max() < 1e-4


@pytest.mark.parametrize("h, w", [(1, 1), (3, 5), (9, 9), (40, 33)])
def test_the_still_guards_mean_is_the_9x9_box_mean(h, w):
    """keep_still spreads the departure with a 9x9 max, then a 9x9 mean (the pixels inside the picture
    only), done one axis at a time: the same as the 2-D mean, also on pictures smaller than the box."""
    import torch.nn.functional as F

    from blur2clip.torchnet import MOVED_ABOVE, STILL_BELOW, STILL_RADIUS, keep_still

    g = torch.Generator().manual_seed(h * 100 + w)
    x = torch.rand(2, 3, h, w, generator=g)
    moved = torch.rand(2, 1, 1, h, w, generator=g) > 0.6  # some pixels depart, the others stay
    y = x[:, None] + (torch.rand(2, 5, 3, h, w, generator=g) - 0.5) * 0.3 * moved
    k = 2 * STILL_RADIUS + 1
    d = F.max_pool2d((y - x[:, None]).abs().mean(2).amax(1, keepdim=True), k, 1, STILL_RADIUS)
    d = F.avg_pool2d(d, k, 1, STILL_RADIUS, count_include_pad=False)
    wgt = ((d - STILL_BELOW) / (MOVED_ABOVE - STILL_BELOW)).clamp(0, 1)[:, None]
    assert (keep_still(x, y) - (x[:, None] + wgt * (y - x[:, None]))).abs().max() < 1e-6


def test_the_shipped_weights_agree_in_both_engines():
    onnx, torch_ = both(SHIPPED, tile=96, overlap=16)
    image = photo_like(123, 181)
    a, b = np.asarray(onnx(image)), np.asarray(torch_(image))  # a travel head's frames rendered (Motion)
    assert a.shape == (onnx.config.frames, 123, 181, 3) and np.abs(a - b).max() < 1e-4


def test_auto_picks_onnxruntime_where_it_can(user_file, tmp_path, caplog):
    assert Extractor(None, device="cpu").engine == "onnx"  # the shipped default has its ONNX file
    assert Extractor(user_file, device="cpu").engine == "onnx"
    assert Extractor(user_file, device="cpu", precision="bf16").engine == "torch"
    assert Extractor(user_file, device="cpu", keep_still=False).engine == "torch"
    assert Extractor(model=tiny_model(), device="cpu").engine == "torch"
    bare = weights.save(tiny_model(seed=4), tmp_path / "bare.safetensors")
    assert Extractor(bare, device="cpu").engine == "torch"  # no ONNX file
    with pytest.raises(WeightsError, match="weights export"):
        Extractor(bare, device="cpu", engine="onnx")
    (tmp_path / "bare.onnx").write_bytes(user_file.with_suffix(".onnx").read_bytes())  # other weights'
    with caplog.at_level(logging.WARNING):
        assert Extractor(bare, device="cpu").engine == "torch"
    assert "made from other weights" in caplog.text
    with pytest.raises(WeightsError, match="made from other weights"):
        Extractor(bare, device="cpu", engine="onnx")
    with pytest.raises(DeviceError, match="torch model"):
        Extractor(model=tiny_model(), engine="onnx")
    with pytest.raises(ValueError, match="engine"):
        Extractor(user_file, engine="tensorflow")
    onnx_file = Extractor(user_file.with_suffix(".onnx"), device="cpu")  # the ONNX file itself
    assert onnx_file.engine == "onnx" and onnx_file.config == tiny_model().config


def test_shipped_onnx_files_re_export_to_the_same_bytes_and_match_the_manifest(tmp_path, monkeypatch):
    """What training/ship.py does (export_onnx of each shipped file) gives the shipped bytes again."""
    monkeypatch.delenv("BLUR2CLIP_MANIFEST", raising=False)
    manifest = weights.read_manifest()
    for name, entry in manifest.items():
        if "alias" in entry:
            continue
        onnx = weights.shipped_dir() / entry["onnx"]["file"]
        assert onnx == onnx_for(weights.shipped_dir() / entry["file"]), name
        assert weights.mismatch(onnx, entry["onnx"]["sha256"], entry["onnx"]["size"]) is None, name
    again = export_onnx(SHIPPED, tmp_path / "again.onnx")
    assert again.read_bytes() == SHIPPED.with_suffix(".onnx").read_bytes()
    assert {v.path.name for v in weights.verify() if v.ok} >= {SHIPPED.with_suffix(".onnx").name}


def test_a_damaged_shipped_onnx_file_is_refused(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for suffix in (".safetensors", ".onnx"):
        (shipped / SHIPPED.with_suffix(suffix).name).write_bytes(SHIPPED.with_suffix(suffix).read_bytes())
    entry = weights.manifest_entry(shipped / SHIPPED.name, "stage3")
    (shipped / "manifest.json").write_text(json.dumps({"default": {"alias": "stage3"}, "stage3": entry}))
    monkeypatch.setenv("BLUR2CLIP_MANIFEST", str(shipped / "manifest.json"))
    onnx = shipped / SHIPPED.with_suffix(".onnx").name
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        Extractor("default", device="cpu")
    assert any(not v.ok and v.path == onnx for v in weights.verify())


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def test_weights_export_on_a_user_file(tmp_path, capsys, user_file):
    src = tmp_path / "run" / "stage3.safetensors"
    src.parent.mkdir()
    src.write_bytes(user_file.read_bytes())
    code, out, err = run(capsys, "weights", "export", src)
    assert code == ExitCode.OK, err
    assert out.splitlines() == [str(src.with_suffix(".onnx"))]
    assert err.strip().endswith(f"blur2clip PHOTO --weights {src}")  # found there as it is
    first = src.with_suffix(".onnx").read_bytes()
    assert first == onnx_for(user_file).read_bytes()  # the same weights, the same bytes
    assert Extractor(src, device="cpu").engine == "onnx"

    code, out, err = run(capsys, "weights", "export", src)  # never over an existing file without --overwrite
    assert code == ExitCode.OUTPUT and out == "" and "already exists" in err and len(err.splitlines()) == 1
    (tmp_path / "keep.onnx").write_bytes(b"mine")
    code, _, err = run(capsys, "weights", "export", src, "-o", tmp_path / "keep.onnx")
    assert code == ExitCode.OUTPUT and (tmp_path / "keep.onnx").read_bytes() == b"mine"
    code, _, err = run(capsys, "weights", "export", src, "-o", tmp_path / "keep.onnx", "--overwrite")
    assert code == ExitCode.OK and (tmp_path / "keep.onnx").read_bytes() == first
    assert err.strip().endswith(f"(to run --weights {src} in onnxruntime, put it at {src.with_suffix('.onnx')})")
    code, _, err = run(capsys, "weights", "export", src, "-o", tmp_path / "x.txt")
    assert code == ExitCode.OUTPUT and len(err.splitlines()) == 1


@pytest.mark.parametrize("content", [None, b"", b"not a weights file", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_weights_export_of_a_missing_or_broken_file_is_one_line(tmp_path, capsys, content):
    src = tmp_path / "broken.safetensors"
    if content is not None:
        src.write_bytes(content)
    code, out, err = run(capsys, "weights", "export", src)
    assert code == ExitCode.WEIGHTS and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("blur2clip: error: ") and str(src) in err
    assert not src.with_suffix(".onnx").exists()


def test_a_broken_onnx_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    photo(tmp_path / "p.png", h=40, w=40)
    code, out, err = run(capsys, tmp_path / "p.png", "--weights", bad, "--device", "cpu", "-q")
    assert code == ExitCode.WEIGHTS and out == "" and len(err.splitlines()) == 1 and str(bad) in err


def test_the_onnxruntime_path_loads_no_torch(tmp_path):
    """`blur2clip PHOTO` with the shipped weights on the CPU: a clip, and torch never imported."""
    photo(tmp_path / "p.png", h=64, w=96)
    code = ("import sys; from blur2clip.cli import main; code = main(sys.argv[1:]); "
            "heavy = sorted(m for m in ('torch', 'torchmetrics', 'onnx', 'onnxscript') if m in sys.modules); "
            "print('heavy', heavy); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code, "p.png", "--device", "cpu"], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.mp4").is_file() and "onnxruntime" in proc.stderr
    assert "heavy []" in proc.stdout
