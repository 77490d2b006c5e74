"""Downloads that must end: a size limit, a stall deadline over all attempts, a full disk, a killed
process. Against the real loopback server of httpserver.py; limits and deadlines are made small here."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT, isolate_weights, tiny_model
from httpserver import FileServer

from blur2clip import cli, download, weights
from blur2clip.cli import ExitCode

FILE = "blur2clip-tiny.safetensors"
PATH = f"/files/{FILE}"
URL_PATH = "/other/model.safetensors"  # a URL that no manifest lists: its size is not known


@pytest.fixture
def env(tmp_path, monkeypatch):
    """'tiny' in a manifest (size and sha256 known) and at a URL no manifest lists; an empty cache;
    short timeouts, backoff and stall deadline."""
    src = weights.save(tiny_model(seed=1), tmp_path / "src" / FILE)
    data = src.read_bytes()
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    with FileServer({PATH: data, URL_PATH: data}) as server:
        manifest = {"tiny": weights.manifest_entry(src, "tiny", urls=[server.url(PATH)])}
        (shipped / "manifest.json").write_text(json.dumps(manifest))
        isolate_weights(monkeypatch, shipped / "manifest.json", tmp_path / "home")
        monkeypatch.setattr(download, "STALL", 1.0)
        cache = tmp_path / "home" / "weights"
        yield type("Env", (), dict(server=server, data=data, shipped=shipped, cache=cache, target=cache / FILE,
                                   url=server.url(URL_PATH)))


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


# ------------------------------------------------------------------------------------------ the size limit


def test_an_endless_stream_of_unknown_size_stops_at_the_limit(env, monkeypatch):
    monkeypatch.setattr(download, "MAX_BYTES", 256 << 10)
    env.server.mode, env.server.send_length = "endless", False
    with pytest.raises(weights.WeightsError) as err:
        weights.resolve(env.url)
    assert str(err.value) == (f"{env.url}: the download grew larger than the limit for a download "
                              f"(262144 bytes); the partial file was deleted")
    assert files(env.cache) == [] and len(env.server.requests) == 1  # not retried
    assert env.server.sent < env.server.endless_cap


def test_a_manifest_file_is_never_more_than_its_size(env):
    n = len(env.data)
    env.server.length = 10**12  # announced: refused before the body is read
    with pytest.raises(weights.WeightsError) as err:
        weights.download("tiny")
    assert str(err.value) == (f"{env.server.url(PATH)}: the server announces {10**12} bytes, larger than the "
                              f"size the manifest gives ({n} bytes); the partial file was deleted")
    env.server.length, env.server.mode, env.server.send_length = None, "endless", False  # sent: stopped
    with pytest.raises(weights.WeightsError, match=rf"the download grew larger than the size the manifest gives "
                                                   rf"\({n} bytes\); the partial file was deleted$"):
        weights.download("tiny")
    assert files(env.cache) == [] and len(env.server.requests) == 2
    env.server.mode, env.server.send_length = "normal", True
    assert weights.download("tiny").read_bytes() == env.data


# ------------------------------------------------------------------------------------ the stall deadline


@pytest.mark.parametrize("timeout", [0.4, 30.0])
def test_a_silent_server_fails_within_the_stall_deadline_over_all_attempts(env, monkeypatch, timeout):
    monkeypatch.setattr(download, "TIMEOUT", timeout)  # per read; 30: the deadline cuts the read short
    monkeypatch.setattr(download, "RETRIES", 50)
    env.server.mode = "silent"
    start = time.monotonic()
    with pytest.raises(weights.WeightsError, match=rf"^{env.server.url(PATH)}: timed out; less than 1024 bytes "
                                                   rf"arrived in 1 s \(after \d+ attempts?\)$"):
        weights.download("tiny")
    # The deadline is the behaviour under test: not given up before it (1 s), and ended by it, not by 50
    # retries of 0.4 s or by a read of 30 s (the bound only tells those apart, with room for a slow machine).
    assert 0.9 < time.monotonic() - start < 10
    assert len(env.server.requests) < 50
    assert files(env.cache) == []


def test_a_trickle_is_a_stall(env):
    env.server.mode, env.server.delay = "trickle", 0.3  # 100 bytes every 0.3 s: under 1024 bytes a second
    start = time.monotonic()
    with pytest.raises(weights.WeightsError, match=r": timed out; less than 1024 bytes arrived in 1 s"):
        weights.download("tiny")
    # Ended by the stall deadline (1 s), not when the file has trickled in (about 100 s at this rate).
    assert time.monotonic() - start < 10


def test_a_stalled_download_keeps_its_part_only_when_it_can_be_resumed(env):
    n = len(env.data)
    env.server.mode = "stall"  # a quarter of the file, then nothing
    with pytest.raises(weights.WeightsError, match="timed out; less than 1024 bytes arrived in 1 s"):
        weights.download("tiny")
    part = env.cache / (FILE + ".part")
    assert files(env.cache) == [part.name] and part.stat().st_size == n // 4  # the size is known: kept
    env.server.release.set()
    env.server.mode = "normal"
    assert weights.download("tiny").read_bytes() == env.data
    assert env.server.requests[-1].range == f"bytes={n // 4}-" and files(env.cache) == [FILE]

    env.server.release.clear()
    env.server.mode, env.server.send_length = "stall", False  # a URL of unknown size: nothing to resume
    with pytest.raises(weights.WeightsError, match=f"^{env.url}: timed out; less than 1024 bytes"):
        weights.resolve(env.url)
    assert files(env.cache) == [FILE]


# ------------------------------------------------------------------------------------------- a full disk


@contextmanager
def tmpfs(folder: Path, size: str = "256k"):
    """`folder` as a small tmpfs, for the length of the block; skips the test where mounting fails."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(params=["tmpfs", "write"])
def small_disk(request, tmp_path, monkeypatch):
    """A folder that holds at most 256 KiB: a real tmpfs (as root, where mounting works), or files opened
    by blur2clip.download whose writes fail with ENOSPC past 256 KiB."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if request.param == "tmpfs":
        with tmpfs(disk):
            yield disk
    else:
        real_open = open

        class Full:
            def __init__(self, f):
                self.f, self.n = f, 0

            def write(self, b):
                self.n += len(b)
                if self.n > 256 << 10:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return self.f.write(b)

            def __getattr__(self, name):
                return getattr(self.f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

        monkeypatch.setattr(download, "open", lambda *a, **k: Full(real_open(*a, **k)), raising=False)
        yield disk


def test_a_full_disk_names_the_file_and_leaves_nothing(env, small_disk, monkeypatch, capsys):
    data = os.urandom(1 << 20)
    env.server.files["/files/big.bin"] = data
    manifest = {"big": {"file": "big.bin", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                        "urls": [env.server.url("/files/big.bin")]}}
    (env.shipped / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("BLUR2CLIP_HOME", str(small_disk))
    part = small_disk / "weights" / "big.bin.part"
    code = cli.main(["weights", "download", "big", "-q"])
    out, err = capsys.readouterr()
    assert (code, out) == (ExitCode.WEIGHTS, "")
    assert err == (f"blur2clip: error: {part}: cannot write the download (No space left on device); "
                   "the partial file was deleted\n")
    assert files(small_disk) == [] and len(env.server.requests) == 1  # neither retried nor resumable


def test_an_import_onto_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    trained = weights.save(tiny_model(seed=3), tmp_path / "run" / "stage3.safetensors")
    with tmpfs(tmp_path / "disk") as disk:
        monkeypatch.setenv("BLUR2CLIP_HOME", str(disk))
        (disk / "filler").write_bytes(bytes((256 << 10) - trained.stat().st_size // 2))
        code = cli.main(["weights", "import", str(trained), "--name", "mine", "-q"])
        out, err = capsys.readouterr()
        dest = disk / "weights" / "imported" / f"{weights.sha256(trained)[:16]}.safetensors"
        assert (code, out) == (ExitCode.WEIGHTS, "")
        assert err == f"blur2clip: error: {dest}: cannot write it (No space left on device); nothing was changed\n"
        assert files(disk) == ["filler"]
        (disk / "filler").unlink()
        assert cli.main(["weights", "import", str(trained), "--name", "mine", "-q"]) == ExitCode.OK
        assert files(disk) == ["weights/imported.json", f"weights/imported/{dest.name}"]


# ----------------------------------------------------------------------------------- a killed download


def test_a_download_killed_mid_way_leaves_a_lock_that_the_next_one_takes(env):
    env.server.mode, env.server.delay = "slow", 0.4  # 8 pieces over 3.2 s
    code = "from blur2clip import weights; weights.download('tiny')"
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stderr=subprocess.PIPE)
    part, lock = env.cache / (FILE + ".part"), env.cache / (FILE + ".lock")
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 0):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    child.stderr.close()
    assert lock.read_text() == f"{child.pid}\n"  # the dead process's lock file
    got = part.stat().st_size
    assert 0 < got < len(env.data)
    env.server.mode = "normal"
    assert weights.download("tiny").read_bytes() == env.data  # a lock still held would block it for good
    assert env.server.requests[-1].range == f"bytes={got}-"  # it resumed the killed one's bytes
    assert files(env.cache) == [FILE]  # the lock and the part are gone
