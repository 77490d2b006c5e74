"""The command line: `blur2clip PHOTO [-o OUT]` makes the clip; `blur2clip train ...` trains weights.

Thin: each command parses its options, calls the library and reports. Results (the paths written) go to
stdout, one per line; progress, the one-line summary and errors go to stderr. A `Report` counts what was
written and what failed and owns the exit code; the codes are `ExitCode`, listed in --help and README.

Typer cannot have a default command beside subcommands, so `main` dispatches: when the first argument
that is not an option is the name of a subcommand, the `commands` app runs; otherwise the single-photo
app does. Adding a subcommand (`batch`, `weights`, `eval`) is one function under `@commands.command()`:
dispatch and `blur2clip --help` find it by name. Nothing here imports torch until a command runs, so
--help and --version stay fast.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.text import Text

from . import __version__

PROG = "blur2clip"


class ExitCode(IntEnum):
    """Exit status of every command; each carries the line that --help and README show."""

    def __new__(cls, value: int, meaning: str):
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "done: everything asked for was written"
    FAILED = 1, "some items of a run failed, the others were written"
    USAGE = 2, "bad command line: unknown option, bad value, missing argument"
    INPUT = 3, "a photo or data folder is missing or cannot be read"
    OUTPUT = 4, "the output exists (pass --overwrite) or cannot be written"
    WEIGHTS = 5, "the weights file is missing or unusable"
    DEVICE = 6, "the device asked for is not available, or it ran out of memory"
    INTERNAL = 70, "an unexpected error (a bug): the traceback is printed, please report it"
    INTERRUPTED = 130, "interrupted (Ctrl-C), or training stopped after writing its checkpoint"


def exit_codes_help() -> str:
    return "\n".join(f"  {c.value:>3}  {c.meaning}" for c in ExitCode)


# ----------------------------------------------------------------------------------------------------
# Reporting


class Report:
    """What a command wrote and what failed. Results go to stdout; progress, the summary and errors to
    stderr (quiet: errors only). Expected errors become one line and a code; anything else is a bug and
    propagates with its traceback."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.written: list[Path] = []
        self.failures: list[ExitCode] = []
        self._status = None
        self._phase: tuple[ExitCode, tuple[type[BaseException], ...]] = (ExitCode.INPUT, ())

    # -- output ---------------------------------------------------------------------------------------

    def result(self, path) -> None:
        """A file or folder written: its path on stdout."""
        self.written.append(Path(path))
        print(path, flush=True)

    def info(self, message: str) -> None:
        """Progress or summary on stderr, unless quiet."""
        if not self.quiet:
            self.err.print(message, markup=False)

    def fail(self, message: str, code: ExitCode, label: str = "error") -> None:
        self.failures.append(code)
        prefix = f"{PROG}: {label}: " if label else f"{PROG}: "
        self.err.print(Text.assemble((prefix, "bold red"), str(message)))

    @property
    def code(self) -> ExitCode:
        if not self.failures:
            return ExitCode.OK
        if not self.written and len(set(self.failures)) == 1:
            return self.failures[0]
        return ExitCode.FAILED

    def exit(self) -> None:
        raise typer.Exit(int(self.code))

    # -- progress and errors --------------------------------------------------------------------------

    def step(self, text: str, code: ExitCode, *expected: type[BaseException]) -> None:
        """A step begins: show `text`; a MediaError or OSError from now on means `code`, and so do the
        exception types in `expected` (errors of this step that are about what the user gave)."""
        self._phase = (code, expected)
        if self._status is not None:
            self._status.update(text)

    @contextmanager
    def running(self, text: str, code: ExitCode, *expected: type[BaseException]):
        """Shows a spinner on a terminal and turns expected errors into `fail` (see `step`)."""
        self.step(text, code, *expected)
        try:
            if self.quiet or not self.err.is_terminal:
                yield self
            else:
                with self.err.status(text) as self._status:
                    yield self
        except KeyboardInterrupt:
            self.fail("interrupted", ExitCode.INTERRUPTED, label="")
        except Exception as e:  # noqa: BLE001 -- sorted below; the unexpected ones are re-raised
            code = self.classify(e)
            if code is None:
                raise
            self.fail(describe(e), code)
        finally:
            self._status = None

    def classify(self, e: BaseException) -> ExitCode | None:
        """The exit code of an expected error, or None for a bug."""
        from .media import MediaError
        from .weights import WeightsError

        phase_code, expected = self._phase
        if isinstance(e, WeightsError):
            return ExitCode.WEIGHTS
        if isinstance(e, FileExistsError):
            return ExitCode.OUTPUT
        if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":  # torch's, without torch
            return ExitCode.DEVICE
        if isinstance(e, (MediaError, OSError, *expected)):
            return phase_code
        return None


def describe(e: BaseException) -> str:
    """One line for an expected error (the library's messages already name the file)."""
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    if type(e).__name__ == "OutOfMemoryError":
        return "out of memory on the device; try --tile 256, --max-size, or --device cpu"
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


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


@photo_app.command(no_args_is_help=True)
def clip(
    photo: Annotated[Path, typer.Argument(metavar="PHOTO", show_default=False,
                                          help="The motion-blurred photo (JPEG, PNG, TIFF, WebP, ...).")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="OUT", show_default=False, rich_help_panel=OUTPUT,
        help="Where to write the clip; its suffix picks the format (a name ending in / or without a "
             "suffix: a folder of frames). Default: beside the photo, as NAME.mp4.")] = None,
    fmt: Annotated[Optional[Literal["mp4", "gif", "webp", "frames"]], typer.Option(
        "--format", show_default=False, rich_help_panel=OUTPUT,
        help="Clip format when OUT's suffix does not say; frames writes a folder of PNGs.")] = None,
    fps: Annotated[float, typer.Option(min=0.1, rich_help_panel=OUTPUT, help="Frames per second.")] = 10.0,
    pingpong: Annotated[bool, typer.Option(
        "--pingpong/--no-pingpong", rich_help_panel=OUTPUT,
        help="Play the frames forward then back: one photo cannot tell which way time ran.")] = True,
    loops: Annotated[int, typer.Option(min=1, metavar="N", rich_help_panel=OUTPUT,
                                       help="Repeat the sequence N times in an mp4.")] = 3,
    reverse: Annotated[bool, typer.Option("--reverse", rich_help_panel=OUTPUT,
                                          help="Start from the other end of the exposure.")] = False,
    still: Annotated[Optional[Path], typer.Option(
        metavar="FILE", show_default=False, rich_help_panel=OUTPUT,
        help="Also save the sharp middle frame as a photo (with the photo's EXIF).")] = None,
    max_size: Annotated[Optional[int], typer.Option(
        min=1, metavar="PX", show_default=False, rich_help_panel=OUTPUT,
        help="Shrink the photo first so its long side is at most PX (faster, smaller clip).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=OUTPUT,
                                            help="Replace outputs that already exist.")] = False,
    weights: Annotated[Optional[str], typer.Option(
        metavar="NAME|PATH|URL", envvar="BLUR2CLIP_WEIGHTS", show_default=False, rich_help_panel=MODEL,
        help="Weights: a name (default, stage1, stage2, stage3), a .safetensors file, or a URL to "
             "fetch it from once. Default: default, shipped with blur2clip.")] = None,
    device: Annotated[Literal["auto", "cpu", "cuda", "mps"], typer.Option(
        envvar="BLUR2CLIP_DEVICE", rich_help_panel=MODEL,
        help="auto: cuda if available, then mps, then cpu.")] = "auto",
    precision: Annotated[Literal["auto", "fp32", "bf16", "fp16"], typer.Option(
        envvar="BLUR2CLIP_PRECISION", rich_help_panel=MODEL,
        help="auto: fp32 on the CPU, bf16 or fp16 on a GPU.")] = "auto",
    tile: Annotated[int, typer.Option(
        min=0, metavar="PX", callback=_tile, rich_help_panel=MODEL,
        help="Work in overlapping tiles of PX (bounds memory; 0: the whole photo in one pass).")] = 512,
    threads: Annotated[int, typer.Option(
        min=0, metavar="N", envvar="BLUR2CLIP_THREADS", rich_help_panel=MODEL,
        help="CPU threads for the network (0: torch's default).")] = 0,
    max_pixels: Annotated[Optional[int], typer.Option(
        min=1, metavar="N", show_default=False, rich_help_panel=MODEL,
        help="Refuse photos with more than N pixels (default: the reader's limit).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Turn one motion-blurred PHOTO into a short clip of the sharp frames behind the blur.

    Prints the clip's path on stdout; progress and a summary go to stderr.
    """
    from . import media

    report = Report(quiet)
    with report.running("Checking…", ExitCode.USAGE):  # MediaError here: OUT's suffix names no format
        kind = media.clip_format(output, fmt) if output is not None else (fmt or "mp4")
        out = output if output is not None else media.default_output(photo, kind)
        if not overwrite:  # before loading anything; make_clip checks again
            for path in (out, still):
                if path is not None and path.exists():
                    raise FileExistsError(f"{path}: already exists (pass --overwrite to replace it)")

        report.step("Reading photo…", ExitCode.INPUT)
        from .pipeline import make_clip

        lazy = _Extractor(report, weights=weights, device=device, precision=precision, tile=tile,
                          threads=threads)
        result = make_clip(photo, out, fmt=kind, fps=fps, pingpong=pingpong, loops=loops, reverse=reverse,
                           still=still, max_size=max_size, overwrite=overwrite, max_pixels=max_pixels,
                           extractor=lazy)
        report.result(result.output)
        if result.still is not None:
            report.result(result.still)
        used = lazy.extractor
        repeats = f" x{loops}" if kind == "mp4" and loops > 1 else ""
        report.info(f"{result.output}: {result.width}x{result.height}, {result.frames} frames{repeats} at "
                    f"{fps:g} fps, made in {result.seconds:.1f} s on {used.device} ({used.precision})")
    report.exit()


class _Extractor:
    """The extractor as make_clip calls it: loads the weights on first use (so a bad photo or output is
    reported before the model loads) and tells the report which step is running."""

    def __init__(self, report: Report, **options):
        self.report, self.options, self.extractor = report, options, None

    def __call__(self, image, **kw):
        if self.extractor is None:
            from .pipeline import Extractor

            self.report.step("Loading weights…", ExitCode.DEVICE, ValueError)  # ValueError: no such device
            self.extractor = Extractor(**self.options)
        self.report.step("Extracting frames…", ExitCode.DEVICE)
        frames = self.extractor(image, **kw)
        self.report.step("Writing clip…", ExitCode.OUTPUT)
        return frames


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


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min" if seconds < 3600 else \
        f"{seconds / 3600:.1f} h"


@commands.command("train", no_args_is_help=True)
def train_command(
    data: Annotated[Path, typer.Option(metavar="DIR", show_default=False, rich_help_panel=RUN,
                                       help="Folder of sharp photos; one in ten is held out for validation.")],
    out: Annotated[Path, typer.Option(metavar="DIR", show_default=False, rich_help_panel=RUN,
                                      help="Run folder: stageN.safetensors, checkpoint, log.jsonl.")],
    stage: Annotated[Literal["1", "2", "3", "all"], typer.Option(
        rich_help_panel=RUN, help="1: the middle frame; 2: adds its neighbours; 3: all frames.")] = "all",
    steps: Annotated[str, typer.Option(metavar="N|N1,N2,N3", rich_help_panel=RUN,
                                       help="Steps per stage: one number for every stage, or one each.")]
    = "2000,2000,4000",
    resume: Annotated[bool, typer.Option("--resume", rich_help_panel=RUN,
                                         help="Continue from OUT's checkpoint.")] = False,
    init: Annotated[Optional[str], typer.Option(
        metavar="WEIGHTS", show_default=False, rich_help_panel=RUN,
        help="Start from these weights instead of the previous stage's file.")] = None,
    workers: Annotated[int, typer.Option(min=0, rich_help_panel=RUN,
                                         help="Processes synthesizing samples (0: in the main process).")] = 1,
    threads: Annotated[int, typer.Option(min=0, rich_help_panel=RUN,
                                         help="Torch threads in the main process (0: torch's default).")] = 0,
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
    batch: Annotated[int, typer.Option(min=1, rich_help_panel=TRAINING,
                                       help="Samples per step (split over torchrun's processes).")] = 8,
    crop: Annotated[int, typer.Option(min=16, metavar="PX", rich_help_panel=TRAINING,
                                      help="Side of the training samples.")] = 192,
    lr: Annotated[float, typer.Option(min=0.0, rich_help_panel=TRAINING, help="Peak learning rate.")] = 1e-3,
    warmup: Annotated[int, typer.Option(min=0, metavar="N", rich_help_panel=TRAINING)] = 100,
    weight_decay: Annotated[float, typer.Option(min=0.0, rich_help_panel=TRAINING)] = 1e-4,
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
    """Train staged weights on a folder of sharp photos.

    The photos get synthetic motion blur; the network learns to undo it.

    Every stage ends in OUT/stageN.safetensors, printed on stdout. Stop at any time (Ctrl-C, or SIGTERM
    from a scheduler): the checkpoint is written and --resume continues. Under torchrun:
    torchrun --nproc_per_node N -m blur2clip.train --data DIR --out DIR ...
    """
    steps_per_stage = _steps(steps)
    enc, dec = _ints(enc_blocks, "--enc-blocks"), _ints(dec_blocks, "--dec-blocks")
    if len(enc) != len(dec):
        raise typer.BadParameter("give as many decoder levels as encoder levels", param_hint="--dec-blocks")
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun only the first process reports
    report = Report(quiet or not rank0)
    with report.running("Preparing the validation set…", ExitCode.INPUT, ValueError):
        from .model import ModelConfig
        from .train import Stopped, TrainConfig, train

        cfg = TrainConfig(
            data=str(data), out=str(out), stage=stage, steps=steps_per_stage, batch=batch, crop=crop, lr=lr,
            weight_decay=weight_decay, warmup=warmup, w_middle=w_middle, w_pairs=w_pairs, w_reblur=w_reblur,
            ckpt_every=ckpt_every, val_every=val_every, val_count=val_count, val_size=val_size,
            log_every=log_every, seed=seed, workers=workers, threads=threads, init=init, resume=resume,
            model=ModelConfig(width=width, enc_blocks=enc, middle_blocks=middle_blocks, dec_blocks=dec,
                              frames=frames))

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
                        f"in {_duration(time.perf_counter() - start)}: {paths[-1]}")
    report.exit()


# Later subcommands hook in here, each a function under @commands.command():
#   blur2clip batch FOLDER...   many photos, one Report counting failures (exit 1 when some failed)
#   blur2clip weights ...       list, fetch and verify weights files
#   blur2clip eval ...          metrics of weights on a validation set


# ----------------------------------------------------------------------------------------------------
# Dispatch


def subcommand_names() -> list[str]:
    return list(typer.main.get_group(commands).commands)


def _photo_epilog() -> str:
    group = typer.main.get_group(commands)
    width = max(map(len, group.commands)) + 2
    lines = ["[b]Commands[/b] (blur2clip COMMAND --help for their options):"]
    lines += [f"  {name:<{width}}{cmd.get_short_help_str(limit=70)}" for name, cmd in group.commands.items()]
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


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    photo_command = typer.main.get_command(photo_app)
    if _is_subcommand(args, photo_command):
        command = typer.main.get_command(commands)
    else:
        command = photo_command
        command.epilog = _photo_epilog()
    try:
        command.main(args, prog_name=PROG, standalone_mode=True)
    except SystemExit as e:  # standalone mode always ends here, with the code
        return int(e.code) if isinstance(e.code, int) else int(e.code is not None)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception:  # noqa: BLE001 -- a bug: show everything, then say so in one line
        traceback.print_exc()
        print(f"{PROG}: internal error (a bug; please report it with the traceback above)", file=sys.stderr)
        return int(ExitCode.INTERNAL)
    return int(ExitCode.OK)
