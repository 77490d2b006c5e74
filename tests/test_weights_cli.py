"""`blur2clip weights list|download|verify|path|import` and `--weights NAME` downloading with a bar, run
in-process (cli.main) against a manifest whose files a real local HTTP server hands out."""

from __future__ import annotations

import json
import re
import sys

import pytest
from conftest import tiny_model
from httpserver import FileServer
from test_cli import photo

from blur2clip import cli, download, weights
from blur2clip.cli import ExitCode

FILE = "blur2clip-tiny.safetensors"
PATH = f"/files/{FILE}"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A manifest with 'default' (an alias of 'tiny'), 'tiny' (downloadable from a local server) and
    'local' (embedded beside the manifest); an empty cache; no other BLUR2CLIP_* settings."""
    src = weights.save(tiny_model(seed=1), tmp_path / "src" / FILE)
    shipped = tmp_path / "shipped"
    local = weights.save(tiny_model(seed=2), shipped / "blur2clip-local.safetensors")
    with FileServer({PATH: src.read_bytes()}) as server:
        manifest = {
            "default": {"alias": "tiny"},
            "tiny": weights.manifest_entry(src, "tiny", urls=[server.url(PATH)]),
            "local": weights.manifest_entry(local, "local", stage=3),
        }
        (shipped / "manifest.json").write_text(json.dumps(manifest))
        for var in ("BLUR2CLIP_OFFLINE", "BLUR2CLIP_WEIGHTS_URL", "BLUR2CLIP_WEIGHTS", "FORCE_COLOR",
                    "TTY_COMPATIBLE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("BLUR2CLIP_MANIFEST", str(shipped / "manifest.json"))
        monkeypatch.setenv("BLUR2CLIP_HOME", str(tmp_path / "home"))
        monkeypatch.setattr(download, "TIMEOUT", 2.0)
        monkeypatch.setattr(download, "BACKOFF", 0.01)
        cache = tmp_path / "home" / "weights"
        yield type("Env", (), dict(server=server, src=src, size=src.stat().st_size, local=local, cache=cache,
                                   target=cache / FILE))


def run(capsys, *args) -> tuple[int, str, str]:
    """cli.main(args) -> (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("blur2clip: ")]


def test_list_lines_for_scripts_and_a_table_for_people(env, capsys, monkeypatch):
    code, out, err = run(capsys, "weights", "list")
    assert code == ExitCode.OK and err == ""
    local = env.local.stat().st_size
    assert out.splitlines() == [
        f"default\t3\t{env.size}\tnot present\t-",
        f"tiny\t3\t{env.size}\tnot present\t-",
        f"local\t3\t{local}\tembedded\t{env.local}",
    ]
    assert run(capsys, "weights", "download", "tiny", "-q")[0] == ExitCode.OK
    assert run(capsys, "weights", "list")[1].splitlines()[1] == f"tiny\t3\t{env.size}\tcached\t{env.target}"

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # a terminal: the table
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run(capsys, "weights", "list")
    rows = [line.split() for line in re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines()]  # without colours
    assert code == ExitCode.OK and rows[0] == ["name", "stage", "size", "status", "path"]
    assert ["default", "(=", "tiny)", "3", f"{env.size / 1000:.1f}", "kB", "cached", str(env.target)] in rows
    assert ["local", "3", f"{local / 1000:.1f}", "kB", "embedded", str(env.local)] in rows
    assert rows[-1] == ["cache:", str(env.cache)]


def test_download_prints_paths_and_shows_size_and_speed(env, capsys, monkeypatch):
    monkeypatch.setenv("BLUR2CLIP_WEIGHTS_URL", env.server.url("/mirror"))
    env.server.files[f"/mirror/{FILE}"] = env.src.read_bytes()
    code, out, err = run(capsys, "weights", "download", "tiny", "local")
    assert code == ExitCode.OK, err
    assert out.splitlines() == [str(env.target), str(env.local)]
    assert env.target.read_bytes() == env.src.read_bytes()
    assert [r.path for r in env.server.requests] == [f"/mirror/{FILE}"]  # the mirror first
    bar, summary = err.splitlines()  # the finished bar stays as a line in a log
    assert bar.startswith("tiny ") and f"{env.size / 1000:.1f}/{env.size / 1000:.1f} kB" in bar and "/s" in bar
    assert summary == "1 downloaded, 1 already present"

    code, out, err = run(capsys, "weights", "download", "--all")  # nothing left to fetch
    assert (code, out.splitlines()) == (ExitCode.OK, [str(env.target), str(env.local)])
    assert err == "0 downloaded, 2 already present\n" and len(env.server.requests) == 1


def test_download_errors(env, capsys):
    code, out, err = run(capsys, "weights", "download", "nope")
    assert (code, out) == (ExitCode.WEIGHTS, "")
    assert error_lines(err) == [f"blur2clip: error: nope: not a weights name in {env.cache.parent.parent}"
                                f"/shipped/manifest.json or {env.cache}/imported.json"]
    del env.server.files[PATH]
    code, out, err = run(capsys, "weights", "download", "tiny", "local")  # one failed, one is there: 1
    assert (code, out) == (ExitCode.FAILED, f"{env.local}\n")
    assert error_lines(err) == [f"blur2clip: error: {env.server.url(PATH)}: HTTP 404 Not Found"]
    for args in (["weights", "download"], ["weights", "download", "tiny", "--all"]):
        code, out, err = run(capsys, *args)
        assert code == ExitCode.USAGE and "give one or more names, or --all" in err


def test_offline_names_the_files_and_the_folder_and_never_connects(env, capsys, monkeypatch):
    monkeypatch.setenv("BLUR2CLIP_OFFLINE", "1")
    code, out, err = run(capsys, "weights", "download", "--all")
    assert (code, out) == (ExitCode.FAILED, f"{env.local}\n")  # the embedded file needs no network
    assert error_lines(err) == [
        f"blur2clip: error: tiny: offline (BLUR2CLIP_OFFLINE=1): place {FILE} in {env.cache}"]
    assert run(capsys, "weights", "download", "default")[0] == ExitCode.WEIGHTS
    assert env.server.requests == []


def test_verify_rehashes_and_exits_1_on_a_bad_file(env, capsys):
    code, out, err = run(capsys, "weights", "verify")
    assert (code, out, err) == (ExitCode.OK, f"local\t{env.local}\tok\n", "1 file verified: all ok\n")
    run(capsys, "weights", "download", "tiny", "-q")
    data = bytearray(env.target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    env.target.write_bytes(bytes(data))
    code, out, err = run(capsys, "weights", "verify")
    assert code == ExitCode.FAILED
    lines = out.splitlines()
    assert lines[0].startswith(f"tiny\t{env.target}\tsha256 mismatch (expected ")
    assert lines[1:] == [f"local\t{env.local}\tok"]
    assert error_lines(err) == [f"blur2clip: error: {env.target}: {lines[0].split(chr(9))[2]}"]
    assert err.splitlines()[-1] == "2 files verified: 1 bad"


def test_path_is_the_cache_folder(env, capsys):
    assert run(capsys, "weights", "path") == (ExitCode.OK, f"{env.cache}\n", "")


def test_a_home_that_is_a_file_is_named_and_the_shipped_weights_still_work(env, capsys, tmp_path, monkeypatch):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("BLUR2CLIP_HOME", str(home))
    line = f"blur2clip: error: BLUR2CLIP_HOME={home}: not a folder; point it at a folder (or unset it)"
    for args in (["weights", "path"], ["weights", "import", env.local, "--name", "mine"],
                 ["weights", "download", "tiny"]):
        code, out, err = run(capsys, *args)
        assert (code, out, error_lines(err)) == (ExitCode.WEIGHTS, "", [line]), args
    assert home.read_text() == "not a folder"
    code, out, err = run(capsys, "weights", "download", "local")  # the shipped file needs no cache
    assert (code, out) == (0, f"{env.local}\n"), err


def test_import_gives_a_trained_file_a_name_that_weights_accepts(env, capsys, tmp_path, monkeypatch):
    trained = weights.save(tiny_model(seed=4), tmp_path / "run" / "stage3.safetensors")
    monkeypatch.setenv("FORCE_COLOR", "1")  # stderr "is a terminal": a spinner runs while the name prints
    code, out, err = run(capsys, "weights", "import", trained, "--name", "mine")
    assert (code, out) == (ExitCode.OK, "mine\n"), err  # stdout stays stdout under the spinner
    assert f"imported {trained} as mine (stage 3): blur2clip PHOTO --weights mine" in err
    monkeypatch.delenv("FORCE_COLOR")
    digest = weights.sha256(trained)
    assert run(capsys, "weights", "import", trained)[1] == f"stage3-{digest[:8]}\n"  # default name
    listed = run(capsys, "weights", "list")[1].splitlines()
    path = env.cache / "imported" / f"{digest[:16]}.safetensors"
    assert listed[-2:] == [f"{name}\t3\t{trained.stat().st_size}\tcached\t{path}"
                           for name in ("mine", f"stage3-{digest[:8]}")]

    code, out, err = run(capsys, "weights", "import", tmp_path / "nowhere.safetensors")
    assert (code, out) == (ExitCode.WEIGHTS, "")
    assert error_lines(err) == [f"blur2clip: error: {tmp_path / 'nowhere.safetensors'}: weights file not found"]
    code, _, err = run(capsys, "weights", "import", trained, "--name", "tiny")
    assert code == ExitCode.WEIGHTS and "already the name of shipped weights" in err


def test_weights_name_downloads_with_a_bar_then_makes_the_clip(env, capsys, tmp_path, monkeypatch):
    src, out_gif = photo(tmp_path / "a.png"), tmp_path / "a.gif"
    monkeypatch.setenv("FORCE_COLOR", "1")  # the spinner pauses for the bar, and resumes
    code, out, err = run(capsys, src, "-o", out_gif, "--weights", "default", "--no-pingpong")
    assert (code, out) == (ExitCode.OK, f"{out_gif}\n"), err
    assert "weights default" in err and f"{env.size / 1000:.1f}/{env.size / 1000:.1f} kB" in err
    assert env.target.is_file() and len(env.server.requests) == 1
    monkeypatch.delenv("FORCE_COLOR")
    code, out, err = run(capsys, src, "-o", out_gif, "--weights", "default", "--overwrite")  # cached: no bar
    assert code == ExitCode.OK and len(err.splitlines()) == 1 and len(env.server.requests) == 1
    monkeypatch.setenv("BLUR2CLIP_OFFLINE", "1")
    code, out, err = run(capsys, src, "-o", tmp_path / "b.gif", "--weights", "stage9")
    assert code == ExitCode.WEIGHTS
    assert error_lines(err) == [
        "blur2clip: error: stage9: weights file or name not found (names: default, tiny, local)"]
