"""Training settings: config files (TOML, JSON, a run's own config.json), flags over them, the checks on
their values, TensorBoard, and the modes of the files a run writes."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blur2clip import runconfig, weights
from blur2clip.cli import main
from blur2clip.model import ModelConfig
from blur2clip.runconfig import TrainConfig
from blur2clip.train import train
from layouts import make_photos

TINY_TOML = """
stage = 1
steps = 2
batch = 2
crop = 32
val_count = 2
val_size = 32
workers = 0
log_every = 1
warmup = 1
lr = 2e-3

[model]
width = 4
enc_blocks = [1, 1]
dec_blocks = [1, 1]
middle_blocks = 1

[synth]
p_static_camera = 0.4
layer_probs = [0.1, 0.4, 0.3, 0.2]
"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos") / "photos", 12)


def tiny(photos, out, **kw) -> TrainConfig:
    """The settings of TINY_TOML for a run of `photos` into `out`, with `kw` over them."""
    import tomllib

    return runconfig.from_dict({**tomllib.loads(TINY_TOML), "data": str(photos), "out": str(out), **kw})


def test_a_toml_file_gives_every_setting_and_the_defaults_fill_the_rest(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('data = "d"\nout = "o"\n' + TINY_TOML)
    cfg = runconfig.from_dict(runconfig.read(path))
    assert cfg.stage == "1" and cfg.steps == [2, 2, 2] and cfg.lr == 2e-3 and cfg.batch == 2
    assert cfg.model == ModelConfig(width=4, enc_blocks=[1, 1], dec_blocks=[1, 1], middle_blocks=1)
    assert cfg.synth == {"p_static_camera": 0.4, "layer_probs": [0.1, 0.4, 0.3, 0.2]}
    assert cfg.w_middle == TrainConfig(data="", out="").w_middle and cfg.ema == 0.0
    assert isinstance(runconfig.from_dict({"data": "d", "out": "o", "lr": 1}).lr, float)


@pytest.mark.parametrize("text, message", [
    ("lrr = 1", "unknown setting 'lrr'"),
    ('lr = "fast"', "lr = 'fast': expected a number"),
    ("batch = 2.5", "batch = 2.5: expected a whole number"),
    ("batch = 0", "batch = 0: expected at least 1"),
    ("ema = 1.0", "ema = 1.0: expected a decay below 1"),
    ('stage = "4"', "stage = '4': expected one of 1, 2, 3, all"),
    ('layout = "movies"', "layout = 'movies': expected one of auto, photos"),
    ("steps = [1, 0, 1]", "steps = [1, 0, 1]: expected a number of steps"),
    ("tensorboard = 1", "tensorboard = 1: expected true or false"),
    ("[model]\nwidht = 4", "unknown network setting model.widht"),
    ("[model]\nwidth = 0", "model config width: 0 is out of range"),
    ("[synth]\nwobble = 1", "unknown synthetic-motion setting synth.wobble"),
    ("steps = [2, 3]", "steps = [2, 3]: expected a number of steps for every stage, or three (one per stage)"),
    ('[synth]\np_static_camera = "x"', "synth.p_static_camera = 'x': expected a number, not negative"),
    ("[synth]\nphoto_scale = 0.5", "synth.photo_scale = 0.5: expected 2 numbers, none negative"),
    ("[synth]\np_noise = 7", "synth.p_noise = 7: expected a share from 0 to 1"),
    ("[synth]\nmin_sub = 0", "synth.min_sub = 0: expected more than 0"),
    ("[synth]\nmin_sub = 20", "synth.min_sub is more than synth.max_sub"),
    ("[synth]\njpeg_quality = [200, 300]", "synth.jpeg_quality = [200, 300]: expected JPEG qualities from 1 to 100"),
    ("[synth]\nexposure = [1.4, 0.6]", "synth.exposure = [1.4, 0.6]: expected the least first"),
    ("[synth]\nswarm_count = [8.5, 40]", "synth.swarm_count = [8.5, 40]: expected 2 numbers, whole, none negative"),
    ("[synth]\nlayer_probs = [0, 0]", "synth.layer_probs = [0, 0]: expected shares that add up to more than 0"),
    ("lr = [", "not valid TOML"),
])
def test_a_bad_setting_is_named_with_its_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match="bad.toml: ") as e:
        runconfig.read(path)
    assert message in str(e.value)


def test_a_broken_json_file_is_called_json_even_when_it_does_not_start_with_a_brace(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("lr = 0.002\n")
    with pytest.raises(ValueError, match="run.json: not valid JSON"):
        runconfig.read(path)


def test_the_readmes_config_file_is_read_as_it_stands(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "run.toml").write_text(block)
    cfg = runconfig.from_dict(runconfig.read(tmp_path / "run.toml"))
    assert cfg.steps == [1000, 1000, 60000] and cfg.ema == 0.999 and cfg.tensorboard and cfg.model.frames == 21
    assert cfg.synth == {"p_static_camera": 0.4, "layer_px": 24.0, "p_defocus": 0.15}


def test_json_is_read_by_its_suffix_or_its_brace(tmp_path):
    (tmp_path / "a.json").write_text('{"lr": 0.002, "stage": "all"}')
    (tmp_path / "b.conf").write_text('  {"lr": 0.002}')
    assert runconfig.read(tmp_path / "a.json") == {"lr": 0.002, "stage": "all"}
    assert runconfig.read(tmp_path / "b.conf") == {"lr": 0.002}
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="c.json: a config file holds settings"):
        runconfig.read(tmp_path / "c.json")


def test_a_runs_config_json_starts_the_same_run_again(photos, tmp_path):
    cfg = TrainConfig(data=str(photos), out=str(tmp_path / "a"), stage="1", steps=[2, 2, 2], batch=2, crop=32,
                      val_count=2, val_size=32, workers=0, log_every=1, warmup=1, ema=0.5,
                      synth={"p_static_camera": 0.4, "layer_probs": (0.1, 0.4, 0.3, 0.2)},
                      model=ModelConfig(width=4, enc_blocks=[1, 1], dec_blocks=[1, 1], middle_blocks=1))
    (first,) = train(cfg, log=lambda *_: None)
    saved = runconfig.read(tmp_path / "a" / "config.json")
    assert saved == runconfig.to_dict(cfg) and "resume" not in saved
    # the stage file carries the same settings
    assert weights.read_metadata(first)["training"]["config"] == saved
    again = runconfig.from_dict(runconfig.merge(saved, {"out": str(tmp_path / "b")}))
    assert runconfig.to_dict(again) == {**saved, "out": str(tmp_path / "b")}
    (second,) = train(again, log=lambda *_: None)
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_flags_typed_on_the_command_line_override_the_file_and_defaults_do_not(photos, tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(f'data = "{photos}"\nout = "{tmp_path / "run"}"\nseed = 3\n' + TINY_TOML)
    code = main(["train", "--config", str(path), "--lr", "5e-4", "--width", "8", "--ema", "0.9", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == str(tmp_path / "run" / "stage1.safetensors")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["lr"] == 5e-4 and saved["ema"] == 0.9 and saved["model"]["width"] == 8  # typed: override
    assert saved["model"]["enc_blocks"] == [1, 1] and saved["synth"]["p_static_camera"] == 0.4  # merged
    assert saved["batch"] == 2 and saved["steps"] == [2, 2, 2] and saved["seed"] == 3  # not typed: the file's


def test_every_train_option_has_the_default_of_its_setting():
    import typer

    import blur2clip.cli_train as cli_train

    params = {p.name: p.default for p in typer.main.get_command(cli_train.commands).commands["train"].params}
    cfg, model = TrainConfig(data="", out=""), ModelConfig()
    settings = set(runconfig.to_dict(cfg)) | {"resume"}
    for name, default in params.items():
        if name in ("config", "quiet", "data", "out"):
            continue
        if name == "steps":
            assert cli_train._steps(default) == cfg.steps
        elif name in ("enc_blocks", "dec_blocks"):
            assert cli_train._ints(default) == getattr(model, name)
        elif name in cli_train._MODEL_FLAGS:
            assert default == getattr(model, name), name
        else:
            assert name in settings and default == getattr(cfg, name), name
    assert {"ema", "tensorboard", "w_reblur"} <= set(params)


@pytest.mark.parametrize("args, message", [
    (["--config", "{tmp}/missing.toml"], "missing.toml: No such file or directory"),
    (["--config", "{tmp}/bad.toml"], "bad.toml: unknown setting 'lrr'"),
    (["--config", "{tmp}/nodata.toml"], "nodata.toml: no data"),
    (["--config", "{tmp}/bytes.toml"], "bytes.toml: not a text file (UTF-8)"),
    (["--config", "{tmp}/size.toml"], "size.toml: synth.size is set by the data and --crop, not here"),
    (["--config", "{tmp}/nan.json"], "nan.json: lr = nan: expected a finite number"),
])
def test_a_bad_config_file_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    (tmp_path / "bad.toml").write_text("lrr = 1\n")
    (tmp_path / "nodata.toml").write_text('out = "x"\n')
    (tmp_path / "bytes.toml").write_bytes(b"\xff\xfe")
    (tmp_path / "size.toml").write_text("[synth]\nsize = 64\n")
    (tmp_path / "nan.json").write_text('{"lr": NaN}')  # Python's json reads NaN
    code = main(["train", *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert err.startswith("blur2clip: error: ")


def test_without_a_config_file_data_and_out_are_required(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--data" in err and "config file" in err


def test_tensorboard_without_its_package_is_one_line(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    code = main(["train", "--data", str(photos), "--out", str(tmp_path / "run"), "--tensorboard"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert 'pip install "blur2clip[tensorboard]"' in err
    assert not (tmp_path / "run").exists()


def test_compile_without_a_cpp_compiler_is_one_line(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    monkeypatch.delenv("CXX", raising=False)
    code = main(["train", "--data", str(photos), "--out", str(tmp_path / "run"), "--compile", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--compile" in err and "C++ compiler" in err
    assert not (tmp_path / "run").exists()


def test_tensorboard_gets_the_scalars_of_the_log_and_validation_samples(photos, tmp_path):
    pytest.importorskip("tensorboard")  # installed by the test extra
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny(photos, tmp_path, stage="all", val_every=2, tensorboard=True)
    train(cfg, log=lambda *_: None)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(losses)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]  # the stages one after another
    vals = [r for r in log if "val" in r]
    for k in ("ppsnr", "ssim", "middle_ssim", "reblur"):
        assert [e.value for e in events.Scalars(f"val/{k}")] == pytest.approx([r["val"][k] for r in vals])
    assert [e.value for e in events.Scalars("baseline/ppsnr")] == pytest.approx([r["baseline"]["ppsnr"] for r in vals])
    assert "baseline/reblur" not in events.Tags()["scalars"]
    image = events.Images("samples/0")[-1]
    assert (image.width, image.height) == (8 * 32, 2 * 32)  # the input and 7 frames above the 7 true frames


def test_the_files_of_a_run_get_the_mode_the_umask_gives(photos, tmp_path):
    old = os.umask(0o027)
    try:
        cfg = tiny(photos, tmp_path / "run", val_every=1)
        train(cfg, log=lambda *_: None)
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert {"stage1.safetensors", "best.safetensors", "validation.safetensors", "checkpoint.pt",
            "config.json"} <= set(modes)
    assert set(modes.values()) == {oct(0o640)}, modes
