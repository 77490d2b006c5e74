"""`blur2clip train` and `plot`: weights trained and their curves drawn (train.py and plot.py do the
work; this parses and shows it). `eval` is in cli.py."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from .cli_options import DATA_HELP, LOSS, NETWORK, RUN, TRAINING, FramesPerBlur, Layout, Quiet, commands
from .report import ExitCode, Report, duration

@contextmanager
def data_errors():
    """A plain ValueError from reading a data folder, a run folder or a log becomes a DataError (exit code
    3): data.py, train.Trainer and plot.py say what is wrong with what they read as ValueError."""
    from .errors import Blur2ClipError, DataError

    try:
        yield
    except ValueError as e:
        if isinstance(e, Blur2ClipError):
            raise
        raise DataError(str(e)) from e


def _ints(value: str, option: str = "") -> list[int]:
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{value!r}: expected whole numbers separated by commas",
                                 param_hint=option or None) from None


def _steps(value: str) -> list[int]:
    steps = _ints(value, "--steps")
    if len(steps) not in (1, 3) or min(steps) < 1:
        raise typer.BadParameter(f"{value!r}: give N (every stage) or N1,N2,N3 (stages 1, 2, 3), all >= 1",
                                 param_hint="--steps")
    return steps * 3 if len(steps) == 1 else steps


def _ema(value: float) -> float:
    if value >= 1:
        raise typer.BadParameter(f"{value}: give a decay below 1 (0: no average)")
    return value


_MODEL_FLAGS = ("width", "enc_blocks", "middle_blocks", "dec_blocks", "frames", "head")


def _train_flags(ctx: typer.Context) -> dict:
    """The train options given on the command line (not their defaults), as TrainConfig's settings (the
    network's under "model"): what they override of a --config file and of TrainConfig's defaults."""
    flags, model = {}, {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)
        if name in ("config", "quiet") or source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        if name == "steps":
            value = _steps(value)
        elif name in ("enc_blocks", "dec_blocks"):
            value = _ints(value, "--" + name.replace("_", "-"))
        elif name in ("data", "out"):
            value = str(value)
        (model if name in _MODEL_FLAGS else flags)[name] = value
    if len(model.get("enc_blocks", [])) != len(model.get("dec_blocks", model.get("enc_blocks", []))):
        raise typer.BadParameter("give as many decoder levels as encoder levels", param_hint="--dec-blocks")
    if model:
        flags["model"] = model
    return flags


@commands.command("train", no_args_is_help=True)
def train_command(
    ctx: typer.Context,
    data: Annotated[Optional[Path], typer.Option(metavar="DIR", show_default=False, rich_help_panel=RUN,
                                                 help=DATA_HELP)] = None,
    out: Annotated[Optional[Path], typer.Option(
        metavar="DIR", show_default=False, rich_help_panel=RUN,
        help="Run folder: stageN.safetensors, checkpoint, config.json, log.jsonl, curves.png.")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", metavar="FILE", show_default=False, rich_help_panel=RUN,
        help="Settings from a TOML or JSON file (keys as these options, with underscores; the network's under "
             "\\[model], synthetic motion under \\[synth]), e.g. a run's own config.json; options given here "
             "override it.")] = None,
    stage: Annotated[Literal["1", "2", "3", "all"], typer.Option(
        rich_help_panel=RUN, help="1: the middle frame; 2: adds its neighbours; 3: all frames.")] = "all",
    steps: Annotated[str, typer.Option(metavar="N|N1,N2,N3", rich_help_panel=RUN,
                                       help="Steps per stage: one number for every stage, or one each.")]
    = "2000,2000,4000",
    resume: Annotated[bool, typer.Option("--resume", rich_help_panel=RUN,
                                         help="Continue from OUT's checkpoint.")] = False,
    layout: Layout = "auto",
    frames_per_blur: FramesPerBlur = 7,
    init: Annotated[Optional[str], typer.Option(
        metavar="WEIGHTS", show_default=False, rich_help_panel=RUN,
        help="Start from these weights instead of the previous stage's file.")] = None,
    workers: Annotated[int, typer.Option(min=0, rich_help_panel=RUN,
                                         help="Processes synthesizing samples (0: in the main process).")] = 1,
    threads: Annotated[int, typer.Option(min=0, rich_help_panel=RUN,
                                         help="Torch threads in the main process (0: torch's default).")] = 0,
    device: Annotated[str, typer.Option(
        rich_help_panel=RUN,
        help="auto: the process's CUDA GPU (LOCAL_RANK under torchrun) if any, else mps if any, else cpu.")]
    = "auto",
    synth_device: Annotated[Literal["cpu", "cuda"], typer.Option(
        rich_help_panel=RUN, help="Where synthetic motion is rendered: cpu (in the workers), or cuda (the "
                                  "training GPU, driven by the workers, which then keep only the random "
                                  "draws, resizing and JPEG).")]
    = "cpu",
    precision: Annotated[Literal["auto", "fp32", "bf16"], typer.Option(
        rich_help_panel=RUN, help="auto: bf16 autocast on a GPU, fp32 on the CPU.")] = "auto",
    compile: Annotated[bool, typer.Option(
        "--compile/--no-compile", rich_help_panel=RUN,
        help="Compute the loss through torch.compile: up to a minute of compiling at each start (needs a C++ "
             "compiler), then faster steps (on a CPU, half the time of the long run's step).")] = False,
    seed: Annotated[int, typer.Option(rich_help_panel=RUN)] = 0,
    ckpt_every: Annotated[int, typer.Option(min=1, metavar="N", rich_help_panel=RUN,
                                            help="Write the checkpoint every N steps.")] = 200,
    val_every: Annotated[int, typer.Option(min=1, metavar="N", rich_help_panel=RUN,
                                           help="Validate every N steps (and at the end of a stage).")] = 500,
    val_count: Annotated[int, typer.Option(min=1, metavar="N", rich_help_panel=RUN,
                                           help="Samples in the validation set (made once per run).")] = 48,
    val_size: Annotated[int, typer.Option(min=16, metavar="PX", rich_help_panel=RUN,
                                          help="Side of the validation samples.")] = 256,
    log_every: Annotated[int, typer.Option(min=1, metavar="N", rich_help_panel=RUN)] = 20,
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard/--no-tensorboard", rich_help_panel=RUN,
        help="Also log to TensorBoard in OUT/tensorboard: the scalars of log.jsonl and a few validation "
             "samples (pip install \"blur2clip\\[tensorboard]\").")] = False,
    batch: Annotated[int, typer.Option(min=1, rich_help_panel=TRAINING,
                                       help="Samples per step (split over torchrun's processes).")] = 8,
    crop: Annotated[int, typer.Option(min=16, metavar="PX", rich_help_panel=TRAINING,
                                      help="Side of the training samples.")] = 192,
    lr: Annotated[float, typer.Option(min=0.0, rich_help_panel=TRAINING, help="Peak learning rate.")] = 1e-3,
    warmup: Annotated[int, typer.Option(min=0, metavar="N", rich_help_panel=TRAINING)] = 100,
    weight_decay: Annotated[float, typer.Option(min=0.0, rich_help_panel=TRAINING)] = 1e-4,
    ema: Annotated[float, typer.Option(
        min=0.0, metavar="DECAY", callback=_ema, rich_help_panel=TRAINING,
        help="Validate and ship an exponential moving average of the weights with this decay per step "
             "(e.g. 0.999; 0: the weights as trained).")] = 0.0,
    rec: Annotated[Literal["charbonnier", "rmse"], typer.Option(
        rich_help_panel=LOSS, help="A frame's error: Charbonnier per pixel (a smooth L1), or the frame's root "
        "mean square error (as PSNR scores it).")] = "charbonnier",
    w_middle: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS,
                                            help="Extra weight of the middle frame.")] = 2.0,
    w_pairs: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS,
                                           help="Order-invariant pairwise term (fades out by mid-stage).")] = 0.5,
    w_reblur: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS,
                                            help="Frames must average back to the blur (stage 3).")] = 0.5,
    order: Annotated[Literal["sample", "local"], typer.Option(
        rich_help_panel=LOSS, help="Direction of time each prediction is scored against: per sample the "
        "better of forward and reversed, or per 32 px cell the one its content moves in to the right "
        "(or down).")] = "sample",
    w_travel: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS, help="The travel head's travel "
                                            "against the synthetic motion's.")] = 0.1,
    travel_over: Annotated[Literal["known", "moving"], typer.Option(
        rich_help_panel=LOSS, help="The travel's error averaged over every pixel whose travel is known, or "
        "over those that moved only (a small moving object not outweighed by the still pixels around it).")
    ] = "known",
    w_still: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS, help="The travel head's travel "
                                           "where the synthetic motion is still (px; 0: off).")] = 0.0,
    w_fft: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS, help="The middle frame's error in "
                                         "the frequency domain (sharpness; 0: off).")] = 0.0,
    w_harm: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS, help="The frames' error beyond the "
                                          "blur's own, pixel by pixel (do no harm; 0: off).")] = 0.0,
    width: Annotated[int, typer.Option(min=1, rich_help_panel=NETWORK,
                                       help="Channels at full resolution.")] = 16,
    enc_blocks: Annotated[str, typer.Option(metavar="N,N,..", rich_help_panel=NETWORK,
                                            help="Blocks per encoder level.")] = "1,1,2,4",
    middle_blocks: Annotated[int, typer.Option(min=0, rich_help_panel=NETWORK)] = 2,
    dec_blocks: Annotated[str, typer.Option(metavar="N,N,..", rich_help_panel=NETWORK,
                                            help="Blocks per decoder level (as many as encoder levels).")]
    = "1,1,1,1",
    frames: Annotated[int, typer.Option(min=3, rich_help_panel=NETWORK, help="Frames per photo (odd).")] = 7,
    head: Annotated[Literal["frames", "travel"], typer.Option(
        rich_help_panel=NETWORK, help="frames: a residual per frame; travel: the middle frame and how far "
        "each pixel travels, every frame the middle one moved (--init from a frames head keeps its middle "
        "frame).")] = "frames",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")] = False,
) -> None:
    """Train staged weights on sharp photos, frame sequences, GoPro_Large or videos.

    Photos get synthetic motion; consecutive frames are averaged into blurs in linear light. The data is
    checked first and summed up; broken or short sequences are skipped with a note. GoPro_Large knows
    only the middle frame, so it trains stage 1.

    Settings can come from --config FILE (TOML or JSON: these options' names with underscores, the
    network's under \\[model]; e.g. a run's own OUT/config.json); options typed here override it. Every stage
    ends in OUT/stageN.safetensors (its sha256 beside it), printed on stdout, usable as --weights or with
    `blur2clip weights import`. OUT/curves.png follows the loss and validation (--tensorboard: also
    TensorBoard). Stop at any time (Ctrl-C, or SIGTERM from a scheduler): the checkpoint is written and
    --resume continues.
    Several GPUs or machines: torchrun --nproc_per_node N -m blur2clip.train --data DIR --out DIR ...
    """
    flags = _train_flags(ctx)
    if config is None:
        for name in ("data", "out"):
            if name not in flags:
                raise typer.BadParameter(f"missing (give --{name} DIR, or {name} = ... in a --config file)",
                                         param_hint=f"--{name}")
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun only the first process reports
    report = Report(quiet or not rank0)
    with report.running("Reading the settings…"):
        from . import runconfig
        from .logbook import require_tensorboard

        cfg = runconfig.from_dict(runconfig.merge(runconfig.read(config) if config else {}, flags),
                                  str(config) if config else "the command line")
        if cfg.tensorboard:
            require_tensorboard()
        report.step("Checking the device…")
        from .device import pick
        from .train import Stopped, Trainer

        if pick(cfg.device).type == "cpu" and cfg.compile:
            from .losses import require_compiler

            require_compiler()
        report.step("Reading the data…")
        out = Path(cfg.out)

        def log(message: str) -> None:
            report.step("Training…")
            report.info(message)

        start = time.perf_counter()
        with data_errors():  # the data folder and the run folder, checked as the trainer starts
            trainer = Trainer(cfg, log=log)
        try:
            paths = trainer.run()
        except Stopped as e:  # SIGTERM or Ctrl-C: the step finished and its checkpoint written
            code = ExitCode.TERMINATED if e.terminated else ExitCode.INTERRUPTED
            if not rank0:  # the first process says it, once
                raise typer.Exit(int(code))
            report.fail(f"{e}; resume with --resume", code, label="")
            paths = e.done  # the stages finished before it are results all the same
        except KeyboardInterrupt:  # a second Ctrl-C: at once, the checkpoint on disk is the last one written
            if not rank0:
                raise typer.Exit(int(ExitCode.INTERRUPTED))
            kept = (out / "checkpoint.pt").is_file()
            report.fail("interrupted" + ("; the last checkpoint is kept; resume with --resume" if kept else ""),
                        ExitCode.INTERRUPTED, label="")
            paths = []
        for path in paths if rank0 else []:
            report.result(path)
        if paths:
            report.info(f"trained stage{'s' if len(paths) > 1 else ''} "
                        f"{', '.join(p.stem.removeprefix('stage') for p in paths)} "
                        f"in {duration(time.perf_counter() - start)}: {paths[-1]}")
    report.exit()


@commands.command("plot", no_args_is_help=True)
def plot_command(
    runs: Annotated[list[Path], typer.Argument(
        metavar="RUN", show_default=False, help="Training run folders (or their log.jsonl files).")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="FILE", show_default=False, help="The picture to write (.png).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE if it exists.")] = False,
    quiet: Quiet = False,
) -> None:
    """Draw the training curves of one or more runs in one picture (PNG).

    The losses above; below, each run's main validation figure (pPSNR, or the middle frame's PSNR where
    only it is known) with its blurred-input baseline dashed; one colour per run, named by its folder.
    Reads RUN/log.jsonl, as a run's own curves.png does.
    """
    if output.suffix.lower() != ".png":
        raise typer.BadParameter(f"{output}: the picture is a PNG: give a name ending in .png",
                                 param_hint="--output")
    report = Report(quiet)
    with report.running("Drawing…"):
        from .plot import runs as draw

        logs = [run / "log.jsonl" if run.is_dir() else run for run in runs]
        for run, log in zip(runs, logs):
            if not log.is_file():
                raise FileNotFoundError(f"{run}: no log.jsonl here: not a training run folder")
        if output.exists() and not overwrite:
            raise FileExistsError(f"{output}: exists; pass --overwrite to replace it")
        names = [(log.parent if log.name == "log.jsonl" else log).name for log in logs]
        if len(set(names)) < len(names):  # runs of one name in different places: their paths tell them apart
            names = [str(log.parent if log.name == "log.jsonl" else log) for log in logs]
        with data_errors():  # a log that cannot be read
            picture = draw(logs, output, names)
        report.result(picture)
    report.exit()
