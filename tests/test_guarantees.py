"""What README's "What is guaranteed" promises, run as a user runs it (subprocesses of `python -m blur2clip`
and of the `blur2clip` script, real files, real links, FIFOs and device nodes, real signals, a real
kill -9, another process holding a claim, a file-size limit standing in for a full disk)."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blur2clip import CLIP_FRAMES, clipwriter, outputs
from blur2clip.batch import DONE, EXISTS, FAILED, OTHER_RUN, SKIPPED
from blur2clip.cli import ExitCode
from conftest import error_line, write_photo as photo
from test_batch import held_command

ROOT = Path(__file__).resolve().parent.parent
PINGPONG = 2 * CLIP_FRAMES - 2  # frames in a default clip: forward, then back


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("BLUR2CLIP_")}
    e.update(OMP_NUM_THREADS="1", BLUR2CLIP_THREADS="1", PYTHONWARNINGS="ignore", PYTHONDONTWRITEBYTECODE="1")
    return e


def command(*args) -> list[str]:
    return [sys.executable, "-m", "blur2clip", *map(os.fspath, args)]


def run(*args, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, env=env(), timeout=timeout, **kw)


def json_results(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    """--json lines by the input's file name."""
    return {Path(r["input"]).name: r for r in map(json.loads, proc.stdout.splitlines())}


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def hidden_files(folder: Path) -> list[str]:
    """What a run may leave behind: temporaries and claims."""
    return sorted(p.name for p in folder.rglob(".*"))


def webp_frames(path: Path) -> int:
    with Image.open(path) as im:
        return im.n_frames


def wait_for(condition, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail("timed out waiting")
        time.sleep(0.01)


# ------------------------------------------------------------------------------ photos are never written


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_batch_into_its_own_folder_never_writes_onto_a_photo(tmp_path, tiny_weights, overwrite):
    """The case that once overwrote a photo: a.jpg's clip would be a.webp, which is a photo of the run,
    read only after photos that sort between them (with --overwrite it was replaced; without, a.jpg was
    "skipped: output already exists")."""
    shots = tmp_path / "in"
    for i, name in enumerate(["a.jpg", "a.k1.png", "a.k2.png", "a.k3.png", "a.webp"]):
        photo(shots / name, seed=i)
    before = digests(shots)
    proc = run("batch", shots, "-o", shots, "--format", "webp", "--weights", tiny_weights, "--json",
               *(["--overwrite"] if overwrite else []))
    assert proc.returncode == ExitCode.OK, proc.stderr
    results = json_results(proc)
    assert {n: r["status"] for n, r in results.items()} == dict.fromkeys(before, DONE)
    assert {n: Path(r["output"]).name for n, r in results.items()} == {
        "a.jpg": "a.jpg.webp", "a.webp": "a_clip.webp", "a.k1.png": "a.k1.webp", "a.k2.png": "a.k2.webp",
        "a.k3.png": "a.k3.webp"}
    assert {n: h for n, h in digests(shots).items() if n in before} == before
    assert all(webp_frames(Path(r["output"])) == PINGPONG for r in results.values())
    assert hidden_files(shots) == []


def test_outputs_reached_through_links_fifos_and_devices_are_left_alone(tmp_path, tiny_weights):
    shots, out = tmp_path / "in", tmp_path / "out"
    for i, name in enumerate(["a.jpg", "b.png", "c.png", "d.png"]):
        photo(shots / name, seed=i)
    before = digests(shots)
    out.mkdir()
    os.link(shots / "a.jpg", out / "a.webp")  # a hard link to a photo
    os.symlink(shots / "b.png", out / "b.webp")  # a symbolic link to a photo
    os.mkfifo(out / "c.webp")
    try:
        os.mknod(out / "d.webp", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null
        device = True
    except PermissionError:
        device = False
    proc = run("batch", shots, "-o", out, "--format", "webp", "--overwrite", "--weights", tiny_weights, "--json")
    assert proc.returncode == ExitCode.FAILED, proc.stderr
    results = json_results(proc)
    assert (results["a.jpg"]["status"], Path(results["a.jpg"]["output"]).name) == (DONE, "a.jpg.webp")
    assert (results["b.png"]["status"], Path(results["b.png"]["output"]).name) == (DONE, "b.png.webp")
    assert results["c.png"]["status"] == FAILED and "not a regular file" in results["c.png"]["error"]
    assert os.path.samefile(out / "a.webp", shots / "a.jpg") and (out / "b.webp").is_symlink()
    assert stat.S_ISFIFO(os.lstat(out / "c.webp").st_mode)
    if device:
        assert results["d.png"]["status"] == FAILED and "not a regular file" in results["d.png"]["error"]
        assert stat.S_ISCHR(os.lstat(out / "d.webp").st_mode)
    assert digests(shots) == before
    assert hidden_files(tmp_path) == []


@pytest.mark.parametrize("case", ["photo", "hard link", "symlink", "fifo", "device", "through a file"])
def test_single_photo_outputs_that_may_not_be_written_exit_4(tmp_path, tiny_weights, case):
    src = photo(tmp_path / "a.png")
    before = src.read_bytes()
    target = {"photo": src, "through a file": tmp_path / "afile" / "clip.mp4"}.get(case, tmp_path / "t.mp4")
    expect = {"photo": "is the input photo", "hard link": "is the input photo", "symlink": "is the input photo",
              "fifo": "not a regular file", "device": "not a regular file",
              "through a file": "afile is not a folder"}
    if case == "hard link":
        os.link(src, target)
    elif case == "symlink":
        os.symlink(src.name, target)
    elif case == "fifo":
        os.mkfifo(target)
    elif case == "device":
        try:
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    elif case == "through a file":
        (tmp_path / "afile").write_text("a file, not a folder")
    kind = os.lstat(target).st_mode if case != "through a file" else None
    proc = run(src, "-o", target, "--overwrite", "--weights", tiny_weights, "--format", "mp4")
    assert proc.returncode == ExitCode.OUTPUT, proc.stderr
    assert expect[case] in error_line(proc) and proc.stdout == ""
    assert src.read_bytes() == before
    if kind is not None:
        assert os.lstat(target).st_mode == kind
    assert hidden_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["symlink", "hard link"])
def test_a_link_where_the_claim_file_goes_is_never_written_through(tmp_path, tiny_weights, kind):
    """`.NAME.claim` beside the output, made a link to a photo (of this run or another): the run stops with
    one line naming it; the photo keeps its bytes and the link stays."""
    shots = tmp_path / "shots"
    a, b = photo(shots / "a.jpg", seed=1), photo(shots / "b.jpg", seed=2)
    link = shots / ".b.gif.claim"
    if kind == "symlink":
        os.symlink("a.jpg", link)
    else:
        os.link(a, link)
    before = digests(shots)
    proc = run(b, "-o", shots / "b.gif", "--weights", tiny_weights)
    assert proc.returncode == ExitCode.OUTPUT, proc.stderr
    assert error_line(proc) == (f"blur2clip: error: {shots / 'b.gif'}: .b.gif.claim beside it is a link or another "
                                f"name of a file, not a claim of blur2clip; not touched (remove it)")
    proc = run("batch", shots, "-o", shots, "--format", "gif", "--weights", tiny_weights, "-q", "--json")
    assert proc.returncode == ExitCode.FAILED and json_results(proc)["b.jpg"]["status"] == FAILED
    assert json_results(proc)["a.jpg"]["status"] == DONE
    assert {k: v for k, v in digests(shots).items() if k != "a.gif"} == before
    assert os.path.islink(link) if kind == "symlink" else os.path.samefile(link, a)
    assert not (shots / "b.gif").exists()


def test_a_claim_gives_back_only_its_own_file(tmp_path):
    """A file that took the claim's name while the claim was held (another output written there) stays."""
    out = tmp_path / "s.png"
    claim = outputs.Claim(out).acquire()
    (tmp_path / "other").write_bytes(b"a finished clip")
    os.replace(tmp_path / "other", claim.path)
    claim.release()
    assert claim.path.read_bytes() == b"a finished clip"
    with outputs.Claim(tmp_path / "t.png") as held:  # its own file it removes
        assert held.path.is_file()
    assert not held.path.exists()


@pytest.mark.parametrize("args, path, reason", [
    ((".",), ".", "is a folder, not a photo"),
    (("/",), "/", "is a folder, not a photo"),
    (("a.png", "-o", "."), ".", "is not a file name"),
    (("a.png", "-o", "clip.gif", "--still", "still.bmp"), "still.bmp", "unknown still format '.bmp'"),
    (("a.png", "-o", "fr/", "--still", "fr/still.png"), "fr/still.png", "is inside the folder of frames"),
])
def test_names_that_cannot_be_outputs_get_one_line(tmp_path, tiny_weights, args, path, reason):
    photo(tmp_path / "a.png")
    proc = run(*args, "--weights", tiny_weights, "--overwrite", cwd=tmp_path)
    assert proc.returncode in (ExitCode.INPUT, ExitCode.OUTPUT), proc.stderr
    assert error_line(proc).startswith(f"blur2clip: error: {path}: {reason}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # refused before any work


def test_two_photos_reaching_one_output_by_another_path_get_their_own(tmp_path, tiny_weights):
    (tmp_path / "d" / "s").mkdir(parents=True)
    jpg, png = photo(tmp_path / "d" / "p.jpg", seed=1), photo(tmp_path / "d" / "p.png", seed=2)
    proc = run(jpg, tmp_path / "d" / "s" / ".." / "p.png", "--format", "gif", "--weights", tiny_weights)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["p.jpg", "p.jpg.gif", "p.png", "p.png.gif", "s"]
    assert jpg.is_file() and png.is_file()


# ---------------------------------------------------------------------------------------- concurrent runs


def test_two_batches_started_together_do_every_photo_once(tmp_path, tiny_weights):
    shots = tmp_path / "shots"
    photos = [photo(shots / f"p{i:02d}.png", 240, 320, seed=i) for i in range(10)]
    args = ("batch", shots, "--weights", tiny_weights, "--json", "--tile", "0", "--loops", "1")
    procs = [subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env()) for _ in range(2)]
    try:
        ran = [(p, *p.communicate(timeout=600)) for p in procs]
    finally:
        for p in procs:
            p.kill()
    done = []
    for proc, out, err in ran:
        assert proc.returncode == ExitCode.OK, err
        results = [json.loads(line) for line in out.splitlines()]
        assert len(results) == len(photos)
        assert all(r["status"] == DONE or (r["status"] == SKIPPED and r["error"] in (EXISTS, OTHER_RUN))
                   for r in results), results
        done += [r["input"] for r in results if r["status"] == DONE]
    assert sorted(done) == sorted(map(str, photos))  # every photo, each by one run only
    assert sorted(p.name for p in (shots / "clips").iterdir()) == [f"p{i:02d}.mp4" for i in range(10)]


HOLD = """
import sys, time
from blur2clip.outputs import Claim
claim = Claim(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_runs_claim_is_respected_and_a_killed_runs_claim_taken_over(tmp_path, tiny_weights):
    """Another process holds the claim on p1's clip and has its temporary beside it: a batch leaves both
    alone and reports p1 as taken (exit 0); the single-photo command refuses (exit 4). Once that process
    is killed with SIGKILL, its claim is free: the next run makes p1's clip and removes what was left."""
    shots = tmp_path / "shots"
    for i in range(3):
        photo(shots / f"p{i}.png", seed=i)
    clips = shots / "clips"
    clips.mkdir()
    temp = clips / ".p1.mp4.part0123abcd"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, clips / "p1.mp4"], stdout=subprocess.PIPE,
                              text=True, env=env(), cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        temp.write_bytes(b"the other run's clip in progress")
        args = ("batch", shots, "--weights", tiny_weights, "--json", "--loops", "1")
        proc = run(*args)
        assert proc.returncode == ExitCode.OK, proc.stderr
        results = json_results(proc)
        assert (results["p1.png"]["status"], results["p1.png"]["error"]) == (SKIPPED, OTHER_RUN)
        assert results["p0.png"]["status"] == results["p2.png"]["status"] == DONE
        assert temp.read_bytes() == b"the other run's clip in progress" and not (clips / "p1.mp4").exists()
        assert "1 photo" in proc.stderr and "taken by another blur2clip run" in proc.stderr

        single = run(shots / "p1.png", "-o", clips / "p1.mp4", "--weights", tiny_weights)
        assert single.returncode == ExitCode.OUTPUT
        assert f"being made by another blur2clip run (pid {holder.pid})" in error_line(single)
        assert temp.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert (clips / ".p1.mp4.claim").exists()  # what the killed process left

    proc = run(*args)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert json_results(proc)["p1.png"]["status"] == DONE
    assert sorted(p.name for p in clips.iterdir()) == ["p0.mp4", "p1.mp4", "p2.mp4"]


def test_single_photo_killed_then_run_again(tmp_path, tiny_weights):
    src = photo(tmp_path / "a.png", 480, 640)
    proc = subprocess.Popen(command(src, "--weights", tiny_weights, "--loops", "400"), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(tmp_path.glob(".a.mp4.part*")) or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "a.mp4").exists() and hidden_files(tmp_path)  # the temporary and the claim
    again = run(src, "--weights", tiny_weights, "--loops", "1", "-q")
    assert again.returncode == ExitCode.OK, again.stderr
    wait_for(lambda: hidden_files(tmp_path) == [], timeout=60)  # the old ffmpeg may still be finishing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "a.png"]


# ----------------------------------------------------------------------------------- stopping and failing


def stopped_by_sigterm(args, ready, cmd=None, after=None) -> tuple[subprocess.Popen, str, str]:
    """blur2clip ARGS (or the command `cmd`), sent SIGTERM as soon as ready() holds, then after() called:
    (the process, its stdout, its stderr)."""
    proc = subprocess.Popen(cmd or command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())
    try:
        wait_for(lambda: ready() or proc.poll() is not None)
        assert proc.poll() is None, "it ended before it was stopped"
        proc.send_signal(signal.SIGTERM)
        if after is not None:
            after()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc, stdout, stderr


def test_sigterm_stops_a_single_photo_like_ctrl_c(tmp_path, tiny_weights):
    src = photo(tmp_path / "a.png", 480, 640)
    proc, stdout, stderr = stopped_by_sigterm((src, "--weights", tiny_weights, "--loops", "400"),
                                              lambda: any(tmp_path.glob(".a.mp4.part*")))
    assert proc.returncode == ExitCode.TERMINATED == 143
    assert stderr.strip() == "blur2clip: terminated" and stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary, claim or clip


def test_sigterm_stops_a_batch_like_ctrl_c(tmp_path, tiny_weights):
    """Stopped once its first clip is made (the second photo is held back until then): that clip stays,
    the summary says to run again, nothing hidden is left."""
    shots = tmp_path / "shots"
    for i in range(8):
        photo(shots / f"p{i}.png", 360, 480, seed=i)
    out, release = shots / "clips", tmp_path / "release"
    args = (shots, "--weights", tiny_weights, "--tile", "0", "--loops", "1")
    proc, stdout, stderr = stopped_by_sigterm(args, lambda: any(out.glob("*.mp4")), cmd=held_command(release, *args),
                                              after=release.touch)
    assert proc.returncode == ExitCode.TERMINATED, stderr
    assert "Traceback" not in stderr and "run again to resume" in stderr
    clips = sorted(out.glob("*.mp4"))
    assert len(clips) == 1 and stdout.split() == [str(c) for c in clips]
    assert hidden_files(shots) == []


def test_a_failed_write_removes_the_folders_it_made(tmp_path, tiny_weights):
    wide = photo(tmp_path / "in" / "wide.png", 2, 40000)  # H.264 refuses this size at full size: ffmpeg fails
    proc = run(wide, "-o", tmp_path / "new" / "deeper" / "clip.mp4", "--weights", tiny_weights, "--max-size", "40000")
    assert proc.returncode == ExitCode.OUTPUT
    assert "ffmpeg failed" in error_line(proc)
    proc = run("batch", tmp_path / "in", "-o", tmp_path / "new" / "clips", "--weights", tiny_weights, "-q",
               "--max-size", "40000")
    assert proc.returncode == ExitCode.FAILED and "ffmpeg failed" in error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["wide.png"]


def test_a_failed_still_after_the_clip_prints_the_clip(tmp_path, tiny_weights):
    src = photo(tmp_path / "long.png", 2, 66000)  # frames are fine as PNG; JPEG stops at 65500 pixels
    frames, still = tmp_path / "frames", tmp_path / "middle.jpg"
    proc = run(src, "-o", f"{frames}/", "--still", still, "--weights", tiny_weights, "--no-pingpong")
    assert proc.returncode == ExitCode.FAILED
    assert proc.stdout.splitlines() == [str(frames)]
    line = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(line) == 1 and "middle.jpg" in line[0] and "too large for JPEG" in line[0]
    assert len(list(frames.glob("frame_*.png"))) == CLIP_FRAMES and not still.exists()
    assert hidden_files(tmp_path) == []


def test_a_full_disk_leaves_no_finished_looking_output(tmp_path, tiny_weights):
    """A limit on file size makes every write past it fail (EFBIG), as a full disk does (ENOSPC)."""

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    shots = tmp_path / "shots"
    for i in range(2):
        photo(shots / f"p{i}.png", 240, 320, seed=i)
    before = digests(shots)
    for fmt in ("mp4", "gif", "webp", "frames"):
        proc = run("batch", shots, "--format", fmt, "--weights", tiny_weights, "--json", "--tile", "0",
                   preexec_fn=small_files)
        assert proc.returncode == ExitCode.FAILED, (fmt, proc.stderr)
        results = json_results(proc)
        assert [r["status"] for r in results.values()] == [FAILED, FAILED], fmt
        assert all(Path(r["output"]).name in r["error"] for r in results.values())
        assert "Traceback" not in proc.stderr
    proc = run(shots / "p0.png", "-o", tmp_path / "one.mp4", "--weights", tiny_weights, preexec_fn=small_files)
    assert proc.returncode == ExitCode.OUTPUT and "one.mp4" in error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shots"]  # no clip
    assert sorted(p.name for p in shots.iterdir()) == sorted(before)  # no clips folder either
    assert digests(shots) == before and hidden_files(tmp_path) == []


# ------------------------------------------------------------------------------------------------ names


def test_long_names_get_temporaries_within_255_bytes(tmp_path, tiny_weights):
    name = "x" * 246 + ".png"  # 250 bytes: `.NAME.partXXXXXXXX` of its clip would be 264
    src = photo(tmp_path / "one" / name)
    photo(tmp_path / "in" / name)
    proc = subprocess.run([str(Path(sys.executable).with_name("blur2clip")), src, "--weights", tiny_weights,
                           "--format", "gif", "-q"], capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert proc.stdout.splitlines() == [str(src.with_suffix(".gif"))]
    proc = run("batch", tmp_path / "in", "--weights", tiny_weights, "-q")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert (tmp_path / "in" / "clips" / ("x" * 246 + ".mp4")).is_file()
    assert hidden_files(tmp_path) == []
    long = tmp_path / ("é" * 125 + ".mp4")  # 254 bytes
    names = [outputs.hidden(long, "part0123abcd").name, outputs.hidden(long, "claim").name]
    assert all(len(os.fsencode(n)) <= 255 for n in names)
    assert outputs.key(long) != outputs.key(long.with_name("é" * 125 + ".gif"))  # cut names stay distinct


def test_names_with_a_line_break_are_refused_and_errors_stay_one_line(tmp_path, tiny_weights):
    src = photo(tmp_path / "a.png")
    proc = run(src, "-o", tmp_path / "bad\nname.mp4", "--weights", tiny_weights)
    assert proc.returncode == ExitCode.OUTPUT
    assert "bad\\nname.mp4" in error_line(proc) and "line break" in error_line(proc)
    shots = tmp_path / "shots"
    photo(shots / "ok.png")
    photo(shots / "two\nlines.png")
    proc = run("batch", shots, "--weights", tiny_weights, "-q")
    assert proc.returncode == ExitCode.FAILED
    assert proc.stdout.splitlines() == [str(shots / "clips" / "ok.mp4")]
    assert "two\\nlines" in error_line(proc)
    assert sorted(p.name for p in (shots / "clips").iterdir()) == ["ok.mp4"]


# ------------------------------------------------------------------------------------------------ frames


def test_webp_keeps_every_frame_even_when_frames_barely_differ(tmp_path):
    """libwebp's animation encoder merged frames within its lossy tolerance: 12 became 1 here."""
    base = np.random.default_rng(0).integers(0, 250, (1, 5000, 3), dtype=np.uint8)
    frames = np.stack([base + (k % 2) for k in range(12)])
    out = clipwriter.write_clip(frames, tmp_path / "c.webp", "webp", fps=10)
    assert webp_frames(out) == 12


def test_a_5000x1_photo_gives_every_frame_with_the_shipped_weights(tmp_path):
    src = tmp_path / "line.png"
    Image.fromarray(np.full((1, 5000, 3), 128, np.uint8)).save(src)
    proc = run(src, "-o", tmp_path / "line.webp", "-q")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert webp_frames(tmp_path / "line.webp") == PINGPONG
