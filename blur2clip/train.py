"""Staged training: stage 1 the middle frame, stage 2 adds its neighbours, stage 3 all frames.

One network learns all stages (a curriculum): each stage starts from the previous stage's weights and
keeps training the frames learned before, so errors of an early stage can still be corrected. Every stage
ends in its own weights file (`stageN.safetensors` in the output folder).

The data is any layout of `data.open_data` (photos with synthetic motion, frame sequences, GoPro_Large,
blurred/sharp pairs, videos); GoPro_Large and pairs know only the middle frame, so they train stage 1 alone. A checkpoint (model,
optimizer, stage, step, RNG state, data position; the learning rate is a function of the step) is written
atomically every `ckpt_every` steps and when the process is stopped (SIGTERM, Ctrl-C); `resume=True`
continues from it. The data stream is a pure function of (seed, sample index), so a resumed run reads
what it would have read. The settings (`runconfig.TrainConfig`) are written to config.json in the run
folder at the start; `log.jsonl`, `curves.png` and, when asked, TensorBoard events follow the run
(`logbook`).

On CUDA the forward pass runs under bf16 autocast (precision "auto"); the weights stay float32.

Run from Python (`train(TrainConfig(...))`), as `blur2clip train ...`, or under torchrun as
`torchrun --nproc_per_node N -m blur2clip train ...` (same options).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path

import torch

from . import device as devices
from . import metrics, runconfig, runfolder, weights
from .data import StreamSampler, open_data
from .errors import DeviceError, SettingsError
from .files import atomic_path
from .loader import data_loader, shut_down
from .logbook import Logbook
from .losses import staged_loss
from .model import Blur2Clip, ModelConfig, count_parameters, stage_frames, with_frames, with_travel_head
from .runconfig import TrainConfig  # noqa: F401 -- the training API: train(TrainConfig(...))


# ---------------------------------------------------------------- validation

@torch.no_grad()
def validate(model, val: dict, batch: int = 8) -> dict[str, float]:
    model.eval()
    meter = metrics.Meter()
    device = next(model.parameters()).device
    for s in range(0, len(val["blurred"]), batch):
        b, f = val["blurred"][s:s + batch].to(device), val["frames"][s:s + batch].to(device)
        meter.add(metrics.score(model(b).float(), f, b), len(b))
    model.train()
    return meter.mean()


def baseline(val: dict) -> dict[str, float]:
    """The figures of the blurred input copied to every frame, where they have a meaning (not reblur)."""
    base = metrics.baseline(val["frames"], val["blurred"])
    return {k: v for k, v in base.items() if k not in metrics.NO_BASELINE}


# ---------------------------------------------------------------- the loop


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _diverged(stage: int, step: int, out: Path) -> SettingsError:
    kept = "the weights of the last checkpoint are kept" if (out / "checkpoint.pt").is_file() else \
        "no checkpoint was written"
    return SettingsError(f"stage {stage} step {step}: the loss or the weights are not numbers, training diverged "
                         f"(try a lower --lr); {kept}")

class Stopped(Exception):
    """Raised after a checkpoint was written because the process was asked to stop (terminated: by
    SIGTERM, else by Ctrl-C); done: the stage files the run had finished before."""

    def __init__(self, message: str, terminated: bool = False):
        super().__init__(message)
        self.terminated = terminated
        self.done: list[Path] = []


def _lr(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


class Average:
    """An exponential moving average of a model's weights (decay per step, warmed up over the first steps
    so that early weights fade fast); `model` is the averaged copy that validates and ships."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0):
        import copy

        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, updates

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for a, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if a.dtype.is_floating_point:
                a.lerp_(p.detach(), 1 - d)

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}


def _quiet(*_) -> None:
    """The log of a process that is not the first under torchrun."""


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class Trainer:
    def __init__(self, cfg: TrainConfig, log=print):
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        if cfg.batch % self.world:
            raise SettingsError(f"batch {cfg.batch} does not divide among {self.world} processes: give a multiple "
                                f"of {self.world}")
        self.stop_requested = 0  # the signal that asked the run to stop, once one has
        self.last_val: dict = {}
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = devices.pick(cfg.device)
        self.bf16 = devices.train_bf16(cfg.precision, self.device)
        if cfg.synth_device == "cuda" and self.device.type != "cuda":
            raise DeviceError(f"synth_device cuda renders the samples on the training GPU, but this run trains on "
                              f"{self.device.type}: train on a GPU or use synth_device cpu")
        self.data = open_data(cfg.data, cfg.layout, cfg.frames_per_blur, cfg.model.frames)
        if self.data.layout == "clips":
            raise ValueError(f"{cfg.data}: the clips layout is for evaluation only; train on photos, sequences "
                             "or videos")
        if not self.data.train:
            raise ValueError(f"{cfg.data}: nothing left to train on: its one {self.data.layout.rstrip('s')} is held "
                             f"out for validation; add more")
        self.data.check_crop(cfg.crop)
        if self.data.middle_only and cfg.stage not in ("1", "all"):
            raise SettingsError(f"{cfg.data}: this layout ({self.data.layout}) knows only the middle frame, so "
                                f"it trains stage 1, not stage {cfg.stage}")
        if self.main:  # the first process checks the run folder, then writes into it
            runfolder.check_out(cfg)
        self.ckpt = None
        if cfg.resume and (self.out / "checkpoint.pt").is_file():
            self.ckpt = runfolder.load_checkpoint(self.out / "checkpoint.pt")
            layout = self.ckpt.get("data", {}).get("layout", "photos")
            if layout != self.data.layout:
                raise ValueError(f"{self.out / 'checkpoint.pt'}: written while training on {layout} data, "
                                 f"but {cfg.data} is {self.data.layout}")
        cfg = self.cfg = runfolder.trained_network(cfg, self.ckpt is not None, self.log if self.main else _quiet)
        if self.main:
            runconfig.record(cfg, self.out, self.log, checkpoint=self.ckpt is not None)
        self.book = Logbook(self.out, cfg.tensorboard and self.main, self.log)
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.started = time.time()
        if self.main:  # only the first process validates, logs and writes files
            for line in self.data.summary():
                self.log(line)
            if self.data.middle_only:
                self.log("  only the middle frame is known: training stage 1 only")
            self.out.mkdir(parents=True, exist_ok=True)
            self.val = self.data.validation(self.out / "validation.safetensors", cfg.val_count, cfg.val_size)
            self.base = baseline(self.val)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def stopping(self):
        """The signal that asked this run to stop (0: none), agreed by every process of a torchrun run: the
        first to be asked stops them all at the same step, and the first process writes the checkpoint."""
        if self.world == 1:
            return self.stop_requested
        flag = torch.tensor([int(self.stop_requested)], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def stages(self) -> list[int]:
        if self.data.middle_only:
            return [1]
        return [1, 2, 3] if self.cfg.stage == "all" else [int(self.cfg.stage)]

    def stage_steps(self, stage: int) -> int:
        return self.cfg.steps[min(stage, len(self.cfg.steps)) - 1]

    def stage_path(self, stage: int) -> Path:
        return self.out / f"stage{stage}.safetensors"

    def run(self) -> list[Path]:
        ckpt = self.ckpt
        if ckpt and self.main:
            if ckpt["stage"] > self.stages()[-1]:
                self.log(f"the run is finished (stage {self.stages()[-1]} done): nothing to resume")
            else:
                self.log(f"resuming stage {ckpt['stage']} at step {ckpt['step']}")
        # SIGTERM, and Ctrl-C, ask the loop to stop after the step it is in: its checkpoint is then exact (a
        # step stopped half-way, or an average half-updated, would resume elsewhere than a run never stopped).
        # A second Ctrl-C stops at once, keeping the last checkpoint written.
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def stop(sig, frame):
            if sig == signal.SIGINT and self.stop_requested:
                raise KeyboardInterrupt
            if sig == signal.SIGINT and self.main:  # a step (or a validation) may take a while: say so
                os.write(2, b"stopping after this step, with a checkpoint (Ctrl-C again: at once, without)\n")
            self.stop_requested = sig

        for sig in old:
            signal.signal(sig, stop)
        done = []
        try:
            for stage in self.stages():
                if ckpt and stage < ckpt["stage"]:  # done, or never part of this run (it started later)
                    if self.stage_path(stage).is_file():
                        done.append(self.stage_path(stage))
                    continue
                mine = ckpt if ckpt and ckpt["stage"] == stage and ckpt["step"] > 0 else None
                done.append(self.run_stage(stage, mine))
        except Stopped as e:
            e.done = done
            raise
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            self.book.close()
        return done

    def initial_model(self, stage: int) -> Blur2Clip:
        """Weights a stage starts from: --init (a name, file or URL) for the run's first stage, else the
        previous stage's file."""
        cfg = self.cfg
        if cfg.init and stage == self.stages()[0]:  # its frame count follows this run's (head interpolated)
            model = weights.load_model(cfg.init)
            if model.config.head != cfg.model.head:
                if cfg.model.head != "travel":
                    raise ValueError(f"{cfg.init}: a {model.config.head} head cannot become a {cfg.model.head} head")
                if self.main:
                    self.log(f"  {cfg.init}: given the travel head (its middle frame's weights kept)")
                model = with_travel_head(model)
            if model.config.frames != cfg.model.frames and self.main:
                how = "the head's weights interpolated in time" if model.config.head == "frames" else "rendered"
                self.log(f"  {cfg.init}: {model.config.frames} frames, adapted to {cfg.model.frames} ({how})")
            return with_frames(model, cfg.model.frames).train()
        if stage == 1:
            torch.manual_seed(cfg.seed)
            return Blur2Clip(cfg.model)
        previous = self.stage_path(stage - 1)
        if not previous.is_file():
            raise FileNotFoundError(f"{previous}: stage {stage} starts from this file; train stage {stage - 1} "
                                    f"first or pass --init")
        return weights.load_model(previous).train()

    def run_stage(self, stage: int, ckpt: dict | None) -> Path:
        cfg = self.cfg
        total = self.stage_steps(stage)
        model = self.initial_model(stage) if ckpt is None else Blur2Clip(ModelConfig.from_dict(ckpt["config"]))
        model.config.stage = stage
        model = devices.channels_last_for_training(model.to(self.device)).train()
        net = model
        if self.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device] if self.device.type == "cuda" else None)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.9))
        step = 0
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            step = ckpt["step"]
            torch.set_rng_state(ckpt["torch_rng"])
            if self.device.type == "cuda" and "cuda_rng" in ckpt:
                torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
        if self.main:
            self.log(f"stage {stage}: frames {[i + 1 for i in stage_frames(stage, model.config.frames)]}, "
                     f"{count_parameters(model) / 1e6:.2f} M parameters, steps {step}->{total}, "
                     f"{self.device}{' bf16' if self.bf16 else ''}"
                     + (f", {self.world} processes" if self.world > 1 else ""))
        self.ema = Average(model, cfg.ema) if cfg.ema > 0 else None
        if self.ema and ckpt is not None and "ema" in ckpt:
            self.ema.model.load_state_dict(ckpt["ema"]["model"])
            self.ema.updates = ckpt["ema"]["updates"]
        self.best = (ckpt or {}).get("best")
        per_rank = cfg.batch // self.world  # the global batch stays equal to the single-process one
        # Where the stage's data stream stands (samples read by all processes together): from the
        # checkpoint, so a run resumed with another batch size or process count reads on, not again.
        step0, start = step, (ckpt or {}).get("data", {}).get("position", step * per_rank * self.world)
        rendering = str(self.device) if cfg.synth_device == "cuda" else "cpu"  # the workers on the training GPU
        loader = data_loader(
            self.data.train_set(cfg.crop, seed=cfg.seed * 1000 + stage, synth=cfg.synth, device=rendering),
            per_rank, StreamSampler(start // self.world, self.rank, self.world), cfg.workers, rendering,
            pin_memory=self.device.type == "cuda", prefetch=4)
        it = iter(loader)
        t0, seen = time.time(), 0
        try:
            while step < total:
                blurred, frames, clean, true_travel = (t.to(self.device, non_blocking=True) for t in next(it))
                blurred = blurred.contiguous(memory_format=torch.channels_last)
                for g in opt.param_groups:
                    g["lr"] = _lr(step, total, cfg)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    pred, travel = net(blurred, with_travel=True)
                loss, parts = staged_loss(pred, frames, clean, stage, cfg, step / total, travel, true_travel,
                                          compiled=cfg.compile)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # the same on every process
                if not torch.isfinite(norm):  # before the step: the weights and the last checkpoint stay good
                    raise _diverged(stage, step + 1, self.out)
                opt.step()
                if self.ema:
                    self.ema.update(model)
                step += 1
                seen += 1
                if self.main and step % cfg.log_every == 0:
                    self.progress(stage, step, total, loss.item(), (time.time() - t0) / seen,
                                  opt.param_groups[0]["lr"], parts)
                stopping = self.stopping()
                if (step % cfg.ckpt_every == 0 or stopping or step == total) and not _finite(model):
                    raise _diverged(stage, step, self.out)  # a step too large: never written over a good checkpoint
                if step % cfg.ckpt_every == 0 or stopping:
                    self.checkpoint(model, opt, stage, step, start + (step - step0) * per_rank * self.world)
                if stopping:
                    raise Stopped(f"stopped at stage {stage} step {step}; checkpoint written",
                                  terminated=stopping == signal.SIGTERM)
                if self.main and (step % cfg.val_every == 0 or step == total):
                    self.validate_and_keep_best(model, stage, step)
        finally:
            shut_down(it)
        if self.main:
            path = weights.save(self.shipped(model), self.stage_path(stage), training=self.facts(stage, total))
            digest = weights.sha256(path)
            Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
            self.checkpoint(model, opt, stage + 1, 0, 0, with_optimizer=False)
            self.log(f"stage {stage} done: {path} (sha256 {digest[:16]}…)")
        if self.world > 1:
            torch.distributed.barrier()  # the next stage starts from the file just written
        return self.stage_path(stage)

    def facts(self, stage: int, steps: int) -> dict:
        """Training metadata stored in each stage file: the run's settings as config.json holds them, the data,
        the last validation and its baseline, where and how long it trained."""
        return dict(stage=stage, steps=steps, config=runconfig.to_dict(self.cfg), data=self.data.summary(),
                    validation=self.last_val, baseline=self.base, device=str(self.device), processes=self.world,
                    bf16=self.bf16, torch=torch.__version__, hours=round((time.time() - self.started) / 3600, 3))

    def x(self, stage: int, step: int) -> int:
        """The step counted over the run's stages one after another (TensorBoard's step)."""
        return sum(self.stage_steps(s) for s in self.stages() if s < stage) + step

    def progress(self, stage: int, step: int, total: int, loss: float, rate: float, lr: float, parts: dict):
        later = sum(self.stage_steps(s) for s in self.stages() if s > stage)
        self.book.write(dict(stage=stage, step=step, loss=loss, lr=lr, sec_per_step=rate, **parts),
                        self.x(stage, step))
        key = "ppsnr" if "ppsnr" in self.last_val else "middle"
        val = (f", val {key} {self.last_val[key]:.2f} ({self.last_val[key] - self.base[key]:+.2f})"
               if self.last_val else "")
        eta = (total - step) * rate / 60
        self.log(f"stage {stage} step {step}/{total} loss {loss:.4f}{val}, {rate:.2f} s/step, eta {eta:.0f} min"
                 + (f" (all stages {eta + later * rate / 60:.0f} min)" if later else ""))
        if step // self.cfg.log_every % 5 == 1:  # the first line, then every fifth
            self.book.draw()

    def shipped(self, model):
        """What validates and what a stage file holds: the averaged weights when there are any."""
        return self.ema.model if self.ema else model

    def validate_and_keep_best(self, model, stage: int, step: int) -> None:
        shipped = self.shipped(model)
        v = validate(shipped, self.val)
        self.last_val = v
        self.book.write(dict(stage=stage, step=step, val=v, baseline=self.base), self.x(stage, step))
        if self.book.writer is not None:
            b = self.val["blurred"][:3].to(self.device)
            with torch.no_grad():
                pred = shipped.eval()(b)
            model.train()
            self.book.samples(b, pred, self.val["frames"][:3], self.x(stage, step))
        key = "ppsnr" if "ppsnr" in v else "middle"
        if stage == self.stages()[-1] and (self.best is None or v[key] > self.best[key]):
            self.best = {key: v[key], "step": step}
            weights.save(shipped, self.out / "best.safetensors",
                         training={**self.facts(stage, step), "best": self.best})
        self.log("  val " + "  ".join(f"{k} {v[k]:{'.3f' if 'ssim' in k else '.2f'}}"
                                      + (f" ({v[k] - self.base[k]:+{'.3f' if 'ssim' in k else '.2f'}})"
                                         if k in self.base else "") for k in v)
                 + "  (in brackets: gain over the blurred input)")
        self.book.draw()

    def checkpoint(self, model, opt, stage: int, step: int, position: int, with_optimizer: bool = True) -> None:
        """position: samples of the stage's data stream consumed (by all processes together)."""
        if not self.main:
            return
        state = {"config": model.config.to_dict(), "model": model.state_dict(),
                 "optimizer": opt.state_dict() if with_optimizer else {}, "stage": stage, "step": step,
                 "ema": self.ema.state() if self.ema and with_optimizer else {}, "best": self.best,
                 "torch_rng": torch.get_rng_state(),
                 "data": {"layout": self.data.layout, "seed": self.cfg.seed * 1000 + stage, "position": position}}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        _atomic_save(state, self.out / "checkpoint.pt")


def train(cfg: TrainConfig, log=print) -> list[Path]:
    """Run the stages `cfg.stage` asks for; returns the stage weights files written."""
    return Trainer(cfg, log).run()


if __name__ == "__main__":  # torchrun -m blur2clip.train ...: the command line's `train`, as `-m blur2clip train`
    import runpy

    sys.argv[1:1] = ["train"]
    runpy.run_module("blur2clip", run_name="__main__", alter_sys=True)
