"""Staged training: stage 1 the middle frame, stage 2 adds its neighbours, stage 3 all frames.

One network learns all stages (a curriculum): each stage starts from the previous stage's weights and
keeps training the frames learned before, so errors of an early stage can still be corrected. Every stage
ends in its own weights file (`stageN.safetensors` in the output folder).

A checkpoint (model, optimizer, schedule, stage, step, RNG state) is written atomically every
`ckpt_every` steps and when the process is stopped (SIGTERM, Ctrl-C); `resume=True` continues from it.
The data stream is a pure function of (seed, step), so a resumed run reads what it would have read.

Run from Python (`train(TrainConfig(...))`), as `blur2clip train ...`, or under torchrun as
`torchrun --nproc_per_node N -m blur2clip.train ...` (same options).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import metrics, weights
from .data import StreamSampler, SyntheticBlur, list_photos, load_or_make_validation, split_photos
from .model import Blur2Clip, ModelConfig, count_parameters, stage_frames
from .synth import SynthConfig, to_linear


@dataclass
class TrainConfig:
    data: str  # folder of sharp photos
    out: str  # run folder: checkpoint, stage weights, log, validation set
    stage: str = "all"  # "1", "2", "3" or "all"
    steps: list[int] = field(default_factory=lambda: [2000, 2000, 4000])  # per stage 1, 2, 3
    batch: int = 8
    crop: int = 192
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    w_middle: float = 2.0  # extra weight of the middle frame (plain deblurring lags most)
    w_pairs: float = 0.5  # order-invariant pairwise term, faded out over the first half of each stage
    w_reblur: float = 0.5  # frames must average back to the blur, in linear light (stage 3)
    ckpt_every: int = 200
    val_every: int = 500
    val_count: int = 48
    val_size: int = 256
    log_every: int = 20
    seed: int = 0
    workers: int = 1
    threads: int = 0  # torch threads in the main process (0: torch's default)
    init: str | None = None  # weights to start from instead of the previous stage's file
    resume: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)


# ---------------------------------------------------------------- losses

def charbonnier(a: torch.Tensor, b: torch.Tensor, dims) -> torch.Tensor:
    return torch.sqrt((a - b) ** 2 + 1e-6).mean(dim=dims)


def staged_loss(pred, gt, clean, stage: int, cfg: TrainConfig, progress: float):
    """Loss of BxFx3xHxW predictions at a stage; `progress` 0..1 through the stage. Returns (loss, parts)."""
    nf = gt.shape[1]
    active = stage_frames(stage, nf)
    w = torch.ones(nf)
    w[nf // 2] += cfg.w_middle
    w = w[active] / w[active].sum()  # weights over the active frames
    # Order-invariant reconstruction: per sample, the better of forward and reversed time.
    per_frame_f = charbonnier(pred[:, active], gt[:, active], dims=(2, 3, 4))  # B x A
    per_frame_r = charbonnier(pred[:, active], gt.flip(1)[:, active], dims=(2, 3, 4))
    rec = torch.minimum((per_frame_f * w).sum(1), (per_frame_r * w).sum(1)).mean()
    parts = {"rec": rec.item()}
    loss = rec
    # Pairwise terms: x_i + x_j and |x_i - x_j| for symmetric pairs j = F-1-i do not depend on the order.
    fade = max(0.0, 1 - 2 * progress)
    pairs = [(i, nf - 1 - i) for i in active if i < nf // 2]
    if cfg.w_pairs > 0 and fade > 0 and pairs:
        i, j = zip(*pairs)
        p_i, p_j, g_i, g_j = pred[:, list(i)], pred[:, list(j)], gt[:, list(i)], gt[:, list(j)]
        pair = F.l1_loss(p_i + p_j, g_i + g_j) + F.l1_loss((p_i - p_j).abs(), (g_i - g_j).abs())
        loss = loss + cfg.w_pairs * fade * pair
        parts["pairs"] = pair.item()
    if cfg.w_reblur > 0 and len(active) == nf:
        blur = to_linear(pred).mean(1)
        rb = F.l1_loss(blur, to_linear(clean))
        loss = loss + cfg.w_reblur * rb
        parts["reblur"] = rb.item()
    return loss, parts


# ---------------------------------------------------------------- validation

@torch.no_grad()
def validate(model, val: dict, batch: int = 8) -> dict[str, float]:
    model.eval()
    meter = metrics.Meter()
    for s in range(0, len(val["blurred"]), batch):
        b, f = val["blurred"][s:s + batch], val["frames"][s:s + batch]
        meter.add(metrics.evaluate(model(b), f, b), len(b))
    model.train()
    return meter.mean()


def baseline(val: dict) -> dict[str, float]:
    return metrics.baseline(val["frames"], val["blurred"])


# ---------------------------------------------------------------- the loop

class Stopped(Exception):
    """Raised after a checkpoint was written because the process was asked to stop."""


def _lr(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    def __init__(self, cfg: TrainConfig, log=print):
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.stop_requested = False
        self.last_val: dict = {}
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        photos = list_photos(cfg.data)
        self.train_photos, val_photos = split_photos(photos)
        if not self.train_photos or not val_photos:
            raise ValueError(f"{cfg.data}: need photos for both training and validation (found {len(photos)})")
        self.out.mkdir(parents=True, exist_ok=True)
        self.val = load_or_make_validation(val_photos, self.out / "validation.safetensors",
                                            cfg.val_count, cfg.val_size)
        self.base = baseline(self.val)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def stages(self) -> list[int]:
        return [1, 2, 3] if self.cfg.stage == "all" else [int(self.cfg.stage)]

    def stage_path(self, stage: int) -> Path:
        return self.out / f"stage{stage}.safetensors"

    def run(self) -> list[Path]:
        cfg = self.cfg
        ckpt = None
        if cfg.resume and (self.out / "checkpoint.pt").is_file():
            ckpt = torch.load(self.out / "checkpoint.pt", map_location="cpu", weights_only=True)
            self.log(f"resuming stage {ckpt['stage']} at step {ckpt['step']}")
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM,)}
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
        done = []
        try:
            for stage in self.stages():
                if ckpt and stage < ckpt["stage"] and self.stage_path(stage).is_file():
                    done.append(self.stage_path(stage))
                    continue
                mine = ckpt if ckpt and ckpt["stage"] == stage and ckpt["step"] > 0 else None
                done.append(self.run_stage(stage, mine))
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
        return done

    def initial_model(self, stage: int) -> Blur2Clip:
        """Weights a stage starts from: --init (a name, file or URL), else the previous stage's file."""
        cfg = self.cfg
        if cfg.init:
            return weights.load_model(cfg.init).train()
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
        total = cfg.steps[min(stage, len(cfg.steps)) - 1]
        model = self.initial_model(stage) if ckpt is None else Blur2Clip(ModelConfig.from_dict(ckpt["config"]))
        model.config.stage = stage
        model = model.to(memory_format=torch.channels_last).train()
        net = model
        if self.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.9))
        step = 0
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            step = ckpt["step"]
            torch.set_rng_state(ckpt["torch_rng"])
        if self.main:
            self.log(f"stage {stage}: frames {[i + 1 for i in stage_frames(stage, model.config.frames)]}, "
                     f"{count_parameters(model) / 1e6:.2f} M parameters, steps {step}->{total}")
        per_rank = max(1, cfg.batch // self.world)  # the global batch stays equal to the single-process one
        ds = SyntheticBlur(self.train_photos, SynthConfig(size=cfg.crop, frames=model.config.frames),
                           seed=cfg.seed * 1000 + stage)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=per_rank, sampler=StreamSampler(step * per_rank, self.rank, self.world),
            num_workers=cfg.workers, worker_init_fn=_worker_init, persistent_workers=False,
            prefetch_factor=4 if cfg.workers else None)
        it = iter(loader)
        t0, seen = time.time(), 0
        try:
            while step < total:
                blurred, frames, clean = next(it)
                blurred = blurred.contiguous(memory_format=torch.channels_last)
                for g in opt.param_groups:
                    g["lr"] = _lr(step, total, cfg)
                pred = net(blurred)
                loss, parts = staged_loss(pred, frames, clean, stage, cfg, step / total)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
                opt.step()
                step += 1
                seen += 1
                if self.main and step % cfg.log_every == 0:
                    rate = (time.time() - t0) / seen
                    self.write_log(dict(stage=stage, step=step, loss=loss.item(), lr=opt.param_groups[0]["lr"],
                                        sec_per_step=rate, **parts))
                    self.log(f"stage {stage} step {step}/{total} loss {loss.item():.4f} "
                             f"{rate:.2f} s/step, eta {(total - step) * rate / 60:.0f} min")
                if step % cfg.ckpt_every == 0 or self.stop_requested:
                    self.checkpoint(model, opt, stage, step)
                if self.stop_requested:
                    raise Stopped(f"stopped at stage {stage} step {step}; checkpoint written")
                if self.main and (step % cfg.val_every == 0 or step == total):
                    self.report(model, stage, step)
        except KeyboardInterrupt:
            self.checkpoint(model, opt, stage, step)
            raise
        finally:
            del it  # shuts the data workers down now; at interpreter exit they would be waited for forever
        if self.main:
            path = weights.save(model, self.stage_path(stage), training=self.facts(stage, total))
            self.checkpoint(model, opt, stage + 1, 0, with_optimizer=False)
            self.log(f"stage {stage} done: {path}")
        return self.stage_path(stage)

    def facts(self, stage: int, steps: int) -> dict:
        c = asdict(self.cfg)
        c.pop("model")
        return dict(stage=stage, steps=steps, config=c, validation=self.last_val, baseline=self.base)

    def report(self, model, stage: int, step: int) -> None:
        v = validate(model, self.val)
        self.last_val = v
        self.write_log(dict(stage=stage, step=step, val=v, baseline=self.base))
        self.log("  val " + "  ".join(f"{k} {v[k]:.2f} ({v[k] - self.base[k]:+.2f})" for k in v))

    def write_log(self, rec: dict) -> None:
        rec["time"] = time.time()
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    def checkpoint(self, model, opt, stage: int, step: int, with_optimizer: bool = True) -> None:
        if not self.main:
            return
        _atomic_save({"config": model.config.to_dict(), "model": model.state_dict(),
                      "optimizer": opt.state_dict() if with_optimizer else {}, "stage": stage, "step": step,
                      "torch_rng": torch.get_rng_state()}, self.out / "checkpoint.pt")


def _worker_init(_):
    torch.set_num_threads(1)
    # A stop signal sent to the whole process group is the main process's to handle: it writes the
    # checkpoint and then shuts the workers down itself.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def train(cfg: TrainConfig, log=print) -> list[Path]:
    """Run the stages `cfg.stage` asks for; returns the stage weights files written."""
    return Trainer(cfg, log).run()


if __name__ == "__main__":  # torchrun -m blur2clip.train ... takes the CLI's train options
    from .cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
