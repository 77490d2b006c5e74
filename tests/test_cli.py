"""The command line, run as a user runs it (subprocesses of `python -m blur2clip` and the `blur2clip`
script): help without torch, exit codes, one-line errors, the clip end to end, and `blur2clip train`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

import blur2clip
from blur2clip import CLIP_FRAMES, cli, cli_train, device
from blur2clip.cli import ExitCode
from conftest import error_line, write_photo as photo




def env() -> dict[str, str]:
    """The caller's environment without BLUR2CLIP_* settings, on one thread (tests run beside other work)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("BLUR2CLIP_")}
    e.update(OMP_NUM_THREADS="1", BLUR2CLIP_THREADS="1", PYTHONWARNINGS="ignore")
    return e


def run(*args, cwd=None, python_flags=(), timeout=300, extra_env=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *python_flags, "-m", "blur2clip", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**env(), **(extra_env or {})},
                          timeout=timeout)


# ---------------------------------------------------------------------------------------- help, version


def imported_modules(stderr: str) -> set[str]:
    """Top-level names of the modules listed by python -X importtime."""
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines()
            if line.startswith("import time:")}


def test_the_subcommand_names_read_from_the_registry_are_the_groups():
    assert cli.subcommand_names() == list(typer.main.get_group(cli.commands).commands)


def test_help_shows_the_photo_usage_and_lists_the_subcommands_without_torch():
    proc = run("--help", python_flags=("-X", "importtime"))
    assert proc.returncode == 0, proc.stderr
    assert "Usage: blur2clip [OPTIONS]" in proc.stdout and "PHOTO" in proc.stdout
    assert "--output" in proc.stdout and "--no-pingpong" in proc.stdout
    for name in cli.subcommand_names():
        assert f"  {name} " in proc.stdout
    assert "..." not in proc.stdout.split("Commands")[1].split("Exit codes")[0]  # summaries are whole
    assert "Exit codes" in proc.stdout and "130" in proc.stdout
    modules = imported_modules(proc.stderr)
    assert "typer" in modules  # importtime did list the imports
    assert "torch" not in modules and "numpy" not in modules


def test_version_prints_the_version_without_torch():
    proc = run("--version", python_flags=("-X", "importtime"))
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"blur2clip {blur2clip.__version__}"
    assert "torch" not in imported_modules(proc.stderr)


def test_the_installed_script_runs():
    script = Path(sys.executable).with_name("blur2clip")
    if not script.is_file():
        pytest.skip("the blur2clip script is not installed beside this python")
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, env=env())
    assert proc.returncode == 0 and proc.stdout.startswith("blur2clip ")


def test_train_help():
    proc = run("train", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: blur2clip train" in proc.stdout and "--resume" in proc.stdout


@pytest.mark.parametrize("command, flag", [((), "--overwrite"), (("batch",), "--recursive"), (("train",), "--resume"),
                                           (("weights", "list"), "--help")])
def test_flags_show_no_value_placeholder_in_help(command, flag):
    proc = run(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert flag in proc.stdout
    assert "<bool>" not in proc.stdout  # a flag takes no value: Typer's default would show one
    usage = proc.stdout.strip().splitlines()[0]
    assert "{" not in usage  # a required argument reads as its name (Typer would write {PHOTO})


def test_importing_the_package_loads_no_torch():
    code = ("import sys, blur2clip; assert 'torch' not in sys.modules; "
            "assert callable(blur2clip.extract_frames) and 'torch' not in sys.modules; "
            "import blur2clip.train as t; assert t.TrainConfig is blur2clip.TrainConfig")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize("args, sub", [
    (["train", "--data", "d"], True),
    (["-q", "train"], True),
    (["photo.jpg", "-o", "train"], False),
    (["-o", "train", "photo.jpg"], False),  # "train" is the value of -o
    (["--output=x.mp4", "train"], True),
    (["--", "train"], False),  # a photo named train
    (["--help"], False),
    ([], False),
])
def test_dispatch(args, sub):
    import typer

    assert cli._is_subcommand(args, typer.main.get_command(cli.photo_app)) is sub


def test_main_returns_the_exit_code(capsys):
    assert cli.main(["--version"]) == 0
    assert cli.main(["--no-such-option", "x.jpg"]) == ExitCode.USAGE
    capsys.readouterr()


def test_the_readme_lists_every_exit_code_with_its_meaning():
    from conftest import ROOT

    text = (ROOT / "README.md").read_text().split("### Exit codes", 1)[1].split("\n\n")[1]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", text, re.M))
    plain = {code: meaning.replace("`", "").replace("\\|", "|") for code, meaning in rows.items()}
    assert plain == {str(c.value): c.meaning for c in ExitCode}


def test_train_option_defaults_match_the_training_config():
    import typer

    from blur2clip.model import ModelConfig
    from blur2clip.train import TrainConfig

    params = {p.name: p.default for p in typer.main.get_command(cli.commands).commands["train"].params}
    cfg, model = TrainConfig(data="", out=""), ModelConfig()
    for name in ("stage", "batch", "crop", "lr", "warmup", "weight_decay", "w_middle", "w_pairs", "w_reblur",
                 "order", "ckpt_every", "val_every", "val_count", "val_size", "log_every", "seed", "workers", "threads",
                 "init", "resume"):
        assert params[name] == getattr(cfg, name), name
    assert cli_train._steps(params["steps"]) == cfg.steps
    for name in ("width", "middle_blocks", "frames"):
        assert params[name] == getattr(model, name), name
    assert cli_train._ints(params["enc_blocks"]) == model.enc_blocks
    assert cli_train._ints(params["dec_blocks"]) == model.dec_blocks


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("args", [
    ["--frobnicate", "x.jpg"],
    ["x.jpg", "--fps", "0"],
    ["x.jpg", "--fps", "1001"],  # the most the writers take is 1000
    ["x.jpg", "--fps", "nan"],
    ["x.jpg", "--loops", "1001"],
    ["x.jpg", "--threads", "99999999999"],
    ["train", "--data", "photos", "--out", "run", "--seed", "-1"],
    ["train", "--data", "photos", "--out", "run", "--lr", "nan"],
    ["train", "--data", "photos", "--out", "run", "--crop", "99999"],
    ["train", "--data", "photos", "--out", "run", "--frames", "4"],
    ["x.jpg", "--format", "avi"],
    ["x.jpg", "--device", "tpu"],
    ["x.jpg", "--device", "cuda:x"],
    ["x.jpg", "--quality", "best"],
    ["x.jpg", "--crf", "52"],
    ["x.jpg", "-o", "y.mp4", "--format", "gif"],  # the suffix and --format disagree
    ["x.jpg", "y.jpg", "-o", "clip.mp4"],  # several photos: OUT is a folder
    ["x.jpg", "y.jpg", "--still", "s.jpg"],
    ["x.jpg", "--tile", "8"],
    ["train", "--data", "photos"],  # no --out
    ["train", "--data", "photos", "--out", "run", "--steps", "1,2"],
])
def test_usage_errors_exit_2(args, tmp_path):
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_output_suffix_is_a_usage_error_with_the_usage(tmp_path):
    photo(tmp_path / "a.png")  # names relative to the folder: the error's box wraps a long path anywhere
    proc = run("a.png", "-o", "clip.mov", cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.startswith("Usage: blur2clip") and "clip.mov" in proc.stderr and ".mp4" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "clip.mov").exists()


def test_a_folder_with_a_clip_format_takes_one_photo_as_it_takes_several(tmp_path, tiny_weights):
    # `shots/*.jpg -o clips/ --format gif` is the same command whether the shell found one photo or two
    for name in ("a.png", "b.png"):
        photo(tmp_path / "shots" / name)
    (tmp_path / "made").mkdir()
    common = ("--format", "gif", "--weights", tiny_weights, "-q")
    one = run("shots/a.png", "-o", "clips/", *common, cwd=tmp_path)
    two = run("shots/a.png", "shots/b.png", "-o", "clips2/", *common, cwd=tmp_path)
    into = run("shots/a.png", "-o", "made", *common, cwd=tmp_path)  # an existing folder, no slash
    assert (one.returncode, two.returncode, into.returncode) == (0, 0, 0), one.stderr + two.stderr + into.stderr
    assert (one.stdout, two.stdout, into.stdout) == ("clips/a.gif\n", "clips2/a.gif\nclips2/b.gif\n", "made/a.gif\n")
    frames = run("shots/a.png", "-o", "frames/", "--weights", tiny_weights, "-q", cwd=tmp_path)
    assert frames.returncode == 0 and frames.stdout == "frames\n"  # without a clip format: a folder of frames
    assert (tmp_path / "frames" / "frame_0001.png").is_file()


def test_no_argument_prints_the_usage_what_is_missing_and_a_hint():
    proc = run()
    assert proc.returncode == ExitCode.USAGE and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Usage: blur2clip") and "PHOTO" in lines[0]
    assert lines[1] == "blur2clip: error: missing PHOTO" and "--help" in lines[2]


def test_output_to_stdout_is_refused_in_one_line(tmp_path):
    proc = run(photo(tmp_path / "a.png"), "-o", "-", cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE and proc.stdout == ""
    assert "stdout" in error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_a_numbered_gpu_is_accepted(tmp_path, tiny_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    proc = run(photo(tmp_path / "a.png"), "--weights", tiny_weights, "--device", "cuda:1")
    assert proc.returncode == ExitCode.DEVICE  # taken by the command line, refused by the machine
    assert "cuda:1" in error_line(proc)


def test_the_pixel_limit_from_the_environment_names_the_option_and_the_variable(tmp_path, tiny_weights):
    proc = run(photo(tmp_path / "a.png"), "--weights", tiny_weights, extra_env={"BLUR2CLIP_MAX_PIXELS": "100"})
    assert proc.returncode == ExitCode.INPUT
    line = error_line(proc)
    assert "a.png" in line and "--max-pixels" in line and "BLUR2CLIP_MAX_PIXELS" in line
    assert not (tmp_path / "a.mp4").exists()


@pytest.mark.parametrize("flags, precision, warned", [
    ("fpu sse2 avx2", "bf16", True), ("fpu avx512f avx512_bf16", "bf16", False), ("amx_bf16", "bf16", False),
    ("fpu avx2", "fp16", True), ("avx512_fp16", "fp16", False), ("fpu avx2", "fp32", False),
])
def test_reduced_precision_on_a_cpu_without_it_is_warned(tmp_path, monkeypatch, flags, precision, warned):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    monkeypatch.setattr(device, "_CPUINFO", str(cpuinfo))
    note = device.emulated("cpu", precision)
    assert (note is not None) is warned
    if warned:
        assert precision in note and "\n" not in note and "fp32" in note
    assert device.emulated("cuda", precision) is None


def test_a_missing_photo(tmp_path, tiny_weights):
    proc = run("nowhere.jpg", "--weights", tiny_weights, cwd=tmp_path)
    assert proc.returncode == ExitCode.INPUT
    assert "nowhere.jpg" in error_line(proc)
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


def test_a_text_file_named_jpg(tmp_path, tiny_weights):
    (tmp_path / "notes.jpg").write_text("not a photo\n")
    proc = run("notes.jpg", "--weights", tiny_weights, cwd=tmp_path)
    assert proc.returncode == ExitCode.INPUT
    assert "notes.jpg" in error_line(proc)
    assert proc.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.jpg"]


def test_refuses_to_overwrite_without_overwrite(tmp_path, tiny_weights):
    photo(tmp_path / "a.png")
    (tmp_path / "a.mp4").write_bytes(b"keep me")
    proc = run("a.png", "--weights", tiny_weights, cwd=tmp_path)
    assert proc.returncode == ExitCode.OUTPUT
    line = error_line(proc)
    assert "a.mp4" in line and "--overwrite" in line
    assert (tmp_path / "a.mp4").read_bytes() == b"keep me"


@pytest.mark.parametrize("kind", ["missing", "garbage"])
def test_bad_weights(tmp_path, kind):
    weights = tmp_path / "w.safetensors"
    if kind == "garbage":
        weights.write_bytes(b"\x00" * 64)
    proc = run(photo(tmp_path / "a.png"), "--weights", weights)
    assert proc.returncode == ExitCode.WEIGHTS
    assert "w.safetensors" in error_line(proc)
    assert not (tmp_path / "a.mp4").exists()


# ------------------------------------------------------------------------------------------ end to end


def test_mp4_beside_the_photo_with_a_still(tmp_path, tiny_weights):
    src = photo(tmp_path / "shots" / "a.png")
    proc = run(src, "--weights", tiny_weights, "--still", tmp_path / "still.jpg")
    assert proc.returncode == 0, proc.stderr
    clip = tmp_path / "shots" / "a.mp4"
    assert proc.stdout.splitlines() == [str(clip), str(tmp_path / "still.jpg")]
    assert clip.stat().st_size > 0
    import imageio_ffmpeg

    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(clip))
    assert frames == (2 * CLIP_FRAMES - 2) * 3  # 24 instants ping-ponged (46), 3 loops by default
    with Image.open(tmp_path / "still.jpg") as im:
        assert im.size == (64, 48)
    summary = proc.stderr.strip().splitlines()
    assert len(summary) == 1 and "64x48" in summary[0] and "46 frames x3 at 24 fps, motion " in summary[0]


def test_gif_quiet_no_pingpong(tmp_path, tiny_weights):
    src = photo(tmp_path / "a.png")
    out = tmp_path / "out" / "clip.gif"
    out.parent.mkdir()
    proc = run(src, "-o", out, "--weights", tiny_weights, "--no-pingpong", "--max-size", "32", "-q",
               "--frames", "7", "--fps", "10")  # the network's own frames, as they are
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out) and proc.stderr == ""
    with Image.open(out) as im:
        assert im.n_frames == 7 and im.size == (32, 24) and im.info["duration"] == 100


def test_the_summary_says_the_rate_a_clip_plays_at_and_what_crf_0_costs(tmp_path, tiny_weights):
    src = photo(tmp_path / "a.png")
    fast = run(src, "-o", tmp_path / "a.gif", "--weights", tiny_weights, "--fps", "200")
    assert fast.returncode == 0, fast.stderr
    assert fast.stderr.splitlines()[1:] == [  # the summary, then why it is not the rate asked for
        "gif clips play at most 50 fps (browsers slow faster frames to 10 fps), so this one plays at 50; an mp4 "
        "plays at 200"]
    assert " frames at 50 fps, motion " in fast.stderr.splitlines()[0]
    lossless = run(src, "-o", tmp_path / "a.mp4", "--weights", tiny_weights, "--crf", "0")
    assert lossless.returncode == 0, lossless.stderr
    assert lossless.stderr.splitlines()[1:] == [
        "--crf 0 is lossless H.264 (the High 4:4:4 Predictive profile), which many players, browsers and phones "
        "do not play; --crf 1 or more plays everywhere"]
    quiet = run(src, "-o", tmp_path / "b.gif", "--weights", tiny_weights, "--fps", "200", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_frames_folder_then_overwrite(tmp_path, tiny_weights):
    src = photo(tmp_path / "a.png")
    proc = run(src, "--format", "frames", "--weights", tiny_weights, "-q")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "a_frames"
    # each instant once: ping-pong is how a clip plays, not more frames
    assert proc.stdout.strip() == str(folder) and len(list(folder.glob("*.png"))) == CLIP_FRAMES
    assert run(src, "--format", "frames", "--weights", tiny_weights).returncode == ExitCode.OUTPUT
    proc = run(src, "--format", "frames", "--weights", tiny_weights, "--no-pingpong", "--overwrite", "-q")
    assert proc.returncode == 0, proc.stderr
    assert len(list(folder.glob("*.png"))) == CLIP_FRAMES


def test_an_unavailable_device(tmp_path, tiny_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    proc = run(photo(tmp_path / "a.png"), "--weights", tiny_weights, "--device", "cuda")
    assert proc.returncode == ExitCode.DEVICE
    assert "cuda" in error_line(proc).lower()


def test_several_photos_each_beside_itself_or_in_a_folder(tmp_path, tiny_weights):
    a, b = photo(tmp_path / "x" / "a.png"), photo(tmp_path / "y" / "b.jpg", seed=1)
    proc = run(a, b, a, "--weights", tiny_weights, "--frames", "3", "-q")  # a named twice: done once
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(tmp_path / "x" / "a.mp4"), str(tmp_path / "y" / "b.mp4")]
    same = photo(tmp_path / "y" / "a.png", seed=2)  # another a.png: both keep their folder's name apart
    proc = run(a, same, "-o", f"{tmp_path}/clips/", "--format", "gif", "--weights", tiny_weights,
               "--frames", "3", "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == ["a.png-1.gif", "a.png.gif"]
    missing = run(a, tmp_path / "gone.jpg", "-o", f"{tmp_path}/more/", "--weights", tiny_weights, "--frames", "3")
    assert missing.returncode == ExitCode.FAILED  # one done, one failed
    assert missing.stdout.splitlines() == [str(tmp_path / "more" / "a.mp4")]
    assert "gone.jpg" in missing.stderr and "Traceback" not in missing.stderr


def test_quality_crf_and_strip_metadata(tmp_path, tiny_weights):
    from test_capture import camera_photo, mp4_tags

    src = camera_photo(tmp_path / "cam.jpg", h=96, w=128)
    sizes = {}
    for crf in (12, 40):
        out = tmp_path / f"crf{crf}.mp4"
        proc = run(src, "-o", out, "--crf", crf, "--weights", tiny_weights, "--frames", "3", "-q")
        assert proc.returncode == 0, proc.stderr
        sizes[crf] = out.stat().st_size
    assert sizes[12] > sizes[40]
    assert mp4_tags(tmp_path / "crf12.mp4")["com.apple.quicktime.make"] == "Canon"
    proc = run(src, "-o", tmp_path / "bare.webp", "--quality", "low", "--strip-metadata", "--still",
               tmp_path / "bare.jpg", "--weights", tiny_weights, "--frames", "3", "-q")
    assert proc.returncode == 0, proc.stderr
    for path in (tmp_path / "bare.webp", tmp_path / "bare.jpg"):
        with Image.open(path) as im:
            assert not im.getexif() and "xmp" not in im.info


def test_a_gif_is_capped_at_1080_px_unless_max_size_is_given(tmp_path, tiny_weights):
    src = photo(tmp_path / "wide.png", h=20, w=1300)
    proc = run(src, "-o", tmp_path / "c.gif", "--weights", tiny_weights, "--frames", "3", "--tile", "0")
    assert proc.returncode == 0, proc.stderr
    assert sum("1080 px" in line and "--max-size" in line for line in proc.stderr.splitlines()) == 1
    with Image.open(tmp_path / "c.gif") as im:
        assert im.size == (1080, 17)
    proc = run(src, "-o", tmp_path / "d.gif", "--weights", tiny_weights, "--frames", "3", "--tile", "0",
               "--max-size", "1300")
    assert proc.returncode == 0 and "1080 px" not in proc.stderr
    with Image.open(tmp_path / "d.gif") as im:
        assert im.size == (1300, 20)


def test_an_mp4_scaled_to_fit_h264_level_5_1_says_so(tmp_path, tiny_weights):
    """At 1000 fps a 640x480 frame is more macroblocks a second than level 5.1 allows: the clip is
    shrunk and stderr says so once; with --max-size it is not (the level is then the user's choice)."""
    src = photo(tmp_path / "wide.png", h=480, w=640)
    proc = run(src, "-o", tmp_path / "c.mp4", "--weights", tiny_weights, "--frames", "3", "--fps", "1000")
    assert proc.returncode == 0, proc.stderr
    assert sum("level 5.1" in line and "--max-size" in line for line in proc.stderr.splitlines()) == 1
    proc = run(src, "-o", tmp_path / "d.mp4", "--weights", tiny_weights, "--frames", "3", "--fps", "1000",
               "--max-size", "640")
    assert proc.returncode == 0 and "level 5.1" not in proc.stderr


# ------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """16 small photos, enough that the one-in-ten validation split holds some back."""
    from blur2clip.data import list_photos, split_photos

    d = tmp_path_factory.mktemp("photos")
    for i in range(16):
        photo(d / f"p{i:02d}.png", h=40, w=40, seed=i)
    train_set, val_set = split_photos(list_photos(d))
    assert train_set and val_set
    return d


TINY = ["--batch", "2", "--crop", "32", "--workers", "0", "--threads", "1", "--val-count", "2", "--val-size", "32",
        "--width", "4", "--enc-blocks", "1,1", "--middle-blocks", "1", "--dec-blocks", "1,1", "--warmup", "1",
        "--log-every", "1", "--val-every", "100"]


def test_train_a_stage_then_resume_into_the_next(photo_folder, tmp_path):
    out = tmp_path / "run"
    proc = run("train", "--data", photo_folder, "--out", out, "--stage", "1", "--steps", "2", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(out / "stage1.safetensors")]
    assert "stage 1 step 2/2" in proc.stderr
    from blur2clip.weights import read_metadata

    assert read_metadata(out / "stage1.safetensors")["config"]["width"] == 4

    proc = run("train", "--data", photo_folder, "--out", out, "--stage", "all", "--steps", "2", "--resume", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(out / f"stage{s}.safetensors") for s in (1, 2, 3)]
    assert "resuming stage 2" in proc.stderr


def test_train_stopped_by_sigterm_writes_a_checkpoint(photo_folder, tmp_path):
    """Stopped in stage 2: its checkpoint is written, and stage 1, finished before, is still a result."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "blur2clip", "train", "--data", str(photo_folder), "--out", str(out),
           "--stage", "all", "--steps", "2,100000,2", "--ckpt-every", "100000", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        lines = []
        deadline = time.time() + 240
        for line in proc.stderr:  # wait until it trains
            lines.append(line)
            if "stage 2 step 2/" in line or time.time() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        results, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.TERMINATED, "".join(lines) + err
    assert "stopped at stage 2" in err and "resume with --resume" in err and "Traceback" not in err
    assert (out / "checkpoint.pt").is_file() and not (out / "stage2.safetensors").exists()
    assert results.splitlines() == [str(out / "stage1.safetensors")]


def test_train_on_a_missing_folder(tmp_path):
    proc = run("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "run", *TINY)
    assert proc.returncode == ExitCode.INPUT
    assert "nowhere" in error_line(proc)


def test_a_real_blurred_photo_with_the_shipped_weights(shared_blurred, tmp_path):
    """End to end on a real GoPro photo that no one here drew: the default weights, an MP4 read back, and
    frames that move (seven copies of one image would fail)."""
    import imageio_ffmpeg

    photo_path = shared_blurred / "gopro_blurred" / "deepdeblur_blur_gamma_seq1_f8.png"
    if not photo_path.is_file():
        pytest.skip(f"{photo_path} is not present")
    out = tmp_path / "clip.mp4"
    proc = run(photo_path, "-o", out, "--max-size", "320", "--loops", "1", "--still", tmp_path / "sharp.png")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(out), str(tmp_path / "sharp.png")]
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]
    assert meta["size"] == (320, 180) and len(frames) == 2 * CLIP_FRAMES - 2  # played forward and back
    # The frames follow a path: the further apart in time, the more they differ. Where nothing moved the
    # photo is kept (extract.keep_still), so the mean difference comes from the moving parts alone; copies
    # of one image encoded together differ by less than 0.05.
    apart = [np.abs(frames[0].astype(float) - frames[k]).mean() for k in (3, 10, CLIP_FRAMES - 1)]
    assert 0.05 < apart[0] < apart[1] < apart[2] and apart[2] > 0.2, apart


def test_a_big_photo_shows_tiles_and_time_left_on_a_terminal_only(tmp_path, tiny_weights):
    import pty

    src = photo(tmp_path / "a.png", 300, 400)
    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "blur2clip", str(src), "--weights", str(tiny_weights), "--tile", "64", "-o",
           str(tmp_path / "a.gif")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=env())
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=300)
    os.close(master)
    assert proc.returncode == 0
    assert b"tiles, " in seen and b" left" in seen  # the spinner's text: tiles done and time left
    plain = run(src, "--weights", tiny_weights, "--tile", "64", "-o", tmp_path / "b.gif")  # not a terminal
    assert plain.returncode == 0 and "tiles, " not in plain.stderr
