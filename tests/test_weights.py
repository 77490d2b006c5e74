"""Weights: names, manifest, cache, import, and downloads against a real, misbehaving HTTP server."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, isolate_weights, tiny_model
from httpserver import FileServer

from blur2clip import download, weights

FILE = "blur2clip-tiny.safetensors"
PATH = f"/files/{FILE}"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    return weights.save(tiny_model(seed=1), tmp_path_factory.mktemp("src") / FILE)


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


@pytest.fixture
def env(tmp_path, monkeypatch, server, tiny_file):
    """A manifest with 'tiny' (downloadable from `server`), 'local' (embedded beside the manifest) and
    'default' (an alias of 'tiny'); an empty cache; short timeouts and backoff."""
    data = tiny_file.read_bytes()
    server.files[PATH] = data
    shipped = tmp_path / "shipped"
    local = weights.save(tiny_model(seed=2), shipped / "blur2clip-local.safetensors")
    manifest = {
        "default": {"alias": "tiny"},
        "tiny": weights.manifest_entry(tiny_file, "tiny", urls=[server.url(PATH)], data="noise"),
        "local": weights.manifest_entry(local, "local", stage=3),
    }
    (shipped / "manifest.json").write_text(json.dumps(manifest))
    isolate_weights(monkeypatch, shipped / "manifest.json", tmp_path / "home")
    return type("Env", (), dict(data=data, server=server, shipped=shipped, local=local,
                                cache=tmp_path / "home" / "weights", target=tmp_path / "home" / "weights" / FILE))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.suffix in (".part", ".lock", ".tmp"))


def statuses(server) -> list[int]:
    return [r.status for r in server.requests]


# ------------------------------------------------------------------------------------- the manifest


def test_manifest_entry_is_computed_from_the_file(tiny_file):
    entry = weights.manifest_entry(tiny_file, "tiny", urls=["https://x/y"], license="MIT", data="noise")
    assert entry["file"] == FILE and entry["size"] == tiny_file.stat().st_size
    assert entry["sha256"] == weights.sha256(tiny_file) and len(entry["sha256"]) == 64
    assert entry["config"] == tiny_model().config.to_dict() and entry["stage"] == 3
    assert (entry["urls"], entry["license"], entry["data"]) == (["https://x/y"], "MIT", "noise")
    with pytest.raises(weights.WeightsError, match="stage 1 given"):
        weights.manifest_entry(tiny_file, "tiny", stage=1)


def test_shipped_manifest_matches_the_shipped_files(monkeypatch):
    """Every file the shipped manifest names is shipped beside it, with the size, sha256 and config the
    manifest gives, and its ONNX file with the size and sha256 given: a missing or changed file fails here."""
    monkeypatch.delenv("BLUR2CLIP_MANIFEST", raising=False)
    manifest = weights.read_manifest()
    assert manifest["default"] == {"alias": "stage3"}
    files = {name: entry for name, entry in manifest.items() if "alias" not in entry}
    assert files
    for name, entry in files.items():
        path = weights.shipped_dir() / entry["file"]
        assert path.is_file(), f"{name}: {path} is missing"
        assert weights.mismatch(path, entry["sha256"], entry["size"]) is None, name
        assert weights.read_metadata(path)["config"] == entry["config"], name
        onnx = weights.shipped_dir() / entry["onnx"]["file"]  # each one's graph for onnxruntime, beside it
        assert onnx == path.with_suffix(".onnx"), name
        assert weights.mismatch(onnx, entry["onnx"]["sha256"], entry["onnx"]["size"]) is None, name


def test_cache_dir_follows_blur2clip_home(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.setenv("BLUR2CLIP_HOME", str(tmp_path))
    assert weights.cache_dir() == tmp_path / "weights"
    monkeypatch.delenv("BLUR2CLIP_HOME")
    assert weights.cache_dir() == Path(platformdirs.user_cache_dir("blur2clip")) / "weights"


# ---------------------------------------------------------------------------- resolution and listing


def test_resolution_order_and_errors(env, tiny_file, tmp_path):
    assert weights.resolve(tiny_file) == tiny_file  # an existing path is that file
    assert weights.resolve("local") == env.local  # embedded beside the manifest: no network
    assert env.server.requests == []
    with pytest.raises(weights.WeightsError, match=r"nope: weights file or name not found \(names: default"):
        weights.resolve("nope")
    with pytest.raises(weights.WeightsError, match="missing.safetensors: weights file not found"):
        weights.resolve(tmp_path / "missing.safetensors")


def test_list_shows_embedded_cached_and_absent(env):
    listed = {w.name: w for w in weights.list_weights()}
    assert list(listed) == ["default", "tiny", "local"]
    assert (listed["local"].status, listed["local"].path) == (weights.EMBEDDED, env.local)
    assert (listed["tiny"].status, listed["tiny"].path) == (weights.ABSENT, None)
    assert listed["default"].alias == "tiny" and listed["default"].file == FILE
    assert listed["tiny"].size == len(env.data) and listed["tiny"].stage == 3
    weights.download("default")
    listed = {w.name: w for w in weights.list_weights()}
    assert (listed["tiny"].status, listed["tiny"].path) == (weights.CACHED, env.target)


def test_verify_rehashes_everything_present(env):
    weights.download("tiny")
    assert [(v.name, v.ok) for v in weights.verify()] == [("tiny", True), ("local", True)]
    flip(env.target)
    flip(env.local)
    results = {v.name: v for v in weights.verify()}
    assert not results["tiny"].ok and results["tiny"].reason.startswith("sha256 mismatch")
    assert not results["local"].ok
    with pytest.raises(weights.WeightsError, match=r"blur2clip-local.safetensors: sha256 mismatch.*reinstall"):
        weights.load_model("local")  # an embedded file that fails its check is refused, not deleted
    assert env.local.is_file()


def flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------------------- downloads


def test_download_verifies_caches_and_reports_progress(env):
    calls = []
    path = weights.download("tiny", progress=lambda done, total: calls.append((done, total)))
    assert path == env.target and path.read_bytes() == env.data
    assert calls[0] == (0, len(env.data)) and calls[-1] == (len(env.data), len(env.data))
    assert weights.resolve("default") == path and len(env.server.requests) == 1  # cached: no second request
    assert leftovers(env.cache) == []
    model = weights.load_model("tiny")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), tiny_model(seed=1)(x))
    assert next(weights.load_model("tiny", device="auto").parameters()).device.type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        from blur2clip.errors import DeviceError

        with pytest.raises(DeviceError, match="'cuda': CUDA is not available here"):  # was an AssertionError
            weights.load_model("tiny", device="cuda")


def test_cut_connection_resumes_with_range(env):
    env.server.mode = "cut"  # cut twice: at 1/2, then halfway through the rest
    path = weights.download("tiny")
    n = len(env.data)
    assert [(r.range, r.status) for r in env.server.requests] == [
        (None, 200), (f"bytes={n // 2}-", 206), (f"bytes={n // 2 + (n - n // 2) // 2}-", 206)]
    assert path.read_bytes() == env.data and leftovers(env.cache) == []


def test_server_ignoring_range_restarts_from_zero(env):
    env.server.mode = "ignore_range"
    env.cache.mkdir(parents=True)
    part = env.cache / (FILE + ".part")
    part.write_bytes(b"\x00" * (len(env.data) // 2))  # an earlier partial download (wrong bytes, too)
    path = weights.download("tiny")
    assert [(r.range, r.status) for r in env.server.requests] == [(f"bytes={len(env.data) // 2}-", 200)]
    assert path.read_bytes() == env.data and not part.exists()


def test_500_twice_then_success_is_retried(env):
    env.server.mode = "fail500"
    assert weights.download("tiny").read_bytes() == env.data
    assert statuses(env.server) == [500, 500, 200]


def test_corrupted_download_is_deleted_and_never_loaded(env, monkeypatch):
    import safetensors.torch

    loaded = []
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: loaded.append(a))
    env.server.mode = "corrupt"
    with pytest.raises(weights.WeightsError) as err:
        weights.load_model("tiny")
    message = str(err.value)
    assert message.startswith(env.server.url(PATH)) and "\n" not in message
    assert "sha256 mismatch (expected" in message and message.endswith("the file was deleted")
    assert loaded == [] and statuses(env.server) == [200]  # not retried: the bytes arrived, they are wrong
    assert list(env.cache.iterdir()) == []


def test_corrupted_cached_file_is_replaced(env):
    weights.download("tiny")
    flip(env.target)
    assert weights.resolve("tiny").read_bytes() == env.data
    assert statuses(env.server) == [200, 200]


def test_404_is_a_clear_error_without_retries(env):
    del env.server.files[PATH]
    with pytest.raises(weights.WeightsError, match=f"^{env.server.url(PATH)}: HTTP 404 Not Found$"):
        weights.download("tiny")
    assert statuses(env.server) == [404]


def test_stalled_server_times_out_after_retries(env, monkeypatch):
    monkeypatch.setattr(download, "TIMEOUT", 0.3)
    monkeypatch.setattr(download, "RETRIES", 1)
    env.server.mode = "stall"
    start = time.monotonic()
    with pytest.raises(weights.WeightsError, match=r": timed out \(after 2 attempts\)$"):
        weights.download("tiny")
    assert time.monotonic() - start < 20  # each attempt ended by the 0.3 s read timeout, not the default 30 s
    n = len(env.data)
    assert [r.range for r in env.server.requests] == [None, f"bytes={n // 4}-"]  # the retry resumed
    assert not env.target.exists()


def test_offline_never_touches_the_network(env, monkeypatch):
    monkeypatch.setenv("BLUR2CLIP_OFFLINE", "1")
    with pytest.raises(weights.WeightsError) as err:
        weights.load_model("default")
    assert str(err.value) == f"tiny: offline (BLUR2CLIP_OFFLINE=1): place {FILE} in {env.cache}"
    with pytest.raises(weights.WeightsError, match="offline"):
        weights.resolve(env.server.url("/other/model.safetensors"))
    assert env.server.requests == []
    env.cache.mkdir(parents=True)
    env.target.write_bytes(env.data)  # placed by hand
    assert weights.resolve("default") == env.target
    assert weights.resolve("local") == env.local  # embedded files need no network


def test_mirror_is_tried_first(env, monkeypatch):
    monkeypatch.setenv("BLUR2CLIP_WEIGHTS_URL", env.server.url("/mirror/"))
    env.server.files[f"/mirror/{FILE}"] = env.data
    weights.download("tiny")
    assert [r.path for r in env.server.requests] == [f"/mirror/{FILE}"]
    env.target.unlink()
    del env.server.files[f"/mirror/{FILE}"]
    weights.download("tiny")  # the mirror lacks it: on to the manifest's URL
    assert statuses(env.server) == [200, 404, 200]


def test_url_downloads_are_checked_and_cached(env):
    assert weights.resolve(env.server.url(PATH)) == env.target  # a manifest URL: that entry, by sha256
    env.server.files["/other/model.safetensors"] = env.data
    url = env.server.url("/other/model.safetensors")
    path = weights.resolve(url)
    assert path.parent == env.cache / "urls" and path.name.startswith("model-") and path.suffix == ".safetensors"
    assert weights.load_model(url) is not None and weights.resolve(url) == path
    assert len(env.server.requests) == 2  # once each
    env.server.files["/other/junk.safetensors"] = b"\x00" * 100
    with pytest.raises(weights.WeightsError, match=r"junk.safetensors: not a readable .* the file was deleted$"):
        weights.resolve(env.server.url("/other/junk.safetensors"))
    assert sorted(p.name for p in (env.cache / "urls").iterdir()) == [path.name]
    assert [v.ok for v in weights.verify() if v.path == path] == [True]


def test_two_processes_download_the_same_file_once(env):
    env.server.mode = "slow"  # ~0.6 s per download, so the two overlap
    code = "from blur2clip import weights; print(weights.download('tiny'))"
    child_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=child_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert {out.strip() for out, _ in outs} == {str(env.target)}
    assert env.target.read_bytes() == env.data
    assert sorted(p.name for p in env.cache.iterdir()) == [FILE]  # no .part, no .lock
    assert statuses(env.server) == [200]  # the second process waited, then found the verified file


def test_lock_is_exclusive_and_cleans_up(tmp_path):
    target, marker = tmp_path / "x.safetensors", tmp_path / "done"
    code = ("import sys, time; from pathlib import Path; from blur2clip.download import file_lock\n"
            "with file_lock(sys.argv[1]):\n"
            "    print('in', flush=True); time.sleep(0.3); Path(sys.argv[2]).touch()\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(target), str(marker)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline() == "in\n"
    with download.file_lock(target):
        assert marker.exists()  # only once the other process has let go
    child.communicate(timeout=10)
    marker.unlink()
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------------------- import


def test_import_registers_a_trained_file_by_hash(env, tmp_path):
    run = tmp_path / "run"
    trained = weights.save(tiny_model(seed=4), run / "stage3.safetensors", training={"steps": 1})
    info = weights.import_file(trained)
    digest = weights.sha256(trained)
    assert info.name == f"stage3-{digest[:8]}" and info.imported and info.status == weights.CACHED
    assert info.path == env.cache / "imported" / f"{digest[:16]}.safetensors" and info.sha256 == digest
    assert weights.resolve(info.name) == info.path and weights.load_model(info.name) is not None
    assert weights.import_file(trained, name="mine").path == info.path  # stored once
    assert [w.name for w in weights.list_weights() if w.imported] == [info.name, "mine"]
    assert all(v.ok for v in weights.verify())
    with pytest.raises(weights.WeightsError, match="tiny: already the name of shipped weights"):
        weights.import_file(trained, name="tiny")
    junk = run / "junk.safetensors"
    junk.write_bytes(b"junk")
    with pytest.raises(weights.WeightsError, match="junk.safetensors: not a readable"):
        weights.import_file(junk)
    flip(info.path, at=info.path.stat().st_size - 8)
    with pytest.raises(weights.WeightsError, match=r"imported weights 'mine': sha256 mismatch .*; import the file again$"):
        weights.load_model("mine")
    assert leftovers(env.cache) == []
