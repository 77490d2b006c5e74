"""Weights files with bad metadata or bad tensors: refused before the network is built, with exit code 5
and one line naming the file, whether given as a path, imported, or downloaded from a URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_model
from httpserver import FileServer
from safetensors.torch import save_file
from test_cli import env as cli_env
from test_cli import photo

from blur2clip import cli, weights
from blur2clip.cli import ExitCode
from blur2clip.model import ModelConfig

TINY = tiny_model().config.to_dict()
BAD_CONFIGS = {  # name -> (config as stored, the reason in the error)
    "array": ([1, 2, 3], "the model config is a JSON array, not an object"),
    "null": (None, "the model config is a JSON null, not an object"),
    "enc-string": ({**TINY, "enc_blocks": "1,1,2,4"}, "model config enc_blocks: '1,1,2,4' is not a list of integers"),
    "width-string": ({**TINY, "width": "abc"}, "model config width: 'abc' is not an integer"),
    "frames-negative": ({**TINY, "frames": -3}, "model config frames: -3 is out of range (1 to 255)"),
    "width-float": ({**TINY, "width": 1e9}, "model config width: 1000000000.0 is not an integer"),
    "width-huge": ({**TINY, "width": 10**9}, "model config width: 1000000000 is out of range (1 to 1024)"),
    "width-zero": ({**TINY, "width": 0}, "model config width: 0 is out of range (1 to 1024)"),
    "width-bool": ({**TINY, "width": True}, "model config width: True is not an integer"),
    "levels": ({**TINY, "dec_blocks": [1]}, "model config: 2 encoder levels but 1 decoder levels"),
    "blocks-negative": ({**TINY, "enc_blocks": [1, -1]}, "model config enc_blocks: [1, -1] is out of range"),
    "stage": ({**TINY, "stage": 9}, "model config stage: 9 is out of range (1 to 3)"),
    "channels": ({**TINY, "width": 1024, "enc_blocks": [1] * 6, "dec_blocks": [1] * 6},
                 "model config: width 1024 over 6 levels makes 65536 channels (at most 8192)"),
}


def tensors(model=None, dtype=None) -> dict[str, torch.Tensor]:
    sd = (model or tiny_model()).state_dict()
    return {k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in sd.items()}


def write(path: Path, config, data: dict | None = None, raw_config: str | None = None) -> Path:
    """A safetensors file with the tiny model's tensors (or `data`) and `config` as its metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = raw_config if raw_config is not None else json.dumps(config)
    save_file(tensors() if data is None else data, str(path), metadata={"format": "blur2clip", "config": text})
    return path


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    for var in ("BLUR2CLIP_OFFLINE", "BLUR2CLIP_WEIGHTS_URL", "BLUR2CLIP_WEIGHTS", "BLUR2CLIP_MANIFEST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BLUR2CLIP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# ---------------------------------------------------------------------------------- the config itself


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_is_a_value_error_with_the_reason(name):
    config, reason = BAD_CONFIGS[name]
    with pytest.raises(ValueError) as err:
        ModelConfig.from_dict(config)
    assert str(err.value).startswith(reason)


def test_good_configs_pass_and_unknown_keys_are_ignored():
    assert ModelConfig.from_dict({**TINY, "later": 1}) == ModelConfig(**TINY)
    assert ModelConfig.from_dict({}) == ModelConfig()
    assert ModelConfig.from_dict(ModelConfig(width=1024, enc_blocks=[1] * 3, dec_blocks=[2] * 3).to_dict())


# ------------------------------------------------------------------------------------ loading a file


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_in_a_file_is_refused_naming_the_file(tmp_path, name):
    config, reason = BAD_CONFIGS[name]
    path = write(tmp_path / f"{name}.safetensors", config)
    for call in (weights.check_file, weights.load_model, weights.read_metadata):
        with pytest.raises(weights.WeightsError) as err:
            call(path)
        assert str(err.value).startswith(f"{path}: {reason}") and "\n" not in str(err.value)


def test_metadata_that_is_not_json_is_refused(tmp_path):
    path = write(tmp_path / "text.safetensors", None, raw_config="{width: 16")
    with pytest.raises(weights.WeightsError, match=r"text.safetensors: metadata 'config' is not JSON \("):
        weights.load_model(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float64, torch.uint8, torch.bool])
def test_tensors_of_another_type_are_refused(tmp_path, dtype):
    path = write(tmp_path / "ints.safetensors", TINY, tensors(dtype=dtype))
    with pytest.raises(weights.WeightsError, match=r"ints.safetensors: tensor \S+ is [A-Z0-9]+; weights are F32, "
                                                   r"F16 or BF16$"):
        weights.load_model(path)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_and_bfloat16_tensors_load_as_float32(tmp_path, dtype):
    model = tiny_model(seed=7)
    loaded = weights.load_model(write(tmp_path / "half.safetensors", TINY, tensors(model, dtype)))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (loaded(x) - model(x)).abs().max() < 0.05


def test_wrong_shapes_missing_and_extra_tensors_are_refused(tmp_path):
    wider = tensors(tiny_model(width=6))
    with pytest.raises(weights.WeightsError, match=r"wide.safetensors: tensor \S+ has shape \[6, .*, the stored "
                                                   r"config needs \[4, "):
        weights.load_model(write(tmp_path / "wide.safetensors", TINY, wider))
    fewer = tensors()
    del fewer["intro.weight"]
    with pytest.raises(weights.WeightsError, match=r"tensors do not match the stored config: 1 missing "
                                                   r"\(e.g. intro.weight\)$"):
        weights.load_model(write(tmp_path / "fewer.safetensors", TINY, fewer))
    more = {**tensors(), "extra.weight": torch.zeros(2)}
    with pytest.raises(weights.WeightsError, match=r"1 unexpected \(e.g. extra.weight\)$"):
        weights.load_model(write(tmp_path / "more.safetensors", TINY, more))


def test_a_huge_config_with_small_tensors_allocates_nothing(tmp_path):
    """Within the ranges, but a network of 283 M parameters (1.1 GB): the tensors are compared with the
    config before the network is built, so the process stays small."""
    path = write(tmp_path / "big.safetensors", {**TINY, "width": 512, "enc_blocks": [1] * 3, "dec_blocks": [1] * 3})
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc/self/status (Linux) for the process's peak memory")
    code = ("import sys; from blur2clip import weights\n"  # VmHWM: the peak of this program, not its parent's
            "try:\n    weights.check_file(sys.argv[1])\nexcept weights.WeightsError as e:\n    print(e)\n"
            "peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]\n"
            "print(int(peak.split()[1]) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          env={**cli_env(), "PYTHONPATH": str(ROOT)})
    message, peak_mb = done.stdout.splitlines()
    assert message.startswith(f"{path}: tensors do not match the stored config: "), done.stderr
    assert int(peak_mb) < 700  # torch itself is about 250 MB; the network would be 1100 MB more


# ------------------------------------------------------------------------- the command line, a URL


@pytest.mark.parametrize("name", ["array", "null", "enc-string", "width-string", "frames-negative",
                                  "width-float", "width-zero", "text", "int64"])
def test_command_line_exits_5_with_one_line_naming_the_file(tmp_path, capsys, home, name):
    path = tmp_path / f"{name}.safetensors"
    if name == "text":
        write(path, None, raw_config="not json")
    elif name == "int64":
        write(path, TINY, tensors(dtype=torch.int64))
    else:
        write(path, BAD_CONFIGS[name][0])
    src, out = photo(tmp_path / "a.png"), tmp_path / "a.gif"
    for args in ([src, "-o", out, "--weights", path], ["weights", "import", path]):
        code, stdout, err = run(capsys, *args)
        assert (code, stdout) == (ExitCode.WEIGHTS, ""), err
        assert err.startswith(f"blur2clip: error: {path}: ") and err.count("\n") == 1, err
    assert not out.exists() and not (home / "weights" / "imported").exists()


def test_a_real_process_with_bad_weights_prints_one_line(tmp_path):
    path = write(tmp_path / "bad.safetensors", BAD_CONFIGS["width-float"][0])
    src = photo(tmp_path / "a.png")
    done = subprocess.run([sys.executable, "-m", "blur2clip", src, "--weights", path], capture_output=True,
                          text=True, timeout=120, env={**cli_env(), "BLUR2CLIP_HOME": str(tmp_path / "home")})
    assert done.returncode == ExitCode.WEIGHTS and done.stdout == ""
    assert done.stderr == f"blur2clip: error: {path}: model config width: 1000000000.0 is not an integer\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "bad.safetensors"]


@pytest.mark.parametrize("name", ["array", "width-float", "frames-negative", "int64"])
def test_a_bad_file_from_a_url_is_refused_and_nothing_stays_in_the_cache(tmp_path, capsys, home, name):
    path = tmp_path / "bad.safetensors"
    if name == "int64":
        write(path, TINY, tensors(dtype=torch.int64))
    else:
        write(path, BAD_CONFIGS[name][0])
    src = photo(tmp_path / "a.png")
    with FileServer({"/w/bad.safetensors": path.read_bytes()}) as server:
        url = server.url("/w/bad.safetensors")
        code, out, err = run(capsys, src, "-o", tmp_path / "a.gif", "--weights", url)
        assert (code, out) == (ExitCode.WEIGHTS, "")
        (line,) = [line for line in err.splitlines() if line.startswith("blur2clip")]  # below the bar
        assert line.startswith(f"blur2clip: error: {url}: ") and line.endswith("; the file was deleted")
        assert "Traceback" not in err
        assert [r.status for r in server.requests] == [200]
    assert [p.name for p in (home / "weights" / "urls").iterdir()] == []


# ----------------------------------------------------------------------------- manifests and URLs


@pytest.mark.parametrize("entry, problem", [
    ({"alias": ["x"]}, "alias is not a name"),
    ({"file": "a.safetensors", "onnx": "a.onnx"}, "onnx is not an entry with a plain file name"),
    ({"file": "a.safetensors", "onnx": {"file": "../a.onnx"}}, "onnx is not an entry with a plain file name"),
    ({"file": "a.safetensors", "urls": "http://127.0.0.1/a"}, "urls is not a list of URLs"),
    ({"file": "a.safetensors", "sha256": 5}, "sha256 is not text"),
    ({"file": "a.safetensors", "size": "big"}, "size is not a whole number"),
])
def test_a_manifest_entry_of_the_wrong_types_is_refused_naming_it(tmp_path, monkeypatch, home, entry, problem):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"mine": entry}))
    monkeypatch.setenv("BLUR2CLIP_MANIFEST", str(manifest))
    with pytest.raises(weights.WeightsError) as e:
        weights.resolve("mine")
    assert str(e.value) == f"{manifest}: entry 'mine': {problem}"


def test_a_url_that_cannot_be_parsed_is_one_line(tmp_path, capsys, home):
    src = photo(tmp_path / "a.jpg")
    code, out, err = run(capsys, src, "-o", tmp_path / "a.gif", "--weights", "http://[::1")
    assert code == ExitCode.WEIGHTS and out == ""
    assert err.strip() == "blur2clip: error: http://[::1: not a valid URL (Invalid IPv6 URL)"


def test_a_weights_name_the_system_cannot_look_up_is_one_line(tmp_path, capsys, home):
    src, name = photo(tmp_path / "a.jpg"), "w" * 300  # longer than a file name may be
    code, out, err = run(capsys, src, "-o", tmp_path / "a.gif", "--weights", name)
    assert (code, out) == (ExitCode.WEIGHTS, "")
    assert err == f"blur2clip: error: {name}: File name too long\n"
    assert not (tmp_path / "a.gif").exists()


@pytest.mark.parametrize("registry", [[1, 2], {"x": {"sha256": "0" * 64}},
                                      {"x": {"file": "../../victim.txt", "sha256": "0" * 64}},
                                      {"x": {"file": "/tmp/victim.txt", "sha256": "0" * 64}}])
def test_a_registry_of_imports_that_is_not_one_is_refused_and_nothing_outside_the_cache_is_touched(
        tmp_path, capsys, home, registry):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (home / "weights").mkdir(parents=True, exist_ok=True)
    (home / "weights" / "imported.json").write_text(json.dumps(registry).replace("/tmp/victim.txt", str(victim)))
    path = write(tmp_path / "w.safetensors", TINY)
    code, out, err = run(capsys, "weights", "import", path, "--name", "x")  # replacing x deleted its file
    assert (code, out) == (ExitCode.WEIGHTS, "")
    assert err == (f"blur2clip: error: {home / 'weights' / 'imported.json'}: not a registry of imported weights "
                   f"(name -> an entry whose file is in imported/); move it away to start it anew\n")
    assert victim.read_text() == "mine"
