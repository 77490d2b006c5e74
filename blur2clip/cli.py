"""The command line: `blur2clip PHOTO [-o OUT]` makes the clip; `blur2clip train ...` trains weights.

Thin: each command parses its options, calls the library and reports through `report.py`: results (the
paths written) on stdout, one per line; progress, the one-line summary and errors on stderr; the exit
codes (`ExitCode`) in one place, listed in --help and README.

Typer cannot have a default command beside subcommands, so `main` dispatches: when the first argument
that is not an option is the name of a subcommand, the `commands` app runs; otherwise the single-photo
app does. Adding a subcommand (`batch`, `weights`, `eval`) is one function under `@commands.command()`:
dispatch and `blur2clip --help` find it by name. Nothing here imports torch until a command runs, so
--help and --version stay fast.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console

from . import CLIP_FPS, CLIP_FRAMES, __version__
from .report import PROG, BatchProgress, ExitCode, Report, describe, duration, exit_codes_help, score_table

# ----------------------------------------------------------------------------------------------------
# blur2clip PHOTO: the single-photo app

APP_SETTINGS = dict(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
photo_app = typer.Typer(**APP_SETTINGS)

OUTPUT, MODEL = "Clip", "Model and device"


def _version(value: bool) -> None:
    if value:
        print(f"{PROG} {__version__}")
        raise typer.Exit()


def _tile(value: int) -> int:
    if 0 < value < 32:
        raise typer.BadParameter("use 0 (the whole photo in one pass) or at least 32")
    return value


# Options of the single-photo command that `batch` shares: one definition each.
Fps = Annotated[float, typer.Option(min=0.1, rich_help_panel=OUTPUT, help="Frames per second.")]
Frames = Annotated[int, typer.Option(
    min=3, max=96, metavar="N", rich_help_panel=OUTPUT,
    help="Instants of the exposure the clip shows (3-96), made from the network's frames; --frames 7 "
         "--fps 10 shows the seven the network predicts as they are.")]
Pingpong = Annotated[bool, typer.Option(
    "--pingpong/--no-pingpong", rich_help_panel=OUTPUT,
    help="Play the frames forward then back: one photo cannot tell which way time ran.")]
Loops = Annotated[int, typer.Option(min=1, metavar="N", rich_help_panel=OUTPUT,
                                    help="Repeat the sequence N times in an mp4.")]
Reverse = Annotated[bool, typer.Option("--reverse", rich_help_panel=OUTPUT,
                                       help="Start from the other end of the exposure.")]
MaxSize = Annotated[Optional[int], typer.Option(
    min=1, metavar="PX", show_default=False, rich_help_panel=OUTPUT,
    help="Shrink the photo first so its long side is at most PX (faster, smaller clip).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", rich_help_panel=OUTPUT,
                                         help="Replace outputs that already exist.")]
Weights = Annotated[Optional[str], typer.Option(
    metavar="NAME|PATH|URL", envvar="BLUR2CLIP_WEIGHTS", show_default=False, rich_help_panel=MODEL,
    help="Weights: a name (default, stage1, stage2, stage3), a .safetensors file, or a URL to "
         "fetch it from once. Default: default, shipped with blur2clip.")]
def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r}: use auto, cpu, cuda, cuda:N (the GPU numbered N) or mps")
    return value


Device = Annotated[str, typer.Option(
    metavar="auto|cpu|cuda|cuda:N|mps", envvar="BLUR2CLIP_DEVICE", callback=_device, rich_help_panel=MODEL,
    help="auto: cuda if available, then mps, then cpu; cuda:N: the GPU numbered N.")]
Precision = Annotated[Literal["auto", "fp32", "bf16", "fp16"], typer.Option(
    envvar="BLUR2CLIP_PRECISION", rich_help_panel=MODEL, help="auto: fp32 on the CPU, bf16 or fp16 on a GPU.")]
DEFAULT_TILE = 512
Tile = Annotated[int, typer.Option(
    min=0, metavar="PX", callback=_tile, rich_help_panel=MODEL,
    help="Work in overlapping tiles of PX (bounds memory; 0: the whole photo in one pass).")]
Threads = Annotated[int, typer.Option(
    min=0, metavar="N", envvar="BLUR2CLIP_THREADS", rich_help_panel=MODEL,
    help="CPU threads for the network (0: torch's default).")]
MaxPixels = Annotated[Optional[int], typer.Option(
    min=1, metavar="N", show_default=False, envvar="BLUR2CLIP_MAX_PIXELS", rich_help_panel=MODEL,
    help="Refuse photos with more than N pixels (default: 200 million).")]
Quality = Annotated[Literal["high", "medium", "low"], typer.Option(
    rich_help_panel=OUTPUT, help="Encoding quality: MP4 rate factor 18/23/28, WebP 90/80/65, GIF 256/128/64 "
                                 "colours. Lower is smaller.")]
Crf = Annotated[Optional[int], typer.Option(
    min=0, max=51, metavar="N", show_default=False, rich_help_panel=OUTPUT,
    help="H.264 rate factor of an MP4 (0 lossless .. 51; lower is better and larger), instead of --quality's.")]
StripMetadata = Annotated[bool, typer.Option(
    "--strip-metadata", rich_help_panel=OUTPUT,
    help="Keep none of the photo's metadata (time taken, camera, GPS location, EXIF, XMP) in the clip or the "
         "still. By default it is kept where the format can hold it.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")]


@photo_app.command()
def clip(
    ctx: typer.Context,
    photos: Annotated[list[Path], typer.Argument(
        metavar="PHOTO", show_default=False,
        help="The motion-blurred photo (JPEG, PNG, TIFF, WebP, HEIC, RAW, ...); several make a clip each.")],
    output: Annotated[Optional[str], typer.Option(  # a str: a Path would drop the "/" that says folder
        "--output", "-o", metavar="OUT", show_default=False, rich_help_panel=OUTPUT,
        help="Where to write the clip; its suffix picks the format (a name ending in / or without a "
             "suffix: a folder of frames). Default: beside the photo, as NAME.mp4. With several photos: "
             "a folder for their clips (DIR/).")] = None,
    fmt: Annotated[Optional[Literal["mp4", "gif", "webp", "frames"]], typer.Option(
        "--format", show_default=False, rich_help_panel=OUTPUT,
        help="Clip format when OUT's suffix does not say; frames writes a folder of PNGs.")] = None,
    frames: Frames = CLIP_FRAMES,
    fps: Fps = CLIP_FPS,
    pingpong: Pingpong = True,
    loops: Loops = 3,
    reverse: Reverse = False,
    still: Annotated[Optional[Path], typer.Option(
        metavar="FILE", show_default=False, rich_help_panel=OUTPUT,
        help="Also save the sharp middle frame as a photo (.jpg, .png or .tif; sRGB, with the photo's "
             "EXIF and XMP).")] = None,
    max_size: MaxSize = None,
    quality: Quality = "high",
    crf: Crf = None,
    strip_metadata: StripMetadata = False,
    overwrite: Overwrite = False,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "auto",
    tile: Tile = DEFAULT_TILE,
    threads: Threads = 0,
    max_pixels: MaxPixels = None,
    quiet: Quiet = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Turn one motion-blurred PHOTO into a short clip of the sharp frames behind the blur.

    Prints the clip's path on stdout; progress and a summary go to stderr. Several photos are done as
    `blur2clip batch` does a folder.
    """
    from . import media, outputs

    kind = _clip_kind(ctx, output, fmt, several=len(photos) > 1)
    output = Path(output) if output is not None else None
    options = dict(frames=frames, fps=fps, pingpong=pingpong, loops=loops, reverse=reverse, max_size=max_size,
                   quality=quality, crf=crf, metadata=not strip_metadata, overwrite=overwrite,
                   max_pixels=max_pixels)
    model = dict(weights=weights, device=device, precision=precision, tile=tile, threads=threads)
    if len(photos) > 1:
        if still is not None:
            _usage(ctx, "--still takes one photo; give one PHOTO", "--still")
        _several(photos, output, kind, options, model, quiet)
    photo = photos[0]
    report = Report(quiet)
    with report.running("Checking…", ExitCode.USAGE):
        out = output if output is not None else media.default_output(photo, kind)
        report.step("Checking…", ExitCode.OUTPUT)  # before loading anything; make_clip checks again
        problem = outputs.check_job(photo, out, still, folder=kind == "frames", overwrite=True)
        if problem is not None:
            raise media.MediaError(*problem)
        if not overwrite:
            for path in (out, still):
                if path is not None and (path.exists() or path.is_symlink()):
                    raise FileExistsError(f"{outputs.printable(path)}: already exists (pass --overwrite to "
                                          "replace it)")

        report.step("Reading photo…", ExitCode.INPUT)
        from .pipeline import make_clip

        lazy = _Extractor(report, **model)
        try:
            result = make_clip(photo, out, fmt=kind, still=still, extractor=lazy, on_output=report.result,
                               **options)
        except media.MediaError as e:  # about an output (taken by another run, a failed still): code 4
            if e.path is not None and Path(e.path) in (Path(out), still):
                report.step("Writing…", ExitCode.OUTPUT)
            raise
        used = lazy.extractor
        repeats = f" x{loops}" if kind == "mp4" and loops > 1 else ""
        report.info(f"{result.output}: {result.width}x{result.height}, {result.frames} frames{repeats} at "
                    f"{fps:g} fps, motion {result.motion:.1f} px, made in {result.seconds:.1f} s on "
                    f"{used.device} ({used.precision})")
        if result.capped:
            report.info(_capped_note(kind))
    report.exit()


def _usage(ctx: typer.Context, message: str, option: str = "'-o' / '--output'") -> None:
    """Stop with a usage error about an option: the usage line, then the message; exit code 2."""
    raise typer.BadParameter(message, ctx=ctx, param_hint=option)


def _clip_kind(ctx: typer.Context, output: Optional[str], fmt: Optional[str], several: bool) -> str:
    """The clip format that OUT and --format ask for; a usage error when they disagree, when OUT's suffix
    names no format and --format is not given, for `-o -`, and (with several photos) for an OUT that is
    not a folder."""
    from . import media

    if output is None:
        return fmt or "mp4"
    text = output
    if text == "-":  # one line, as every other error: what to do instead
        print(f"{PROG}: error: -o -: clips are not written to stdout; give a file name, e.g. -o clip.mp4",
              file=sys.stderr)
        raise typer.Exit(int(ExitCode.USAGE))
    if several:
        if not (text.endswith(("/", os.sep)) or Path(text).is_dir()):
            _usage(ctx, f"{text}: with several photos, give a folder for their clips (ending in /)")
        return fmt or "mp4"
    try:
        named = media.clip_format(text)
    except media.MediaError as e:
        if fmt is not None:  # a name of the user's choosing (clip.mov), --format says what goes in it
            return fmt
        _usage(ctx, e.reason if e.path is None else f"{text}: {e.reason}")
    if fmt is not None and fmt != named and (Path(text).suffix or text.endswith(("/", os.sep))):
        said = "a folder of frames" if named == "frames" else named
        _usage(ctx, f"{text}: its name says {said}, --format says {fmt}; make them agree or leave one out")
    return fmt or named


def _capped_note(kind: str) -> str:
    from .media import ANIMATED_MAX_SIZE

    return (f"{kind} clips are made at most {ANIMATED_MAX_SIZE} px on the long side; --max-size PX for "
            "another size")


def _several(photos: list[Path], output: Optional[Path], kind: str, options: dict, model: dict,
             quiet: bool) -> None:
    """Several photos of one command: each to its clip beside it or in OUT/, as `batch` does them (an
    existing clip is skipped unless --overwrite); ends the command."""
    from . import batch

    report = Report(quiet)
    jobs = None
    with report.running("Checking…", ExitCode.INPUT):
        jobs = batch.plan_photos(photos, output, kind)
    if jobs is None:
        report.exit()
    _run_jobs(report, jobs, [], kind, options, model, json_lines=False, fail_fast=False, min_motion=None)


class _Extractor:
    """The extractor as make_clip calls it: loads the weights on first use (so a bad photo or output is
    reported before the model loads) and tells the report which step is running."""

    def __init__(self, report: Report, **options):
        self.report, self.options, self.extractor = report, options, None

    def load(self):
        """The loaded pipeline.Extractor (loads it the first time)."""
        if self.extractor is None:
            from .pipeline import Extractor
            from .weights import resolve

            self.report.step("Finding weights…", ExitCode.WEIGHTS)
            key = self.options["weights"]
            with self.report.downloading(f"weights {_short(key or 'default')}") as progress:
                path = resolve(key, progress=progress)  # a name or URL may download; a bar shows it
            self.report.step("Loading weights…", ExitCode.DEVICE, ValueError)  # ValueError: no such device
            self.extractor = Extractor(**{**self.options, "weights": path})
            slow = emulated_precision(self.extractor.device.type, self.extractor.precision)
            if slow is not None:
                logging.getLogger(PROG).warning(slow)  # one line: blur2clip: warning: ...
        return self.extractor

    def __call__(self, image, **kw):
        self.load()
        self.report.step("Extracting frames…", ExitCode.DEVICE)
        start = time.perf_counter()

        def progress(done: int, total: int) -> None:  # shown on a terminal only (the spinner's text)
            left = (time.perf_counter() - start) / done * (total - done)
            bar = "━" * round(20 * done / total) + "╌" * (20 - round(20 * done / total))
            self.report.step(f"Extracting frames… {bar} {done}/{total} tiles, {duration(left)} left",
                             ExitCode.DEVICE)
        self.extractor.on_tile = progress
        try:
            frames = self.extractor(image, **kw)
        finally:
            self.extractor.on_tile = None
        self.report.step("Writing clip…", ExitCode.OUTPUT)
        return frames


_CPUINFO = "/proc/cpuinfo"
_NATIVE = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def emulated_precision(device: str, precision: str) -> str | None:
    """A one-line warning when bf16 or fp16 runs on a CPU without the instructions for it (then it is
    emulated, several times slower than fp32); None otherwise, or when the CPU's flags are unknown."""
    if device != "cpu" or precision not in _NATIVE:
        return None
    try:
        with open(_CPUINFO, encoding="ascii", errors="replace") as f:
            flags = {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return None
    if not flags or flags & set(_NATIVE[precision]):
        return None
    return (f"--precision {precision}: this CPU has no {' or '.join(_NATIVE[precision])}, so {precision} is "
            "emulated and runs several times slower than --precision fp32")


# ----------------------------------------------------------------------------------------------------
# Subcommands: blur2clip COMMAND ...

commands = typer.Typer(name=PROG, no_args_is_help=True, **APP_SETTINGS)


@commands.callback()
def _commands() -> None:
    """blur2clip's subcommands (the clip itself is `blur2clip PHOTO`)."""


RUN, TRAINING, LOSS, NETWORK = "Run", "Training", "Loss", "Network (new runs only)"


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


_MODEL_FLAGS = ("width", "enc_blocks", "middle_blocks", "dec_blocks", "frames")


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


# Options of train and eval: one definition each.
DATA_HELP = ("Data folder: sharp photos (synthetic motion), folders of consecutive frames (GoPro_Large_all), "
             "GoPro_Large (blur/ beside sharp/), NAME_blur*.png beside NAME_sharp*.png pairs, high-frame-rate "
             "videos, or clips (blurry/ beside frames/, evaluation only); the layout is detected.")
DataDir = Annotated[Path, typer.Option(metavar="DIR", show_default=False, rich_help_panel=RUN, help=DATA_HELP)]
Layout = Annotated[Literal["auto", "photos", "sequences", "gopro", "pairs", "videos", "clips"], typer.Option(
    rich_help_panel=RUN, help="Force the data layout instead of detecting it.")]
FramesPerBlur = Annotated[int, typer.Option(
    min=1, metavar="N", rich_help_panel=RUN,
    help="Consecutive sharp frames averaged into one blur (frame sequences and videos; at least the "
         "frames per photo).")]

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
        rich_help_panel=RUN, help="auto: the process's GPU (LOCAL_RANK under torchrun) if any, else cpu.")]
    = "auto",
    precision: Annotated[Literal["auto", "fp32", "bf16"], typer.Option(
        rich_help_panel=RUN, help="auto: bf16 autocast on a GPU, fp32 on the CPU.")] = "auto",
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
             "samples (pip install \"blur2clip[tensorboard]\").")] = False,
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
    w_middle: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS,
                                            help="Extra weight of the middle frame.")] = 2.0,
    w_pairs: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS,
                                           help="Order-invariant pairwise term (fades out by mid-stage).")] = 0.5,
    w_reblur: Annotated[float, typer.Option(min=0.0, rich_help_panel=LOSS,
                                            help="Frames must average back to the blur (stage 3).")] = 0.5,
    width: Annotated[int, typer.Option(min=1, rich_help_panel=NETWORK,
                                       help="Channels at full resolution.")] = 16,
    enc_blocks: Annotated[str, typer.Option(metavar="N,N,..", rich_help_panel=NETWORK,
                                            help="Blocks per encoder level.")] = "1,1,2,4",
    middle_blocks: Annotated[int, typer.Option(min=0, rich_help_panel=NETWORK)] = 2,
    dec_blocks: Annotated[str, typer.Option(metavar="N,N,..", rich_help_panel=NETWORK,
                                            help="Blocks per decoder level (as many as encoder levels).")]
    = "1,1,1,1",
    frames: Annotated[int, typer.Option(min=3, rich_help_panel=NETWORK, help="Frames per photo (odd).")] = 7,
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
    with report.running("Reading the settings…", ExitCode.USAGE, ValueError, ImportError):
        from . import runconfig
        from .logbook import require_tensorboard

        cfg = runconfig.from_dict(runconfig.merge(runconfig.read(config) if config else {}, flags),
                                  str(config) if config else "the command line")
        report.step("Reading the settings…", ExitCode.USAGE, ValueError, ImportError)
        if cfg.tensorboard:
            require_tensorboard()
        report.step("Checking the device…", ExitCode.DEVICE, ValueError)
        from .train import Stopped, pick_device, train

        pick_device(cfg.device)
        report.step("Reading the data…", ExitCode.INPUT, ValueError)
        out = Path(cfg.out)

        def log(message: str) -> None:  # once training runs, a ValueError is a bug, not bad input
            report.step("Training…", ExitCode.INPUT)
            report.info(message)

        start = time.perf_counter()
        try:
            paths = train(cfg, log=log)
        except Stopped as e:
            report.fail(f"{e}; resume with --resume", ExitCode.INTERRUPTED, label="")
            paths = []
        except KeyboardInterrupt:
            wrote = (out / "checkpoint.pt").is_file()
            report.fail("interrupted" + ("; checkpoint written; resume with --resume" if wrote else ""),
                        ExitCode.INTERRUPTED, label="")
            paths = []
        for path in paths if rank0 else []:
            report.result(path)
        if paths:
            report.info(f"trained stage{'s' if len(paths) > 1 else ''} "
                        f"{', '.join(p.stem.removeprefix('stage') for p in paths)} "
                        f"in {duration(time.perf_counter() - start)}: {paths[-1]}")
    report.exit()


# ----------------------------------------------------------------------------------------------------
# blur2clip weights ...: list, download, verify, path, import

weights_app = typer.Typer(no_args_is_help=True, **APP_SETTINGS)
commands.add_typer(weights_app, name="weights")


@weights_app.callback()
def _weights() -> None:
    """List, download, verify and import weights files.

    Downloads and imports go to the cache folder (`blur2clip weights path`; BLUR2CLIP_HOME moves it).
    BLUR2CLIP_WEIGHTS_URL names a mirror to download from first; BLUR2CLIP_OFFLINE=1 never downloads.
    """


def _short(key: str) -> str:
    """A weights name or path as a bar's label; a URL by its file name."""
    if key.startswith(("http://", "https://")):
        return key.rstrip("/").rsplit("/", 1)[-1]
    return key


def _size(w) -> int | None:
    return w.size if w.size is not None else w.path.stat().st_size if w.path is not None else None


@weights_app.command("list")
def weights_list() -> None:
    """List the weights names: name, stage, size, status (embedded, cached, not present) and path.

    On a terminal, a table. Otherwise (a pipe, a file) one line per name, tab-separated: name, stage,
    size in bytes, status, path; '-' where there is none.
    """
    from . import weights

    report, rows = Report(), None
    with report.running("Listing…", ExitCode.WEIGHTS):
        rows, cache = weights.list_weights(), weights.cache_dir()
    if rows is not None and sys.stdout.isatty():
        from rich.filesize import decimal
        from rich.table import Table

        table = Table(caption=f"cache: {cache}", caption_justify="left", box=None, header_style="bold")
        for column in ("name", "stage", "size", "status", "path"):
            table.add_column(column, justify="right" if column in ("stage", "size") else "left",
                             overflow="fold")
        style = {weights.EMBEDDED: "green", weights.CACHED: "cyan", weights.ABSENT: "dim"}
        for w in rows:
            size = _size(w)
            name = f"{w.name} [dim](= {w.alias})[/dim]" if w.alias else w.name
            table.add_row(name, str(w.stage or ""), decimal(size) if size is not None else "",
                          f"[{style[w.status]}]{w.status}[/]", str(w.path or ""))
        Console(highlight=False).print(table)
    elif rows is not None:
        for w in rows:
            fields = (w.name, w.stage, _size(w), w.status, w.path)
            print("\t".join("-" if f is None else str(f) for f in fields))
    report.exit()


@weights_app.command("download")
def weights_download(
    names: Annotated[Optional[list[str]], typer.Argument(
        metavar="NAME", show_default=False, help="Weights names (see `blur2clip weights list`).")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every weights file the manifest lists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")] = False,
) -> None:
    """Download weights into the cache and check them against the manifest's sha256.

    Prints each file's path. Files shipped with blur2clip, or already cached and intact, are not
    downloaded again. With BLUR2CLIP_OFFLINE=1 nothing is downloaded: the error names each file and the
    folder to place it in by hand.
    """
    if bool(names) == every:
        raise typer.BadParameter("give one or more names, or --all", param_hint="NAME")
    from . import weights

    report, fetched = Report(quiet), 0
    with report.running("Reading the manifest…", ExitCode.WEIGHTS):
        if every:
            names = [n for n, entry in weights.read_manifest().items() if "alias" not in entry]
    for name in dict.fromkeys(names if not report.failures else []):
        with report.running(f"Checking {name}…", ExitCode.WEIGHTS):
            with report.downloading(name) as progress:
                path = weights.download(name, progress=progress)
            report.result(path)
            fetched += bool(progress and progress.used)
    if report.written:
        present = len(report.written) - fetched
        report.info(f"{fetched} downloaded, {present} already present" +
                    (f", {len(report.failures)} failed" if report.failures else ""))
    report.exit()


@weights_app.command("verify")
def weights_verify(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")] = False,
) -> None:
    """Re-hash every weights file present: shipped, cached, imported and downloaded from URLs.

    Prints one line per file, tab-separated: name, path, and ok or what is wrong. Exits with 1 when a
    file is bad (`blur2clip weights download NAME` replaces a bad cached file).
    """
    from . import weights

    report, results = Report(quiet), None
    with report.running("Verifying…", ExitCode.WEIGHTS):
        results = weights.verify()
    for v in results or []:
        print(f"{v.name}\t{v.path}\t{v.reason}", flush=True)
        if not v.ok:
            report.fail(f"{v.path}: {v.reason}", ExitCode.FAILED)
    if results == []:
        report.info("no weights files present")
    elif results:
        bad = sum(not v.ok for v in results)
        files = f"{len(results)} file{'s' * (len(results) != 1)}"
        report.info(f"{files} verified: {f'{bad} bad' if bad else 'all ok'}")
    report.exit()


@weights_app.command("path")
def weights_path() -> None:
    """Print the cache folder, where downloads and imports go and where files can be placed by hand.

    It is $BLUR2CLIP_HOME/weights when BLUR2CLIP_HOME is set, else in the user cache folder.
    """
    from .weights import cache_dir

    print(cache_dir())


@weights_app.command("import", no_args_is_help=True)
def weights_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", show_default=False,
                                         help="A .safetensors file, e.g. one that `blur2clip train` wrote.")],
    name: Annotated[Optional[str], typer.Option(
        "--name", metavar="N", show_default=False,
        help="The name to give it. Default: the file's stem and the start of its sha256 (stage3-1a2b3c4d).")]
    = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")] = False,
) -> None:
    """Keep a weights file in the cache under a name that --weights then accepts; prints the name.

    The file is checked (it must load), stored by its sha256 and re-checked on every load. Importing
    again under the same name replaces the earlier file.
    """
    from .weights import import_file

    report = Report(quiet)
    with report.running("Importing…", ExitCode.WEIGHTS):
        info = import_file(file, name)
        report.result(info.name)
        report.info(f"imported {file} as {info.name} (stage {info.stage}): "
                    f"blur2clip PHOTO --weights {info.name}")
    report.exit()


# ----------------------------------------------------------------------------------------------------
# blur2clip batch DIR: a folder of photos

FOLDER = "Folder"


@commands.command("batch", no_args_is_help=True)
def batch_command(
    folder: Annotated[Path, typer.Argument(metavar="DIR", show_default=False, exists=True, file_okay=False,
                                           help="The folder of photos.")],
    out_dir: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="OUTDIR", show_default=False, rich_help_panel=FOLDER,
        help="Where the clips go, in sub-folders as in DIR. Default: DIR/clips (never read as input).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", rich_help_panel=FOLDER,
                                            help="Also the photos in DIR's sub-folders.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", rich_help_panel=FOLDER,
                                            help="Stop at the first photo that fails.")] = False,
    json_lines: Annotated[bool, typer.Option(
        "--json", rich_help_panel=FOLDER,
        help="Print one JSON line per file on stdout (input, output, status, seconds, error, motion_px) "
             "instead of the clips' paths.")] = False,
    fmt: Annotated[Literal["mp4", "gif", "webp", "frames"], typer.Option(
        "--format", rich_help_panel=OUTPUT, help="Clip format; frames writes a folder of PNGs per photo.")]
    = "mp4",
    frames: Frames = CLIP_FRAMES,
    fps: Fps = CLIP_FPS,
    pingpong: Pingpong = True,
    loops: Loops = 3,
    reverse: Reverse = False,
    max_size: MaxSize = None,
    quality: Quality = "high",
    crf: Crf = None,
    strip_metadata: StripMetadata = False,
    overwrite: Overwrite = False,
    min_motion: Annotated[Optional[float], typer.Option(
        min=0, metavar="PX", show_default=False, rich_help_panel=FOLDER,
        help="Skip photos whose frames move less than PX pixels (no motion blur to undo): no clip, "
             "reported as skipped with their motion score.")] = None,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "auto",
    tile: Tile = DEFAULT_TILE,
    threads: Threads = 0,
    max_pixels: MaxPixels = None,
    quiet: Quiet = False,
) -> None:
    """Turn every photo in DIR into a clip: progress, resume, and one bad photo never stops the rest.

    Clips already made are skipped (run again after a stop to resume; --overwrite remakes them); a clip
    is written under a hidden temporary name and renamed when complete, so none is ever half there.
    Hidden and system files are ignored, other files listed as skipped; the photos are never written.
    Runs at the same time on one folder share the work: a photo another run has taken is skipped. Prints
    each clip's path on stdout; a progress bar and then a summary of what was done, skipped and failed go
    to stderr. Exit code 1 when some photos failed, 130 when interrupted, 143 on SIGTERM (run again to
    resume).
    """
    from . import batch

    from . import media, outputs

    report = Report(quiet)
    out = out_dir if out_dir is not None else batch.default_out_dir(folder)
    found = jobs = None
    with report.running("Looking for photos…", ExitCode.OUTPUT):
        blocked = outputs.not_a_folder(out)
        if blocked is not None:
            raise media.MediaError(blocked, "not a folder")
        report.step("Looking for photos…", ExitCode.INPUT)
        found = batch.find_photos(folder, recursive, out)
        jobs = batch.plan(found.photos, folder, out, fmt)
    if found is None or jobs is None:
        report.exit()
    options = dict(frames=frames, fps=fps, pingpong=pingpong, loops=loops, reverse=reverse, max_size=max_size,
                   quality=quality, crf=crf, metadata=not strip_metadata, overwrite=overwrite,
                   max_pixels=max_pixels)
    model = dict(weights=weights, device=device, precision=precision, tile=tile, threads=threads)
    others = [batch.PhotoResult(path, None, batch.SKIPPED, 0.0, reason) for path, reason in found.others]
    _run_jobs(report, jobs, others, fmt, options, model, json_lines, fail_fast, min_motion)


def _run_jobs(report: Report, jobs, others, fmt: str, options: dict, model: dict, json_lines: bool,
              fail_fast: bool, min_motion: Optional[float]) -> None:
    """Run planned batch jobs with a progress display and the summary; ends the command with batch's
    exit code. others: results to list first (files that are not photos)."""
    from . import batch

    lazy = _Extractor(report, **model)
    show = BatchProgress(report, len(jobs), json_lines)
    for result in others:
        show.result(result)
    if fmt in ("gif", "webp") and not options["max_size"] and jobs:
        report.info(_capped_note(fmt))
    try:
        with show:
            run = batch.run_batch(jobs, load=lazy.load, on_event=show.event, min_motion=min_motion,
                                  fail_fast=fail_fast, **options)
    except Exception as e:  # noqa: BLE001 -- not about one photo (weights, device): sorted, bugs re-raised
        code = report.classify(e)
        if code is None:
            raise
        report.fail(describe(e), code)
        report.exit()
    run.results[:0] = others
    show.summary(run)
    from .outputs import terminated

    stop = ExitCode.TERMINATED if terminated() else ExitCode.INTERRUPTED
    raise typer.Exit(int(stop if run.interrupted else ExitCode.FAILED if run.failed else ExitCode.OK))


EVAL_PROGRESS_EVERY = 10.0  # seconds between eval's progress lines when stderr is not a terminal


@commands.command("eval", no_args_is_help=True)
def eval_command(
    data: DataDir,
    weights: Weights = None,
    layout: Layout = "auto",
    frames_per_blur: FramesPerBlur = 7,
    samples: Annotated[int, typer.Option(
        min=1, metavar="N", rich_help_panel=RUN,
        help="Exposures scored per sequence, spread over it (photos: synthetic blurs per photo).")] = 4,
    size: Annotated[Optional[int], typer.Option(
        min=16, metavar="PX", show_default=False, rich_help_panel=RUN,
        help="Score centred PX x PX crops (faster). Default: whole frames; photos: 256.")] = None,
    json_out: Annotated[bool, typer.Option("--json", rich_help_panel=RUN,
                                           help="Print the figures as JSON instead of a table.")] = False,
    frames: Annotated[Optional[int], typer.Option(
        "--frames", min=3, max=96, metavar="N", show_default=False, rich_help_panel=RUN,
        help="Score N instants of the exposure (the centres of N equal windows). Default: the network's "
             "own frames.")] = None,
    interpolate: Annotated[Literal["guarded", "linear", "nearest"], typer.Option(
        rich_help_panel=RUN,
        help="How instants between the network's frames are made (with --frames): blended where the two "
             "frames agree, else the nearer one (guarded); blended everywhere (linear); the nearer frame "
             "(nearest).")] = "guarded",
    save_frames: Annotated[Optional[Path], typer.Option(
        "--save-frames", metavar="DIR", show_default=False, rich_help_panel=RUN,
        help="Write what was scored, as PNG: DIR/SEQUENCE/NNN/input.png, predicted/NN.png (in the direction "
             "of time scored) and true/NN.png. DIR must be new or empty.")] = None,
    all_photos: Annotated[bool, typer.Option(
        "--all-photos", rich_help_panel=RUN,
        help="A folder of photos: score every photo, not only those held out from training (for photos the "
             "weights never trained on).")] = False,
    device: Device = "auto",
    precision: Precision = "auto",
    tile: Tile = DEFAULT_TILE,
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Score weights on a data folder of any layout, beside the blurred input.

    For each sequence and on average: pPSNR (the better direction of time) and SSIM on the same frames,
    middle-frame PSNR and SSIM, outer-frame pPSNR and reblur PSNR (the frames averaged back against the
    input, which has no baseline: "-"), each beside the blurred photo copied to every frame. GoPro_Large
    and blur/sharp pairs give the middle frame and reblur only; of a folder of photos, the photos held out
    from training are scored. Progress goes to stderr; the table (or JSON with --json) to stdout.
    """
    import json

    report = Report(quiet)
    result = None
    with report.running("Reading the data…", ExitCode.INPUT, ValueError):
        if save_frames is not None and save_frames.exists() and (
                not save_frames.is_dir() or any(save_frames.iterdir())):
            raise FileExistsError(f"{save_frames}: exists and is not an empty folder; give --save-frames a "
                                  f"new or empty folder")
        from .data import open_data
        from .evaluation import evaluate, predictor

        extractor = _Extractor(report, weights=weights, device=device, precision=precision, tile=tile,
                               threads=threads).load()
        report.step("Reading the data…", ExitCode.INPUT, ValueError)
        d = open_data(data, layout, frames_per_blur, frames=frames or extractor.model.config.frames)
        for line in d.summary():
            report.info(line)
        total, done = d.count_items(samples, all_photos), []
        start = shown = time.perf_counter()

        def tick(name: str) -> None:
            nonlocal shown
            done.append(name)
            now = time.perf_counter()
            left = (now - start) / len(done) * (total - len(done))
            text = f"Scoring {len(done)}/{total}: {name}, {duration(left)} left"
            report.step(text + "…", ExitCode.INPUT, ValueError)
            if not report.err.is_terminal and now - shown >= EVAL_PROGRESS_EVERY and len(done) < total:
                report.info(text)  # plain lines into a log file, where no spinner is shown
                shown = now

        report.step(f"Scoring {total} samples…", ExitCode.INPUT, ValueError)
        result = evaluate(d, predictor(extractor, frames, interpolate), samples, size, weights=weights or "default",
                          on_sample=tick, save=save_frames, all_photos=all_photos)
        report.info(f"scored {result.mean.samples} samples of {len(result.sequences)} sequences in "
                    f"{duration(time.perf_counter() - start)} on {extractor.device} ({extractor.precision})")
    if result is not None:
        print(json.dumps(result.to_dict(), indent=2) if json_out else score_table(result), flush=True)
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
    with report.running("Drawing…", ExitCode.INPUT, ValueError):
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
        report.step("Drawing…", ExitCode.OUTPUT)
        report.result(draw(logs, output, names))
    report.exit()


# ----------------------------------------------------------------------------------------------------
# Dispatch


def subcommand_names() -> list[str]:
    return list(typer.main.get_group(commands).commands)


def _photo_epilog() -> str:
    group = typer.main.get_group(commands)
    width = max(map(len, group.commands)) + 2
    lines = ["[b]Commands[/b] (blur2clip COMMAND --help for their options):"]
    lines += [f"  {name:<{width}}{cmd.get_short_help_str(limit=400)}"  # the whole summary, not cut short
              for name, cmd in group.commands.items()]
    lines += ["", "[b]Exit codes[/b]:", exit_codes_help()]
    return "\n".join(lines)


def _is_subcommand(args: list[str], photo_command) -> bool:
    """Whether the first argument that is not an option (nor an option's value) names a subcommand."""
    takes_value = {opt for p in photo_command.params if p.param_type_name == "option" and not p.is_flag
                   for opt in p.opts}
    names = set(subcommand_names())
    it = iter(args)
    for arg in it:
        if arg == "--":
            return False  # what follows is the photo, whatever its name
        if arg.startswith("-") and arg != "-":
            if "=" not in arg and arg in takes_value:
                next(it, None)
            continue
        return arg in names
    return False


def _unwrap(command) -> None:
    """Join the lines of each help paragraph (Typer's rich help would keep the docstring's line breaks;
    a paragraph that starts with \\b keeps them), in a command and its subcommands; flags take no value,
    so their help shows none (Typer would show <bool>), and a required argument reads as its name."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        if param.param_type_name == "argument" and param.required:  # usage: PHOTO..., not Typer's {PHOTO}...
            param._usage_display_name = lambda p=param: p.display_name_raw + ("..." if p.nargs != 1 else "")
    made = command.get_help_option  # --help is made when help is shown: no value to show there either

    def help_option(ctx, made=made):
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option
    command.get_help_option = help_option
    if command.help:
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)
    for sub in getattr(command, "commands", {}).values():
        _unwrap(sub)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from .media import show_warning  # imported when a warning comes, not at start

    show_warning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(f"Usage: {PROG} [OPTIONS] PHOTO...\n{PROG}: error: missing PHOTO\n"
              f"Try '{PROG} --help' for the options, and '{PROG} COMMAND --help' for batch, weights, train, eval.",
              file=sys.stderr)
        return int(ExitCode.USAGE)
    from .outputs import sigterm_as_interrupt, terminated

    previous = sigterm_as_interrupt()  # SIGTERM stops a command as Ctrl-C does: temporaries removed, one line
    # Warnings, the library's logged ones included, as one line each: "blur2clip: warning: <file>: <reason>"
    shown, logger = warnings.showwarning, logging.getLogger(PROG)
    warnings.showwarning = _one_line_warning
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    logger.addHandler(handler)
    # Idle OpenMP threads sleep rather than spin (before torch loads): the same speed on an idle machine,
    # 2-5x faster tiles on a busy one (benchmarks/model_speed.py). A user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    photo_command = typer.main.get_command(photo_app)
    if _is_subcommand(args, photo_command):
        command = typer.main.get_command(commands)
    else:
        command = photo_command
        command.epilog = _photo_epilog()
    _unwrap(command)
    try:
        command.main(args, prog_name=PROG, standalone_mode=True)
    except SystemExit as e:  # standalone mode always ends here, with the code
        return int(e.code) if isinstance(e.code, int) else int(e.code is not None)
    except KeyboardInterrupt:
        print(f"{PROG}: {'terminated' if terminated() else 'interrupted'}", file=sys.stderr)
        return int(ExitCode.TERMINATED if terminated() else ExitCode.INTERRUPTED)
    except Exception:  # noqa: BLE001 -- a bug: show everything, then say so in one line
        traceback.print_exc()
        print(f"{PROG}: internal error (a bug; please report it with the traceback above)", file=sys.stderr)
        return int(ExitCode.INTERNAL)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        warnings.showwarning = shown
        logger.removeHandler(handler)
    return int(ExitCode.OK)
