"""One network with the staged curriculum, or cascaded stage networks fine-tuned together?

DESIGN.md: "Which of the two wins is decided by the validation numbers at the same CPU time per image,
and recorded." This script measures it at small scale:

- single:  the shipped design, one `Blur2Clip` of --width predicting all 7 frames (train.py's curriculum).
- cascade: three small U-Nets built from the same pieces. Net 1 sees the blurred photo and predicts the
  middle frame; net 2 sees blurred + middle and predicts frames 3 and 5; net 3 sees blurred + frames
  3, 4, 5 and predicts frames 1, 2, 6, 7. Every net predicts residuals on the blurred photo. Before its
  stage a net is not run and its frames are copies of the input; in stage s nets 1..s train jointly on
  the stage-s loss (gradients flow through the whole chain), the same rule as the curriculum.

The cascade's width is the one whose CPU time for a 1280x720 photo (whole image, no_grad, channels_last,
fp32, 2 threads, median after a warm-up, timed interleaved with the single network) is closest to the
single network's. Both variants then train in lockstep on the very same batches (the stream train.py
would read: SyntheticBlur seeded seed*1000+stage, sample i at step i // batch) with train.py's optimizer,
schedule, clipping and loss, 1 thread, and are scored after every stage on the cached validation set.

Run from the repository root, niced on a shared machine:
    nice -n 5 env OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python training/compare.py \
        --width 8 --crop 96 --batch 8 --steps 200,200,400
Results (timings, per-stage figures) also go to runs/compare-w{width}-c{crop}/results.json. To measure a
fixed commit while the tree is being edited, put an export of it first:
    git archive HEAD blur2clip | tar -x -C /tmp/b2c && PYTHONPATH=/tmp/b2c ... training/compare.py ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # appended: a blur2clip snapshot on PYTHONPATH (e.g. `git archive HEAD`) wins

from blur2clip.data import SyntheticBlur, list_photos, split_photos  # noqa: E402
from blur2clip.model import Blur2Clip, ModelConfig, count_macs, count_parameters, stage_frames  # noqa: E402
from blur2clip.synth import SynthConfig  # noqa: E402
from blur2clip.losses import staged_loss  # noqa: E402
from blur2clip.train import TrainConfig, _lr, baseline, validate  # noqa: E402

FRAMES = 7
KEYS = ("ppsnr", "middle", "outer", "reblur")


# ---------------------------------------------------------------- the cascade

class StageNet(Blur2Clip):
    """A Blur2Clip trunk whose intro takes `inputs` images (3 channels each) and whose head predicts
    `outputs` frames as residuals on a given base image."""

    def __init__(self, width: int, inputs: int, outputs: int, like: ModelConfig):
        super().__init__(ModelConfig(width=width, enc_blocks=list(like.enc_blocks),
                                     middle_blocks=like.middle_blocks, dec_blocks=list(like.dec_blocks),
                                     frames=outputs))
        self.intro = nn.Conv2d(3 * inputs, width, 3, padding=1)  # the head stays zero: output = base at start

    def forward(self, inp, base):  # inp: Bx(3k)xHxW, base: Bx3xHxW -> BxOx3xHxW
        b, _, h, w = inp.shape
        m = self.config.multiple
        ph, pw = (-h) % m, (-w) % m
        f = self.intro(F.pad(inp, (0, pw, 0, ph), mode="replicate") if ph or pw else inp)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            f = enc(f)
            skips.append(f)
            f = down(f)
        f = self.middle(f)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            f = dec(up(f) + skip)
        r = self.ending(f)[:, :, :h, :w]
        return base.unsqueeze(1) + r.view(b, self.config.frames, 3, h, w)


class Cascade(nn.Module):
    """Bx3xHxW -> Bx7x3xHxW in frame order, like Blur2Clip; `stage` says how many nets run."""

    def __init__(self, width: int, like: ModelConfig | None = None):
        super().__init__()
        like = like or ModelConfig()
        self.nets = nn.ModuleList([StageNet(width, 1, 1, like),    # blurred -> frame 4
                                   StageNet(width, 2, 2, like),    # blurred, 4 -> frames 3, 5
                                   StageNet(width, 4, 4, like)])   # blurred, 3, 4, 5 -> frames 1, 2, 6, 7
        self.width, self.stage = width, 3

    def forward(self, x):
        mid = self.nets[0](x, x)[:, 0]
        f3 = f5 = x
        if self.stage >= 2:
            o = self.nets[1](torch.cat([x, mid], 1), x)
            f3, f5 = o[:, 0], o[:, 1]
        f1 = f2 = f6 = f7 = x
        if self.stage >= 3:
            o = self.nets[2](torch.cat([x, f3, mid, f5], 1), x)
            f1, f2, f6, f7 = o.unbind(1)
        return torch.stack([f1, f2, f3, mid, f5, f6, f7], 1)

    def stage_parameters(self, stage: int):
        return [p for net in self.nets[:stage] for p in net.parameters()]


# ---------------------------------------------------------------- timing

def time_models(models: dict, rounds: int, threads: int = 2, h: int = 720, w: int = 1280) -> dict:
    """Wall and CPU seconds (median) of one whole-image forward per model, interleaved round by round
    with the order rotated each round, after one warm-up run each."""
    torch.set_num_threads(threads)
    x = torch.rand(1, 3, h, w).contiguous(memory_format=torch.channels_last)
    names = list(models)
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    with torch.no_grad():
        for n in names:
            models[n].eval()(x)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                t0, c0 = time.perf_counter(), time.process_time()
                models[n](x)
                wall[n].append(time.perf_counter() - t0)
                cpu[n].append(time.process_time() - c0)
    return {n: {"wall": statistics.median(wall[n]), "cpu": statistics.median(cpu[n]),
                "wall_runs": wall[n], "cpu_runs": cpu[n]} for n in names}


def pick_cascade_width(single: Blur2Clip, cfg: ModelConfig, rounds: int, log) -> tuple[int, dict]:
    """The cascade width whose measured CPU time at 1280x720 is closest to the single network's.
    Candidates: the widths with 0.25x to 1.45x the single's convolution MACs (counted at 256x144, the same
    ratios as at 1280x720 up to the tiny 1x1 attention convolutions); the range is wide on the low side
    because three thin nets pay more per MAC (more layers, norms and memory passes) than one wide net."""
    ref = count_macs(single, 144, 256)
    cands = []
    for cw in range(2, cfg.width + 1):
        ratio = count_macs(Cascade(cw, cfg), 144, 256) / ref
        if 0.25 <= ratio <= 1.45:
            cands.append(cw)
        log(f"  cascade width {cw}: {ratio:.2f}x the single network's MACs")
    models = {"single": single, **{f"cascade{cw}": Cascade(cw, cfg) for cw in cands}}
    t = time_models(models, rounds)
    for n, v in t.items():
        log(f"  {n}: wall {v['wall']:.3f} s, cpu {v['cpu']:.3f} s (2 threads, medians of {rounds})")
    best = min(cands, key=lambda cw: abs(t[f"cascade{cw}"]["cpu"] / t["single"]["cpu"] - 1))
    return best, t


# ---------------------------------------------------------------- training

def table(name: str, rows: list[tuple[str, dict]], base: dict) -> str:
    out = [f"**{name}**", "", "| weights | pPSNR | middle | outer | reblur |", "|---|---|---|---|---|",
           "| blurred input | " + " | ".join(f"{base[k]:.2f}" for k in KEYS[:3]) + " | (100) |"]
    for label, v in rows:
        out.append(f"| {label} | " + " | ".join(f"{v[k]:.2f} ({v[k] - base[k]:+.2f})" for k in KEYS[:3])
                   + f" | {v['reblur']:.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=8, help="width of the single network")
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", default="200,200,400", help="steps of stages 1,2,3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cascade-width", type=int, default=0, help="skip the width search and use this width")
    ap.add_argument("--rounds", type=int, default=7, help="timing rounds (interleaved)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "photos"))
    ap.add_argument("--val", default=str(ROOT / "runs" / "w16" / "validation.safetensors"))
    ap.add_argument("--out", default="", help="results folder (default runs/compare-w{width}-c{crop})")
    args = ap.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    out = Path(args.out or ROOT / "runs" / f"compare-w{args.width}-c{args.crop}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:7.0f} s] {msg}", flush=True)

    from safetensors.torch import load_file

    mcfg = ModelConfig(width=args.width, frames=FRAMES)
    tcfg = TrainConfig(data=args.data, out=str(out), steps=steps, batch=args.batch, crop=args.crop, seed=args.seed)

    # Both variants start from the same seed, as train.py seeds stage 1.
    torch.manual_seed(args.seed)
    single = Blur2Clip(mcfg)
    import blur2clip

    log(f"blur2clip from {Path(blur2clip.__file__).parent}")
    log(f"single: width {args.width}, {count_parameters(single) / 1e6:.3f} M parameters, "
        f"{count_macs(single) / 1e9:.2f} GMAC at 1280x720")
    if args.cascade_width:
        cw, timing = args.cascade_width, time_models(
            {"single": single, f"cascade{args.cascade_width}": Cascade(args.cascade_width, mcfg)}, args.rounds)
    else:
        cw, timing = pick_cascade_width(single, mcfg, args.rounds, log)
    ts, tc = timing["single"], timing[f"cascade{cw}"]
    torch.manual_seed(args.seed)
    cascade = Cascade(cw, mcfg)
    log(f"cascade: width {cw}, {count_parameters(cascade) / 1e6:.3f} M parameters, "
        f"{count_macs(cascade) / 1e9:.2f} GMAC at 1280x720")
    log(f"1280x720 whole image, 2 threads, medians of {args.rounds} interleaved runs: single {ts['wall']:.3f} s wall "
        f"/ {ts['cpu']:.3f} s cpu, cascade {tc['wall']:.3f} s wall / {tc['cpu']:.3f} s cpu; cascade/single: "
        f"wall {tc['wall'] / ts['wall']:.3f}, cpu {tc['cpu'] / ts['cpu']:.3f}")

    torch.set_num_threads(args.threads)
    val = load_file(args.val)
    base = baseline(val)
    train_photos, _ = split_photos(list_photos(args.data))
    variants = {"single": single, "cascade": cascade}
    for m in variants.values():
        m.to(memory_format=torch.channels_last).train()
    results = {n: [] for n in variants}
    for stage in (1, 2, 3):
        total = steps[stage - 1]
        cascade.stage = stage
        params = {"single": list(single.parameters()), "cascade": cascade.stage_parameters(stage)}
        opts = {n: torch.optim.AdamW(params[n], lr=tcfg.lr, weight_decay=tcfg.weight_decay, betas=(0.9, 0.9))
                for n in variants}
        ds = SyntheticBlur(train_photos, SynthConfig(size=args.crop, frames=FRAMES), seed=args.seed * 1000 + stage)
        log(f"stage {stage}: frames {[i + 1 for i in stage_frames(stage, FRAMES)]}, {total} steps; trained "
            f"parameters single {sum(p.numel() for p in params['single']) / 1e6:.3f} M, "
            f"cascade {sum(p.numel() for p in params['cascade']) / 1e6:.3f} M")
        secs = {n: 0.0 for n in variants}
        for step in range(total):
            items = [ds[step * args.batch + k] for k in range(args.batch)]
            blurred = torch.stack([b for b, _, _ in items]).contiguous(memory_format=torch.channels_last)
            frames = torch.stack([f for _, f, _ in items])
            clean = torch.stack([c for _, _, c in items])
            lr = _lr(step, total, tcfg)
            losses = {}
            for n, model in variants.items():
                t0 = time.process_time()
                for g in opts[n].param_groups:
                    g["lr"] = lr
                loss, _ = staged_loss(model(blurred), frames, clean, stage, tcfg, step / total)
                opts[n].zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params[n], 0.5)
                opts[n].step()
                secs[n] += time.process_time() - t0
                losses[n] = loss.item()
            if (step + 1) % 20 == 0 or step + 1 == total:
                log(f"stage {stage} step {step + 1}/{total} loss single {losses['single']:.4f} cascade "
                    f"{losses['cascade']:.4f}; cpu s/step single {secs['single'] / (step + 1):.3f} "
                    f"cascade {secs['cascade'] / (step + 1):.3f}")
        for n, model in variants.items():
            v = validate(model, val)
            results[n].append(v)
            log(f"  val {n} stage {stage}: " + "  ".join(f"{k} {v[k]:.2f} ({v[k] - base[k]:+.2f})" for k in KEYS))
        (out / "results.json").write_text(json.dumps(dict(
            args=vars(args), cascade_width=cw, timing=timing, baseline=base, stages_done=stage, results=results,
            params={n: count_parameters(m) for n, m in variants.items()},
            macs={n: count_macs(m) for n, m in variants.items()} if stage == 3 else None), indent=1))
    cascade.stage = 3

    print()
    print(f"Scale: single width {args.width} vs cascade width {cw}; crop {args.crop}, batch {args.batch}, "
          f"steps {args.steps}, seed {args.seed}; validation {args.val} ({len(val['blurred'])} x 256 px).")
    print(f"1280x720 (whole image, 2 threads, fp32, channels_last; median of {args.rounds}): single "
          f"{ts['wall']:.3f} s wall / {ts['cpu']:.3f} s cpu, cascade {tc['wall']:.3f} s wall / {tc['cpu']:.3f} s "
          f"cpu; ratio cascade/single wall {tc['wall'] / ts['wall']:.3f}, cpu {tc['cpu'] / ts['cpu']:.3f}.")
    for n in variants:
        label = f"single (width {args.width})" if n == "single" else f"cascade (3 nets of width {cw})"
        print()
        print(table(label, [(f"stage {s}", v) for s, v in enumerate(results[n], 1)], base))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
