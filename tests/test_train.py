"""Staged training on tiny configs: the loss falls, stages chain, a killed run resumes exactly, every data
layout trains, and torchrun with two processes gives the network one process gives."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from blur2clip import weights
from blur2clip.cli import main
from blur2clip.data import SyntheticBlur, list_photos, split_photos
from blur2clip.synth import SynthConfig
from blur2clip.losses import staged_loss
from blur2clip.train import Stopped, TrainConfig, train
from conftest import tiny_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """30 small textured photos: enough that the 1-in-10 validation split has some."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(30):
        blocks = rng.random((9, 12, 3)).repeat(8, 0).repeat(8, 1)
        y, x = np.mgrid[0:72, 0:96]
        img = 0.6 * blocks + 0.4 * np.stack([x / 96, y / 72, np.sin(x / 5) * 0.5 + 0.5], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(d / f"photo{i:03d}.png")
    train_set, val_set = split_photos(list_photos(d))
    assert train_set and val_set
    return d


def tiny_cfg(photos, out, **kw) -> TrainConfig:
    base = dict(data=str(photos), out=str(out), stage="1", steps=[4, 4, 4], batch=2, crop=32, val_count=2,
                val_size=32, workers=0, log_every=1, ckpt_every=2, val_every=100, warmup=1, model=tiny_config())
    base.update(kw)
    return TrainConfig(**base)


def test_a_few_steps_lower_the_loss(photos):
    torch.manual_seed(0)
    from blur2clip.model import Blur2Clip

    model = Blur2Clip(tiny_config(width=8))
    ds = SyntheticBlur(list_photos(photos), SynthConfig(size=32), seed=1)
    blurred, frames, clean, _ = (torch.stack(t) for t in zip(*[ds[i] for i in range(4)]))
    cfg = TrainConfig(data="", out="", w_pairs=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss, _ = staged_loss(model(blurred), frames, clean, 3, cfg, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # The start is the identity (every frame = the input, the blurred baseline); learning must beat it.
    assert losses[-1] < 0.97 * losses[0]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_stages_chain_and_each_writes_its_file(photos, tmp_path):
    paths = train(tiny_cfg(photos, tmp_path, stage="all", steps=[2, 2, 2]), log=lambda *_: None)
    assert [p.name for p in paths] == ["stage1.safetensors", "stage2.safetensors", "stage3.safetensors"]
    s1, s3 = weights.load_model(paths[0]), weights.load_model(paths[2])
    assert s1.config.stage == 1 and s3.config.stage == 3
    meta = weights.read_metadata(paths[2])
    assert meta["training"]["stage"] == 3 and {"ppsnr", "ssim"} <= set(meta["training"]["validation"])
    # Stage 1 trains the middle frame only: the head of every other frame is still zero (frames = input).
    head = load_file(str(paths[0]))["ending.weight"].view(7, 3, -1)
    assert head[3].abs().sum() > 0 and all(head[i].abs().sum() == 0 for i in (0, 1, 2, 4, 5, 6))
    # A later stage starting again (resume) finds every stage done and changes nothing.
    again = train(tiny_cfg(photos, tmp_path, stage="all", steps=[2, 2, 2], resume=True), log=lambda *_: None)
    assert again == paths


def test_init_starts_the_first_stage_with_its_frames_adapted_and_later_stages_chain(photos, tmp_path,
                                                                                     tiny_weights):
    lines = []
    paths = train(tiny_cfg(photos, tmp_path, stage="all", steps=[1, 1, 1], init=str(tiny_weights),
                           model=tiny_config(frames=21)), log=lines.append)
    assert sum("7 frames, adapted to 21" in line for line in lines) == 1  # the first stage only
    s1 = weights.load_model(paths[0])
    head = load_file(str(paths[0]))["ending.weight"].view(21, 3, -1)
    assert s1.config.frames == 21 and all(head[i].abs().sum() > 0 for i in range(21))


def test_a_frames_file_starts_a_travel_head_whose_travel_trains(photos, tmp_path, tiny_weights):
    lines = []
    path, = train(tiny_cfg(photos, tmp_path, stage="3", steps=[1, 1, 3], init=str(tiny_weights), log_every=1,
                           model=tiny_config(head="travel"), synth={"camera_px": 8.0}), log=lines.append)
    assert sum("given the travel head" in line for line in lines) == 1
    model = weights.load_model(path)
    assert model.config.head == "travel" and model.ending.out_channels == 5
    assert model.ending.weight[3:].abs().sum() > 0  # the travel's weights left their zero start
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 3 and all("travel" in r and np.isfinite(r["travel"]) for r in steps)


def test_stage_two_needs_stage_one(photos, tmp_path):
    with pytest.raises(FileNotFoundError, match="stage1"):
        train(tiny_cfg(photos, tmp_path, stage="2"), log=lambda *_: None)


def test_a_run_that_diverges_stops_with_one_line_and_keeps_its_good_checkpoint(photos, tmp_path, capsys):
    """A learning rate far too large: the run stops with a settings error (exit 2) instead of writing weights
    that are not numbers; the checkpoint on disk holds finite weights, and its curves were drawn."""
    torch.manual_seed(0)
    code = main(["train", "--data", str(photos), "--out", str(tmp_path), "--stage", "1", "--steps", "30",
                 "--batch", "2", "--crop", "32", "--val-count", "2", "--val-size", "32", "--workers", "0",
                 "--ckpt-every", "1", "--val-every", "1", "--lr", "1e6", "--warmup", "0", "--width", "8", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "training diverged (try a lower --lr)" in err[0], err
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (tmp_path / "stage1.safetensors").exists()


def test_the_stage_file_holds_the_weights_average_and_the_best_validation_is_kept(photos, tmp_path):
    train(tiny_cfg(photos, tmp_path, steps=[6], ema=0.5, val_every=2), log=lambda *_: None)
    shipped = load_file(str(tmp_path / "stage1.safetensors"))
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]  # the last trained weights
    moved = [k for k in shipped if not torch.allclose(shipped[k].float(), raw[k].float())]
    assert moved, "the stage file should hold the average, not the last step's weights"
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    vals = [r for r in log if "val" in r]
    assert [r["step"] for r in vals] == [2, 4, 6]
    best = max(vals, key=lambda r: r["val"]["ppsnr"] if "ppsnr" in r["val"] else r["val"]["middle"])
    meta = weights.read_metadata(tmp_path / "best.safetensors")
    assert meta["training"]["best"]["step"] == best["step"]


def test_the_run_keeps_its_settings_and_a_resume_may_not_change_the_network(photos, tmp_path):
    lines = []
    train(tiny_cfg(photos, tmp_path, steps=[2]), log=lines.append)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["steps"] == [2] and saved["model"]["width"] == 4 and saved["lr"] == 1e-3
    with pytest.raises(ValueError, match="started with model = .*keeps its data and network"):
        train(tiny_cfg(photos, tmp_path, steps=[2], resume=True, model=tiny_config(width=8)), log=lines.append)
    lines.clear()
    train(tiny_cfg(photos, tmp_path, steps=[2], resume=True, lr=5e-4, threads=1), log=lines.append)
    assert any("resuming with lr = 0.0005 (the run started with 0.001)" in line for line in lines)
    assert not any("threads" in line for line in lines)
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 5e-4
    # a setting its file does not hold (one added since the run started) had its default then
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["w_still"], saved["model"]["centre_levels"]  # (a network setting added since, too)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    lines.clear()
    train(tiny_cfg(photos, tmp_path, steps=[2], resume=True, lr=5e-4, w_still=0.03), log=lines.append)
    assert any("resuming with w_still = 0.03 (the run started with 0.0)" in line for line in lines)


CLI_TINY = ["--stage", "1", "--steps", "2", "--batch", "2", "--crop", "32", "--val-count", "2", "--val-size", "32",
            "--workers", "0", "--width", "4", "--enc-blocks", "1,1", "--dec-blocks", "1,1", "--middle-blocks", "1",
            "-q"]


def test_a_new_run_never_writes_over_a_run_or_into_its_data(photos, tmp_path, capsys):
    run = tmp_path / "run"
    (stage1,) = train(tiny_cfg(photos, run, steps=[2]), log=lambda *_: None)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code = main(["train", "--data", str(photos), "--out", str(run), *CLI_TINY, "--lr", "5e-4"])
    err = capsys.readouterr().err
    assert code == 4 and err == (f"blur2clip: error: {run}: holds a run already (config.json, checkpoint.pt, "
                                 f"log.jsonl, …): --resume it, or give a new --out\n"), err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing touched
    assert main(["train", "--data", str(photos), "--out", str(run), *CLI_TINY, "--resume"]) == 0  # a resume may
    capsys.readouterr()
    for out, why in ((photos, "is the data folder"), (photos / "run", "is inside the data folder")):
        assert main(["train", "--data", str(photos), "--out", str(out), *CLI_TINY]) == 4
        assert f"{out}: {why} {photos}, whose files it would become" in capsys.readouterr().err
    assert not (photos / "run").exists() and not (photos / "config.json").exists()
    (tmp_path / "empty.toml").write_text(f'data = "{photos}"\nout = ""\n')
    assert main(["train", "--config", str(tmp_path / "empty.toml"), *CLI_TINY]) == 2
    assert "out is empty: give the run folder" in capsys.readouterr().err


def test_a_broken_checkpoint_or_settings_file_is_one_line_naming_it(photos, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_cfg(photos, run, steps=[2]), log=lambda *_: None)
    settings, ckpt = (run / "config.json").read_bytes(), run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # cut short, as by a full disk
    assert main(["train", "--data", str(photos), "--out", str(run), *CLI_TINY, "--resume"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"blur2clip: error: {ckpt}: cannot be read as a checkpoint (") and err.count("\n") == 1
    ckpt.unlink()
    for text, says in (("[1]", "holds a list, not a run's settings"), ("{", "cannot be read (Expecting")):
        (run / "config.json").write_text(text)
        assert main(["train", "--data", str(photos), "--out", str(run), *CLI_TINY, "--resume"]) == 3
        err = capsys.readouterr().err
        assert err.startswith(f"blur2clip: error: {run / 'config.json'}: {says}") and err.count("\n") == 1, err
    (run / "config.json").write_bytes(settings)


def test_a_run_from_init_records_the_network_it_trains(photos, tmp_path):
    (start,) = train(tiny_cfg(photos, tmp_path / "first", steps=[2]), log=lambda *_: None)  # width 4
    lines = []
    train(tiny_cfg(photos, tmp_path / "second", steps=[2], init=str(start), model=tiny_config(width=8)),
          log=lines.append)
    assert any(f"{start}: its network is trained (width 4, encoder [1, 1], middle 1, decoder [1, 1]), not the one "
               "the settings describe" in line for line in lines), lines
    saved = json.loads((tmp_path / "second" / "config.json").read_text())
    assert saved["model"]["width"] == 4 and weights.load_model(tmp_path / "second" / "stage1.safetensors").config.width == 4
    # resumed with the same settings, or without --init: the network it recorded goes on (its file not needed)
    for init in (str(start), None):
        train(tiny_cfg(photos, tmp_path / "second", stage="all", steps=[2], init=init, resume=True,
                       model=tiny_config(width=8)), log=lambda *_: None)
    assert weights.load_model(tmp_path / "second" / "stage3.safetensors").config.width == 4


RUNNER = """
import sys, torch
sys.path.insert(0, {tests!r})
from conftest import tiny_config
from blur2clip.train import TrainConfig, train
torch.set_num_threads(1)
train(TrainConfig(data={data!r}, out={out!r}, stage="1", steps=[{steps}], batch=2, crop=48, val_count=2,
                  val_size=32, workers={workers}, log_every=1, ckpt_every=2, val_every=1000, warmup=1,
                  resume=True, ema={ema}, model=tiny_config()))
"""


def run_training(photos, out, steps, kill_at_checkpoint=False, ema=0.0, sig=signal.SIGKILL):
    code = RUNNER.format(tests=str(ROOT / "tests"), data=str(photos), out=str(out), steps=steps, workers=0,
                         ema=ema)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_at_checkpoint:
        ckpt = Path(out) / "checkpoint.pt"
        deadline = time.time() + 120
        while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err.decode()


@pytest.mark.parametrize("layout", ["photos", "sequences"])
def test_killed_run_resumes_from_its_checkpoint_to_the_same_weights(request, tmp_path, layout):
    photos = request.getfixturevalue("photos") if layout == "photos" else request.getfixturevalue(
        "footage_dirs")["sequences"]
    steps, ema = 12, (0.9 if layout == "photos" else 0.0)  # the weights' average resumes exactly too
    rc, err = run_training(photos, tmp_path / "straight", steps, ema=ema)
    assert rc == 0, err
    rc, _ = run_training(photos, tmp_path / "killed", steps, kill_at_checkpoint=True, ema=ema)
    assert rc == -signal.SIGKILL
    ckpt = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert ckpt["stage"] == 1 and 0 < ckpt["step"] < steps  # killed part-way, after a checkpoint
    assert not (tmp_path / "killed" / "stage1.safetensors").exists()
    rc, err = run_training(photos, tmp_path / "killed", steps, ema=ema)
    assert rc == 0, err
    a = load_file(str(tmp_path / "straight" / "stage1.safetensors"))
    b = load_file(str(tmp_path / "killed" / "stage1.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_stops_at_the_end_of_a_step_and_the_run_resumes_to_the_same_weights(photos, tmp_path):
    # Ctrl-C could land anywhere: in the optimizer's step, half-way through the weights' average, in a
    # validation. It asks the loop to stop instead, so the checkpoint is one the run itself would write.
    steps, ema = 12, 0.9
    rc, err = run_training(photos, tmp_path / "straight", steps, ema=ema)
    assert rc == 0, err
    rc, err = run_training(photos, tmp_path / "stopped", steps, kill_at_checkpoint=True, ema=ema, sig=signal.SIGINT)
    assert rc != 0 and "Stopped: stopped at stage 1 step" in err, err
    ckpt = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    assert 0 < ckpt["step"] < steps
    rc, err = run_training(photos, tmp_path / "stopped", steps, ema=ema)
    assert rc == 0, err
    a = load_file(str(tmp_path / "straight" / "stage1.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "stage1.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


FAILING_WORKER = """
import torch
from blur2clip.loader import shut_down, worker_init

class Breaks(torch.utils.data.Dataset):
    def __len__(self):
        return 100
    def __getitem__(self, i):
        if i >= 4:
            raise OSError("photo unreadable")
        return torch.zeros(2)

it = iter(torch.utils.data.DataLoader(Breaks(), batch_size=2, num_workers=1, worker_init_fn=worker_init))
try:
    for batch in it:
        pass
except OSError:
    print("the worker's error reached the main process")
finally:
    shut_down(it)
"""


def test_a_data_workers_error_ends_the_process_instead_of_leaving_it_waiting_for_the_workers():
    # The workers ignore SIGTERM, which is how the interpreter's exit stops them, and the error's traceback
    # keeps the loader alive: without shut_down the process waits for its worker forever.
    done = subprocess.run([sys.executable, "-c", FAILING_WORKER], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "reached the main process" in done.stdout


@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_to_the_process_group_writes_a_checkpoint_and_stops(photos, tmp_path, workers):
    """As a scheduler stops a job: SIGTERM to every process of the group, data workers included."""
    code = RUNNER.format(tests=str(ROOT / "tests"), data=str(photos), out=str(tmp_path), steps=100000,
                         workers=workers, ema=0.0)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    log = tmp_path / "log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().count("\n") >= 3) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # hung: leave nothing running behind a failed test
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and "checkpoint written" in err.decode()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] >= 3


# ---------------------------------------------------------------- real layouts, files, torchrun


@pytest.fixture(scope="module")
def footage_dirs(tmp_path_factory):
    from layouts import make_gopro, make_sequences, make_videos

    root = tmp_path_factory.mktemp("footage")
    return {"sequences": make_sequences(root / "sequences"), "gopro": make_gopro(root / "gopro"),
            "videos": make_videos(root / "videos")}


@pytest.mark.parametrize("layout", ["sequences", "videos"])
def test_consecutive_frames_train_every_stage(footage_dirs, tmp_path, layout):
    lines = []
    paths = train(tiny_cfg(footage_dirs[layout], tmp_path, stage="all", steps=[2, 2, 2], frames_per_blur=9),
                  log=lines.append)
    assert [p.name for p in paths] == ["stage1.safetensors", "stage2.safetensors", "stage3.safetensors"]
    assert any(f"{layout} (" in line for line in lines) and any("9 frames per blur" in line for line in lines)
    meta = weights.read_metadata(paths[2])["training"]
    assert meta["config"]["layout"] == "auto" and any(layout in line for line in meta["data"])
    assert "ppsnr" in meta["validation"]


def test_gopro_layout_trains_stage_one_only_and_says_so(footage_dirs, tmp_path):
    lines = []
    paths = train(tiny_cfg(footage_dirs["gopro"], tmp_path, stage="all"), log=lines.append)
    assert [p.name for p in paths] == ["stage1.safetensors"]
    assert any("training stage 1 only" in line for line in lines)
    assert set(weights.read_metadata(paths[0])["training"]["validation"]) == {"middle", "middle_ssim", "reblur"}
    with pytest.raises(ValueError, match="only the middle frame"):
        train(tiny_cfg(footage_dirs["gopro"], tmp_path / "s3", stage="3"), log=lambda *_: None)


def test_rendering_samples_on_the_gpu_needs_a_run_on_the_gpu(photos, tmp_path, capsys):
    with pytest.raises(ValueError, match="synth_device cuda renders the samples on the training GPU, but this run "
                                         "trains on cpu"):
        train(tiny_cfg(photos, tmp_path / "api", device="cpu", synth_device="cuda"), log=lambda *_: None)
    code = main(["train", "--data", str(photos), "--out", str(tmp_path / "cli"), "--device", "cpu",
                 "--synth-device", "cuda", "--steps", "2", "--crop", "32", "-q"])
    err = capsys.readouterr().err
    assert code == 6 and "synth_device cuda" in err and len(err.strip().splitlines()) == 1  # the device
    assert not (tmp_path / "cli" / "checkpoint.pt").exists()


def test_a_stage_file_comes_with_its_sha256_curves_and_the_data_position(photos, tmp_path, monkeypatch):
    (path,) = train(tiny_cfg(photos, tmp_path, steps=[6, 6, 6], ckpt_every=4), log=lambda *_: None)
    digest, name = (tmp_path / "stage1.safetensors.sha256").read_text().split()
    assert name == path.name and digest == weights.sha256(path)
    with Image.open(tmp_path / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] >= 600
    # the final checkpoint says where the next stage starts; a mid-run one where the data stream stands
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["stage"] == 2
    rc, err = run_training(photos, tmp_path / "killed", 12, kill_at_checkpoint=True)
    assert rc == -signal.SIGKILL, err  # killed part-way, not finished before the kill
    ckpt = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert ckpt["data"] == {"layout": "photos", "seed": 1, "position": ckpt["step"] * 2}
    # `weights import` takes the file as it is
    monkeypatch.setenv("BLUR2CLIP_HOME", str(tmp_path / "home"))
    info = weights.import_file(path, name="mine")
    assert info.sha256 == digest


def test_torchrun_with_two_processes_matches_one_process_with_the_same_global_batch(photos, tmp_path):
    """DDP over gloo on the CPU: each process takes half of every batch; the result is the same network."""
    args = ["--data", str(photos), "--stage", "all", "--steps", "3,2,2", "--batch", "4", "--crop", "32",
            "--width", "4", "--enc-blocks", "1,1", "--dec-blocks", "1,1", "--middle-blocks", "1", "--workers", "0",
            "--threads", "1", "--val-count", "2", "--val-size", "32", "--log-every", "1", "--warmup", "1", "-q"]
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "blur2clip", "train",
                          "--out", str(tmp_path / "two"), *args], capture_output=True, text=True, env=env,
                         timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    # rank 0 alone reports; every stage starts from the file of the one before
    assert two.stdout.split() == [str(tmp_path / "two" / f"stage{s}.safetensors") for s in (1, 2, 3)]
    assert "Grad strides do not match" not in two.stderr
    one = subprocess.run([sys.executable, "-m", "blur2clip", "train", "--out", str(tmp_path / "one"), *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "stage3.safetensors"))
    b = load_file(str(tmp_path / "two" / "stage3.safetensors"))
    assert a["ending.weight"].abs().sum() > 0  # it learned (the head starts at zero)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3)
    logged = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 1, 2, 1, 2]  # one process writes the log


def test_a_stop_asked_of_one_torchrun_process_stops_them_all_at_one_step(photos, tmp_path):
    """SIGTERM to the second process only (a scheduler may signal one): every process stops after the same
    step, the first writes the checkpoint and says so once; no gloo error from a peer gone early."""
    out = tmp_path / "run"
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2", "-m", "blur2clip",
           "train", "--data", str(photos), "--out", str(out), "--stage", "1", "--steps", "100000", "--batch", "2",
           "--crop", "32", "--width", "4", "--enc-blocks", "1,1", "--dec-blocks", "1,1", "--middle-blocks", "1",
           "--workers", "0", "--threads", "1", "--val-count", "2", "--val-size", "32", "--log-every", "1",
           "--ckpt-every", "100000", "--warmup", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        log, deadline = out / "log.jsonl", time.time() + 240
        while not (log.exists() and log.read_text().count("\n") >= 3) and time.time() < deadline:
            time.sleep(0.05)
        ranks = {}
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            ranks.update({e.decode(): int(child) for e in environ if e.startswith(b"RANK=")})
        os.kill(ranks["RANK=1"], signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    said = [line for line in stderr.splitlines() if "checkpoint written" in line]
    assert said == [f"blur2clip: stopped at stage 1 step {ckpt['step']}; checkpoint written; resume with --resume"], \
        stderr[-3000:]
    # (torchrun itself reports a process that exits 143 with a traceback of its own)
    assert "internal error" not in stderr and "Connection closed" not in stderr, stderr[-3000:]
    assert ckpt["step"] >= 3


def test_bf16_autocast_trains_and_keeps_float32_weights(photos, tmp_path):
    """The GPU's mixed precision, exercised on the CPU (torch.autocast supports bf16 there too)."""
    (path,) = train(tiny_cfg(photos, tmp_path, steps=[3, 3, 3], precision="bf16"), log=lambda *_: None)
    tensors = load_file(str(path))
    assert all(t.dtype == torch.float32 for t in tensors.values())
    assert tensors["ending.weight"].abs().sum() > 0 and all(torch.isfinite(t).all() for t in tensors.values())
    assert weights.read_metadata(path)["training"]["bf16"] is True


def test_the_pairwise_term_fades_over_the_fraction_asked():
    """pairs_fade 0.5: the pairwise term is gone past the middle of a stage; 0: it stays the whole stage,
    with the same weight as at the start."""
    g = torch.Generator().manual_seed(0)
    pred, gt = torch.rand(2, 7, 3, 8, 8, generator=g), torch.rand(2, 7, 3, 8, 8, generator=g)
    clean = gt.mean(1)
    faded = TrainConfig(data="d", out="o")
    kept = TrainConfig(data="d", out="o", pairs_fade=0.0)
    start, start_parts = staged_loss(pred, gt, clean, 3, faded, 0.0)
    late, late_parts = staged_loss(pred, gt, clean, 3, faded, 0.75)
    assert "pairs" in start_parts and "pairs" not in late_parts and late < start
    kept_late, kept_parts = staged_loss(pred, gt, clean, 3, kept, 0.75)
    assert kept_parts["pairs"] == start_parts["pairs"] and torch.isclose(kept_late, start)


def test_a_resume_never_goes_back_to_a_stage_before_its_checkpoint(photos, tmp_path):
    """A run started at stage 3 from other weights (--init) and resumed as "all" (the stages before have
    no files in its folder) goes on with stage 3 from its checkpoint: it does not train stage 1 anew, nor
    write a stage-1 checkpoint over the stage-3 one."""
    (start,) = train(tiny_cfg(photos, tmp_path / "first", steps=[2]), log=lambda *_: None)
    run = tmp_path / "run"

    def interrupt_at_step_2(line):
        if line.startswith("stage 3 step 2/"):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C there: the step ends, its checkpoint is written

    with pytest.raises(Stopped, match="stopped at stage 3 step 2; checkpoint written"):
        train(tiny_cfg(photos, run, stage="3", steps=[4, 4, 4], init=str(start)), log=interrupt_at_step_2)
    lines = []
    paths = train(tiny_cfg(photos, run, stage="all", steps=[4, 4, 4], resume=True, init="stage3"),
                  log=lines.append)
    assert any("resuming stage 3 at step 2" in line for line in lines), lines
    assert any(f"--init stage3 not used: the run goes on from its checkpoint (it started from {start})" in line
               for line in lines), lines
    assert json.loads((run / "config.json").read_text())["init"] == str(start)  # how the run began
    assert not any(line.startswith(("stage 1", "stage 2")) for line in lines), lines
    assert [p.name for p in paths] == ["stage3.safetensors"]
    assert not (run / "stage1.safetensors").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=False)["stage"] == 4  # past stage 3: finished
