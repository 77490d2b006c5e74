"""`blur2clip batch`: finding and planning (library), runs with failures, resume, interrupts and the GPU
grouping (in process, tiny model), and the command run as a user runs it, killed with SIGKILL halfway."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from blur2clip import CLIP_FRAMES, batch
from blur2clip.batch import DONE, EXISTS, FAILED, SKIPPED
from blur2clip.cli import ExitCode
from blur2clip.errors import SettingsError
from blur2clip.job import ClipOptions

from conftest import error_line, tiny_model, write_photo as photo

PINGPONG = 2 * CLIP_FRAMES - 2  # frames in a default clip: forward, then back without repeating the ends
SYSTEM = [".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.jpg", "._a.jpg"]


def bad_files(d: Path) -> list[Path]:
    """A truncated JPEG, an empty file and a text file named .jpg."""
    whole = photo(d / "whole.jpg", 96, 128).read_bytes()
    (d / "whole.jpg").unlink()
    (d / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_text("not a photo\n")
    return [d / "cut.jpg", d / "empty.jpg", d / "notes.jpg"]


def system_files(d: Path) -> None:
    for name in SYSTEM:
        (d / name).write_bytes(b"\0system")


def hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and "clips" not in p.parts}


def temporaries(d: Path) -> list[Path]:
    return [p for p in d.rglob(".*") if ".part" in p.name or ".old" in p.name]


def mp4_frames(path: Path) -> int:
    """Frames decoded from the whole file (an incomplete mp4 fails or comes out short)."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    next(gen)  # the metadata
    return sum(1 for _ in gen)


@pytest.fixture(scope="module")
def extractor():
    from blur2clip.extract import Extractor

    return Extractor(model=tiny_model(), device="cpu", tile=0)


# ------------------------------------------------------------------------------------ finding, planning


def test_find_photos_skips_system_files_silently_and_lists_other_files(tmp_path):
    for name in ("b.png", "a.jpg", "A2.JPEG", "sub/c.png", "clips/old.png"):
        photo(tmp_path / name)
    system_files(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub" / "Thumbs.db").write_text("x")
    found = batch.find_photos(tmp_path, out_dir=tmp_path / "clips")
    assert [p.name for p in found.photos] == ["A2.JPEG", "a.jpg", "b.png"]
    assert found.others == [(tmp_path / "notes.txt", "not a photo (.txt)")]
    deep = batch.find_photos(tmp_path, recursive=True, out_dir=tmp_path / "clips")
    assert [p.relative_to(tmp_path).as_posix() for p in deep.photos] == ["A2.JPEG", "a.jpg", "b.png", "sub/c.png"]
    # the output folder is read when it is not inside DIR
    assert len(batch.find_photos(tmp_path, recursive=True, out_dir=tmp_path / "elsewhere").photos) == 5


def test_symlink_loops_end(tmp_path):
    photo(tmp_path / "sub" / "a.png")
    os.symlink(tmp_path, tmp_path / "sub" / "up")
    os.symlink(tmp_path / "sub", tmp_path / "sub" / "self")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken.jpg")
    found = batch.find_photos(tmp_path, recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in found.photos] == ["sub/a.png"]
    assert found.others == [(tmp_path / "broken.jpg", "broken link")]


def test_plan_gives_distinct_deterministic_outputs(tmp_path):
    names = ["a.jpg", "a.png", "b.png", "B.webp", "sub/a.jpg", "c.webp"]
    photos = [tmp_path / n for n in names]
    out = tmp_path / "clips"
    jobs = batch.plan(photos, tmp_path, out)
    assert [j.output.relative_to(out).as_posix() for j in jobs] == [
        "a.jpg.mp4", "a.png.mp4", "b.png.mp4", "B.webp.mp4", "sub/a.mp4", "c.mp4"]
    assert batch.plan(list(reversed(photos)), tmp_path, out) == list(reversed(jobs))
    frames = batch.plan(photos, tmp_path, out, "frames")
    assert [j.output.name for j in frames][:3] == ["a.jpg_frames", "a.png_frames", "b.png_frames"]
    webp = batch.plan(photos, tmp_path, tmp_path, "webp")  # into DIR itself: never the photo's own name
    assert webp[-1].output == tmp_path / "c_clip.webp"
    third = batch.plan([tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "a.jpg.png"], tmp_path, out)
    assert len({j.output for j in third}) == 3


# ---------------------------------------------------------------------------------------- runs in process


def folder_of_photos(d: Path, n: int) -> list[Path]:
    return [photo(d / f"p{i}.png", seed=i) for i in range(n)]


def test_run_batch_goes_past_bad_photos_and_resumes(tmp_path, extractor):
    good = folder_of_photos(tmp_path, 3)
    bad = bad_files(tmp_path)
    jobs = batch.plan(sorted(good + bad), tmp_path)
    events = []
    report = batch.run_batch(jobs, extractor=extractor, pingpong=False, on_event=lambda k, j, r: events.append(k))
    assert [r.input for r in report.results] == [j.input for j in jobs]  # in input order
    assert sorted(r.input for r in report.done) == good
    assert sorted(r.input for r in report.failed) == sorted(bad)
    assert {r.error.split(": ", 1)[1] for r in report.failed} >= {"empty file", "truncated JPEG file"}
    assert events.count("start") == 3 and events.count("result") == 6
    assert not report.interrupted and not report.pending
    for r in report.done:
        assert mp4_frames(r.output) == CLIP_FRAMES and r.seconds > 0 and r.motion is not None

    again = batch.run_batch(jobs, extractor=lambda: pytest.fail("nothing to do: no weights needed"))
    assert [r.status for r in again.results if r.input in good] == [SKIPPED] * 3
    assert all(r.error == EXISTS for r in again.skipped)
    first = next(j for j in jobs if j.input == good[0])
    redo = batch.run_batch([first], extractor=extractor, overwrite=True, loops=2)
    assert redo.done and mp4_frames(first.output) == 2 * PINGPONG  # remade: ping-ponged, twice


def test_fail_fast_stops_at_the_first_failure(tmp_path, extractor):
    bad = bad_files(tmp_path)
    good = folder_of_photos(tmp_path, 2)
    jobs = batch.plan([bad[0], *good], tmp_path)
    report = batch.run_batch(jobs, extractor=extractor, fail_fast=True)
    assert [r.status for r in report.results] == [FAILED]
    assert report.stopped and report.pending == good
    assert not any(j.output.exists() for j in jobs)


def test_a_failed_write_is_that_photos_failure(tmp_path, extractor):
    good = folder_of_photos(tmp_path, 2)
    wide = photo(tmp_path / "wide.png", 2, 17000)  # too wide for WebP: the writer thread fails
    jobs = batch.plan([good[0], wide, good[1]], tmp_path, fmt="webp")
    report = batch.run_batch(jobs, extractor=extractor, overwrite=True, max_size=17000)  # not capped to 1080
    assert [r.status for r in report.results] == [DONE, FAILED, DONE]
    assert "too large for WebP" in report.results[1].error
    assert temporaries(tmp_path) == []


def test_the_network_works_at_the_clips_size(tmp_path):
    """A photo whose clip is shrunk (a GIF to 1080 px; an MP4 to H.264 level 5.1, here by its frame rate)
    goes through the network at the clip's size."""
    from blur2clip.extract import Extractor

    sizes = []

    class Seen(Extractor):
        def __call__(self, image, dtype=np.float32):
            sizes.append(image.shape[:2])
            return super().__call__(image, dtype)

    wide = photo(tmp_path / "wide.png", 20, 1300)
    report = batch.run_batch(batch.plan([wide], tmp_path, fmt="gif"), frames=3,
                             extractor=Seen(model=tiny_model(), device="cpu", tile=0))
    assert [r.status for r in report.results] == [DONE] and sizes == [(17, 1080)]
    square = photo(tmp_path / "square.png", 480, 640)
    report = batch.run_batch(batch.plan([square], tmp_path), frames=3, fps=1000,
                             extractor=Seen(model=tiny_model(), device="cpu", tile=0))
    assert [r.status for r in report.results] == [DONE] and sizes[-1][1] < 640


def test_an_output_that_may_not_be_written_fails_before_any_work(tmp_path, extractor):
    good = folder_of_photos(tmp_path, 3)
    jobs = batch.plan(good, tmp_path)
    jobs[1].output.parent.mkdir(parents=True)
    jobs[1].output.mkdir()  # a folder where the clip should go
    (jobs[1].output / "keep").write_text("x")
    report = batch.run_batch(jobs, extractor=extractor, overwrite=True, on_event=lambda k, j, r: (
        k != "start" or j is not jobs[1] or pytest.fail("no work for a refused output")))
    assert [(r.input, r.status) for r in report.results] == [(good[1], FAILED), (good[0], DONE), (good[2], DONE)]
    assert "is a folder" in report.results[0].error
    assert (jobs[1].output / "keep").read_text() == "x"
    assert temporaries(tmp_path) == []


def test_ctrl_c_finishes_the_clip_being_written_and_reports_the_rest(tmp_path, extractor):
    good = folder_of_photos(tmp_path, 4)
    jobs = batch.plan(good, tmp_path)

    def interrupt(kind, job, result):
        if kind == "start" and job is jobs[2]:
            raise KeyboardInterrupt

    report = batch.run_batch(jobs, extractor=extractor, on_event=interrupt)
    assert report.interrupted
    assert [r.input for r in report.done] == good[:2]  # the second was being written: finished
    assert report.pending == good[2:]
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == ["p0.mp4", "p1.mp4"]
    assert temporaries(tmp_path) == []


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    jobs = batch.plan([tmp_path / "a.png", tmp_path / "b.png"], tmp_path, fmt="mp4")
    out = tmp_path / "clips"
    out.mkdir()
    (out / ".a.mp4.part0123abcd").write_bytes(b"half")
    (out / ".b.mp4.old89abcdef").mkdir()
    (out / ".other.mp4.part0123abcd").write_bytes(b"not ours")
    (out / "a.mp4").write_bytes(b"done")
    removed = batch.remove_temporaries(jobs)
    assert sorted(p.name for p in removed) == [".a.mp4.part0123abcd", ".b.mp4.old89abcdef"]
    assert sorted(p.name for p in out.iterdir()) == [".other.mp4.part0123abcd", "a.mp4"]


def test_a_gpu_runs_photos_of_one_size_together(tmp_path):
    """On a GPU (faked here) photos of one size that fit one pass share a forward pass; the rest and
    every failure stay per photo."""
    passes, alone = [], []

    class Fake:
        device, batch, tile = SimpleNamespace(type="cuda"), 4, 0

        def _forward(self, tiles):  # 7 frames that differ (a GIF merges equal ones): fading in
            passes.append(len(tiles))
            return [(np.stack([t * (k + 1) / 7 for k in range(7)]) * 255).round().astype(np.uint8)
                    for t in tiles]

        def many(self, images, dtype):
            return self._forward(images)

        def __call__(self, image, dtype):
            alone.append(image.shape)
            return self._forward([image])[0]

    photos = [photo(tmp_path / f"s{i}.png", seed=i) for i in range(5)] + [photo(tmp_path / "t.png", 40, 40)]
    jobs = batch.plan(photos, tmp_path, fmt="gif")
    report = batch.run_batch(jobs, extractor=Fake(), prefetch=8, frames=7)
    assert [r.status for r in report.results] == [DONE] * 6
    assert passes == [4, 1, 1]  # s0-s3 together; s4 (the next photo has another size) and t alone
    assert alone == [(48, 64, 3), (40, 40, 3)]
    with Image.open(jobs[0].output) as im:
        assert im.n_frames == 12 and im.size == (64, 48)


# ------------------------------------------------------------------------------------- the command line


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("BLUR2CLIP_")}
    e.update(OMP_NUM_THREADS="1", BLUR2CLIP_THREADS="1", PYTHONWARNINGS="ignore")
    return e


def command(*args) -> list[str]:
    return [sys.executable, "-m", "blur2clip", "batch", *map(str, args)]


# `blur2clip batch ARGS` in which, once one photo was read, the others wait to be read until the file
# RELEASE exists: a run stopped after its first clip is stopped between the first and the last, however fast.
HELD = """import pathlib, sys, time
from blur2clip import batch, cli
read, release, decoded = batch._read, pathlib.Path(sys.argv[1]), []
def held(*args, **kw):
    while decoded and not release.exists():
        time.sleep(0.01)
    result = read(*args, **kw)  # a bad file raises here: only photos that decode count
    decoded.append(args[0])
    return result
batch._read = held
sys.exit(cli.main(["batch", *sys.argv[2:]]))
"""


def held_command(release: Path, *args) -> list[str]:
    return [sys.executable, "-c", HELD, str(release), *map(str, args)]


def run(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, env=env(), timeout=timeout)


def test_batch_help_and_usage_errors(tmp_path):
    proc = run("--help")
    assert proc.returncode == 0 and "--recursive" in proc.stdout and "--fail-fast" in proc.stdout
    assert "--no-pingpong" in proc.stdout and "--weights" in proc.stdout  # the single-photo options
    for folder, reason in ((tmp_path / "nowhere", "no such folder"), (photo(tmp_path / "a.png"), "is not a folder")):
        proc = run(folder)
        assert proc.returncode == ExitCode.INPUT and error_line(proc) == f"blur2clip: error: {folder}: {reason}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no clips folder made for them
    assert run(tmp_path, "--format", "avi").returncode == ExitCode.USAGE


def test_batch_json_lines_and_exit_codes(tmp_path, tiny_weights):
    shots = tmp_path / "shots"
    folder_of_photos(shots, 2)
    system_files(shots)
    (shots / "readme.txt").write_text("x")
    proc = run(shots, "--weights", tiny_weights, "--json", "--loops", "1", "--format", "gif")
    assert proc.returncode == ExitCode.OK, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(Path(r["input"]).name, r["status"]) for r in lines] == [
        ("readme.txt", SKIPPED), ("p0.png", DONE), ("p1.png", DONE)]
    assert set(lines[1]) == {"input", "output", "status", "seconds", "error", "motion_px"}
    assert lines[1]["output"] == str(shots / "clips" / "p0.gif") and lines[1]["error"] is None
    for name in SYSTEM:
        assert name not in proc.stdout + proc.stderr
    assert "2 done, 1 skipped, 0 failed" in proc.stderr

    (shots / "bad.jpg").write_bytes(b"")
    proc = run(shots, "--weights", tiny_weights, "-q", "--format", "gif")
    assert proc.returncode == ExitCode.FAILED and proc.stdout == ""
    assert proc.stderr.strip() == f"blur2clip: error: {shots / 'bad.jpg'}: empty file"

    proc = run(shots, "--weights", tmp_path / "missing.safetensors", "--overwrite")
    assert proc.returncode == ExitCode.WEIGHTS and "missing.safetensors" in proc.stderr


def test_batch_killed_halfway_then_resumed(tmp_path, tiny_weights):
    """Good photos, bad files, system files and a sub-folder; SIGKILL once some clips
    are made; a second run leaves exactly one complete clip per good photo and nothing else."""
    shots = tmp_path / "shots"
    good = [photo(shots / f"p{i}.{'jpg' if i % 2 else 'png'}", 360, 480, seed=i) for i in range(7)]
    good.append(photo(shots / "p0.jpg", 360, 480, seed=9))  # p0.png beside it: both keep their suffix
    good.append(photo(shots / "sub" / "q.png", 360, 480))
    bad = bad_files(shots)
    system_files(shots)
    system_files(shots / "sub")
    before = hashes(shots)
    out = shots / "clips"
    args = (shots, "--recursive", "--weights", tiny_weights, "--threads", "1", "--tile", "0", "--loops", "1")

    proc = subprocess.Popen(held_command(tmp_path / "never", *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env(), start_new_session=True)  # the kill takes ffmpeg along
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not any(out.rglob("*.mp4")):
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before its first clip"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    first = sorted(out.rglob("*.mp4"))
    assert len(first) == 1  # the others were held back: stopped halfway
    for clip in first:  # a final name only ever holds a whole clip
        assert mp4_frames(clip) == PINGPONG
    (out / f".{first[0].name}.part0123abcd").write_bytes(b"as if killed while writing")

    proc = run(*args, "--json")
    assert proc.returncode == ExitCode.FAILED, proc.stderr
    results = {Path(r["input"]): r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == {*good, *bad}  # system files are not mentioned
    for name in SYSTEM:
        assert name not in proc.stdout + proc.stderr
    assert {p for p, r in results.items() if r["status"] == FAILED} == set(bad)
    assert all(r["error"] for p, r in results.items() if p in bad)
    assert {Path(r["output"]) for r in results.values() if r["status"] == SKIPPED} == set(first)
    assert f"{len(good) - len(first)} done, {len(first)} skipped, {len(bad)} failed" in proc.stderr

    clips = sorted(out.rglob("*.mp4"))
    assert len(clips) == len(good) == len({results[p]["output"] for p in good})
    assert sorted(Path(results[p]["output"]) for p in good) == clips
    assert (out / "p0.jpg.mp4").exists() and (out / "p0.png.mp4").exists() and (out / "sub" / "q.mp4").exists()
    for clip in clips:
        assert mp4_frames(clip) == PINGPONG
    assert temporaries(tmp_path) == []
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        [c.relative_to(out).as_posix() for c in clips]  # nothing else in the clips folder
    assert hashes(shots) == before  # inputs untouched


def test_ctrl_c_prints_the_summary_and_exits_130(tmp_path, tiny_weights):
    shots = tmp_path / "shots"
    for i in range(8):
        photo(shots / f"p{i}.png", 360, 480, seed=i)
    out = shots / "clips"
    # Ctrl-C as a terminal sends it to a foreground command, whose SIGINT is at its default even when
    # the tests run in a background job (which starts its commands with SIGINT ignored)
    proc = subprocess.Popen(command(shots, "--weights", tiny_weights, "--tile", "0", "--loops", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not any(out.glob("*.mp4")):
            time.sleep(0.01)
        assert proc.poll() is None, "the batch ended before Ctrl-C could be sent"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    assert "interrupted:" in stderr and "run again to resume" in stderr
    clips = sorted(out.glob("*.mp4"))
    assert 1 <= len(clips) < 8 and stdout.split() == [str(c) for c in clips]
    assert all(mp4_frames(c) == PINGPONG for c in clips) and temporaries(tmp_path) == []


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_closed_stdout_stops_the_batch_as_ctrl_c_does_and_exits_141(tmp_path, tiny_weights, json_lines):
    shots = tmp_path / "shots"
    for i in range(8):
        photo(shots / f"p{i}.png", 360, 480, seed=i)
    out = shots / "clips"
    # `blur2clip batch shots | head -1`: the reader takes one line and goes away
    proc = subprocess.Popen(command(shots, "--weights", tiny_weights, "--tile", "0", "--loops", "1",
                                    *(["--json"] if json_lines else [])),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read()
        proc.wait(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.STDOUT_CLOSED, stderr
    assert "Traceback" not in stderr and "Broken pipe" not in stderr
    assert stderr.splitlines()[-1].startswith("stopped (stdout was closed)")  # the summary's last line
    assert (json.loads(first)["output"] if json_lines else first.strip()).endswith("p0.mp4")
    clips = sorted(out.glob("*.mp4"))
    assert 1 <= len(clips) < 8  # it stopped; what it made is whole, and nothing half-made is left
    assert all(mp4_frames(c) == PINGPONG for c in clips) and temporaries(tmp_path) == []


def test_batch_in_one_call_as_a_notebook_would(tmp_path, extractor):
    photo(tmp_path / "a.png")
    photo(tmp_path / "sub" / "b.jpg")
    (tmp_path / "list.csv").write_text("x")
    system_files(tmp_path)
    report = batch.batch(tmp_path, recursive=True, fmt="frames", extractor=extractor, pingpong=False)
    assert [(r.input.name, r.status) for r in report.results] == [("list.csv", SKIPPED), ("a.png", DONE),
                                                                  ("b.jpg", DONE)]
    assert report.ok and len(list((tmp_path / "clips" / "sub" / "b_frames").glob("frame_*.png"))) == CLIP_FRAMES
    again = batch.batch(tmp_path, recursive=True, fmt="frames", extractor=extractor)
    assert [r.status for r in again.results] == [SKIPPED] * 3
    # the format of a ClipOptions given whole (it made mp4 clips); a fmt that disagrees with it is refused
    gifs = batch.batch(tmp_path / "sub", tmp_path / "gifs", options=ClipOptions(fmt="gif", max_size=32),
                       extractor=extractor)
    assert [r.output.name for r in gifs.done] == ["b.gif"]
    with pytest.raises(SettingsError, match="fmt 'mp4' and options.fmt 'gif' disagree"):
        batch.batch(tmp_path / "sub", tmp_path / "gifs", fmt="mp4", options=ClipOptions(fmt="gif"), extractor=extractor)


def test_plan_photos_beside_each_or_in_one_folder(tmp_path):
    a, b = photo(tmp_path / "x" / "a.jpg"), photo(tmp_path / "y" / "a.png")
    c = photo(tmp_path / "x" / "c.png")
    beside = batch.plan_photos([a, c, b, tmp_path / "x" / ".." / "x" / "a.jpg"])  # a named twice: once
    assert [(j.input, j.output) for j in beside] == [
        (a, tmp_path / "x" / "a.mp4"), (c, tmp_path / "x" / "c.mp4"), (b, tmp_path / "y" / "a.mp4")]
    into = batch.plan_photos([a, b, c], tmp_path / "clips", fmt="gif")
    assert [j.output.name for j in into] == ["a.jpg.gif", "a.png.gif", "c.gif"]
    assert {j.output.parent for j in into} == {tmp_path / "clips"} and {j.fmt for j in into} == {"gif"}
