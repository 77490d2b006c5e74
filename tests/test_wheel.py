"""The shipped default weights are part of the installed package: a wheel built from the repository and
installed outside the source tree makes a clip offline, with an empty cache.

The wheel is built from a copy of the repository's files (tracked, and untracked ones git does not ignore),
so the build leaves nothing in the source tree and a stale build/ folder there cannot leak into the wheel.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from test_cli import env, photo

from blur2clip import weights

SHIPPED = "blur2clip-w16-stage3.safetensors"  # what 'default' stands for


def source_copy(dest: Path) -> Path:
    """The repository's files (as git sees them, or all but builds and environments) copied to dest."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "out"))
        return dest
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a deleted file that is still tracked is not
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def build_wheel(src: Path, out: Path) -> Path:
    """pip wheel: with this environment's setuptools when it has one (no index needed), else pip's usual
    isolated build, which fetches setuptools; skipped only when that cannot work here."""
    local = importlib.util.find_spec("setuptools") is not None
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    proc = subprocess.run(cmd + ["--no-build-isolation"] * local, capture_output=True, text=True, cwd=out.parent)
    if proc.returncode != 0 and not local:
        pytest.skip(f"cannot build a wheel here (no setuptools to build with): {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    (wheel,) = out.glob("blur2clip-*.whl")
    return wheel


def test_the_installed_wheel_makes_a_clip_offline_with_its_own_weights(tmp_path):
    src = source_copy(tmp_path / "src")
    manifest = json.loads((src / "weights" / "manifest.json").read_text())
    shipped = {entry["file"] for entry in manifest.values() if "file" in entry}
    shipped |= {entry["onnx"]["file"] for entry in manifest.values() if "onnx" in entry}  # onnxruntime's
    assert SHIPPED in shipped and all((src / "weights" / name).is_file() for name in shipped)

    wheel = build_wheel(src, tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"blur2clip/_weights/{name}" for name in shipped | {"manifest.json"}} <= set(names), names

    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                           str(site), str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    work, home = tmp_path / "work", tmp_path / "home"  # outside the source tree; an empty cache
    photo(work / "photo.png")
    home.mkdir()
    code = ("import sys, blur2clip; from blur2clip import weights; from blur2clip.cli import main; "
            "print(blur2clip.__file__); print(weights.resolve('default')); sys.exit(main(sys.argv[1:]))")
    child_env = {**env(), "PYTHONPATH": str(site), "BLUR2CLIP_OFFLINE": "1", "BLUR2CLIP_HOME": str(home)}
    args = ["photo.png", "--max-size", "64", "--tile", "0"]
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=work, env=child_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    package, default, clip = proc.stdout.splitlines()
    assert Path(package).is_relative_to(site), package  # the installed copy, not the repository
    assert Path(default) == site / "blur2clip" / "_weights" / SHIPPED
    assert clip == "photo.mp4" and (work / "photo.mp4").stat().st_size > 0
    assert "on cpu (fp32, onnxruntime)" in proc.stderr  # the installed ONNX file, run without torch
    assert list(home.iterdir()) == []  # nothing downloaded, nothing cached
    installed = site / "blur2clip" / "_weights"
    for entry in manifest.values():  # the installed files are the manifest's, byte for byte
        if "file" in entry:
            assert weights.mismatch(installed / entry["file"], entry["sha256"], entry["size"]) is None
        if "onnx" in entry:
            onnx = entry["onnx"]
            assert weights.mismatch(installed / onnx["file"], onnx["sha256"], onnx["size"]) is None
