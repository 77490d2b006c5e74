"""The command line: `blur2clip PHOTO [-o OUT]` makes the clip; `blur2clip COMMAND ...` the rest.

Each command parses its options, calls the library and reports through `report.py`: results (the paths
written) on stdout, one per line; progress, the one-line summary and errors on stderr; the exit code of
an error follows from its type (report.EXIT_CODES), listed in --help and README. The subcommands live
in cli_batch (batch), cli_train (train, plot) and cli_weights (weights), eval here; their shared options
in cli_options.

Typer cannot have a default command beside subcommands, so `main` dispatches: when the first argument
that is not an option is the name of a subcommand, the `commands` app runs; otherwise the single-photo
app does. Adding a subcommand (`batch`, `weights`, `eval`) is one function under
`@commands.command("NAME")` (named there: dispatch reads the names without building the group) and
`blur2clip --help` lists it. Nothing here imports torch until a command runs, so --help and --version
stay fast. The `blur2clip` command is `run`: `main`, then out of the process without the interpreter's
teardown.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from . import CLIP_FPS, CLIP_FRAMES, FRAMES_RANGE
from . import cli_train, cli_weights  # noqa: F401 -- their commands join `commands`
from .cli_batch import clip_notes, several_photos
from .cli_options import (APP_SETTINGS, DEFAULT_TILE, HELP_OPTIONS, OUTPUT, RUN, Crf, DataDir, Device, Engine, Fps,
                          Frames, FramesPerBlur, Layout, Loader, Loops, MaxPixels, MaxSize, Overwrite, Pingpong,
                          Precision, Quality, Quiet, Reverse, StripMetadata, Threads, Tile, Weights, commands)
from .cli_train import data_errors
from .device import TORCH_EXTRA
from .report import PROG, ExitCode, Report, duration, exit_codes_help, score_table, stopped

# ----------------------------------------------------------------------------------------------------
# blur2clip PHOTO: the single-photo app

ENGINE_NAMES = {"onnx": "onnxruntime", "torch": "torch"}

photo_app = typer.Typer(**APP_SETTINGS)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"{PROG} {__version__}")
        raise typer.Exit()


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
    engine: Engine = "auto",
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
    from .job import ClipOptions

    if len(photos) == 1 and output not in (None, "-") and fmt is not None:  # (clip_output: as make_clip does)
        from .media import MediaError, clip_output

        try:  # `shots/*.jpg -o clips/ --format gif` finding one photo: into the folder, as for several
            output = str(clip_output(photos[0], output, fmt))
        except MediaError as e:
            _usage(ctx, str(e))
    kind = _clip_kind(ctx, output, fmt, several=len(photos) > 1)
    output = Path(output) if output is not None else None
    options = ClipOptions(fmt=kind, frames=frames, fps=fps, pingpong=pingpong, loops=loops, reverse=reverse,
                          max_size=max_size, quality=quality, crf=crf, metadata=not strip_metadata,
                          overwrite=overwrite, max_pixels=max_pixels)
    model = dict(weights=weights, device=device, precision=precision, tile=tile, threads=threads, engine=engine)
    if len(photos) > 1:
        if still is not None:
            _usage(ctx, "--still takes one photo; give one PHOTO", "--still")
        several_photos(photos, output, options, model, quiet)
    report = Report(quiet)
    with report.running("Checking…"):
        from .job import make_clip

        lazy = Loader(report, **model)  # loads once the outputs passed make_clip's checks
        result = make_clip(photos[0], output, options, still=still, extractor=lazy.load, on_output=report.result,
                           on_step=report.step)
        used = lazy.extractor
        repeats = f" x{loops}" if kind == "mp4" and loops > 1 else ""
        report.info(f"{result.output}: {result.width}x{result.height}, {result.frames} frames{repeats} at "
                    f"{result.fps:g} fps, motion {result.motion:.1f} px, made in {result.seconds:.1f} s on "
                    f"{used.device} ({used.precision}, {ENGINE_NAMES[used.engine]})")
        for note in clip_notes(options, capped=result.capped):
            report.info(note)
    report.exit()


def _usage(ctx: typer.Context, message: str, option: str = "'-o' / '--output'") -> None:
    """Stop with a usage error about an option: the usage line, then the message; exit code 2."""
    raise typer.BadParameter(message, ctx=ctx, param_hint=option)


def _clip_kind(ctx: typer.Context, output: Optional[str], fmt: Optional[str], several: bool) -> str:
    """The clip format that OUT and --format ask for; a usage error when OUT's suffix names no format and
    --format is not given, for `-o -`, and (with several photos) for an OUT that is not a folder."""
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
    return fmt or named  # (a name and a --format that disagree: refused before, by media.clip_output)


# ----------------------------------------------------------------------------------------------------
# blur2clip eval: weights scored on a data folder

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
        help="Score centred PX x PX crops (faster). Default: whole frames; photos: 256 (at most 1024).")] = None,
    json_out: Annotated[bool, typer.Option("--json", rich_help_panel=RUN,
                                           help="Print the figures as JSON instead of a table.")] = False,
    frames: Annotated[Optional[int], typer.Option(
        "--frames", min=FRAMES_RANGE[0], max=FRAMES_RANGE[1], metavar="N", show_default=False, rich_help_panel=RUN,
        help="Score N instants of the exposure (the centres of N equal windows). Default: the network's "
             "own frames, or the frames per blur when footage makes fewer.")] = None,
    interpolate: Annotated[Literal["guarded", "linear", "nearest"], typer.Option(
        rich_help_panel=RUN,
        help="How instants between the network's frames are made (with --frames): blended where the two "
             "frames agree, else the nearer one (guarded); blended everywhere (linear); the nearer frame "
             "(nearest). A travel head renders every instant exactly instead.")] = "guarded",
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
    with report.running("Reading the data…"):
        from . import errors
        from .data import open_data
        from .evaluation import check_save_folder, evaluate, predictor

        if save_frames is not None:  # now, not after the scoring
            check_save_folder(save_frames, data)

        extractor = Loader(report, weights=weights, device=device, precision=precision, tile=tile,
                           threads=threads).load()
        report.step("Reading the data…")
        with data_errors():
            count = frames or extractor.config.frames
            try:
                d = open_data(data, layout, frames_per_blur, frames=count)
            except errors.SettingsError:  # more than the frames per blur make: as many as they make
                if frames:
                    raise
                count = frames_per_blur
                d = open_data(data, layout, frames_per_blur, frames=count)
            d.check_eval_size(size)
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
            report.step(text + "…")
            if not report.err.is_terminal and now - shown >= EVAL_PROGRESS_EVERY and len(done) < total:
                report.info(text)  # plain lines into a log file, where no spinner is shown
                shown = now

        report.step(f"Scoring {total} samples…")
        with data_errors():
            own = count == extractor.config.frames
            result = evaluate(d, predictor(extractor, None if own else count, interpolate), samples, size,
                              weights=weights or "default", on_sample=tick, save=save_frames, all_photos=all_photos)
        report.info(f"scored {result.mean.samples} samples of {len(result.sequences)} sequences in "
                    f"{duration(time.perf_counter() - start)} on {extractor.device} ({extractor.precision})")
    if result is not None:
        print(json.dumps(result.to_dict(), indent=2) if json_out else score_table(result), flush=True)
    report.exit()


# ----------------------------------------------------------------------------------------------------
# Dispatch


def subcommand_names() -> list[str]:
    """The subcommands' names as registered (each is named where it is registered): building the click
    group to read them would cost a photo 0.03 s."""
    return [info.name for info in (*commands.registered_commands, *commands.registered_groups)]


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


def _plain_in_usage(param):
    """A required argument's make_metavar whose usage form is its name (PHOTO..., not Typer's {PHOTO}...)."""
    made = param.make_metavar

    def make_metavar(ctx, *, usage: bool = False) -> str:
        if not usage:
            return made(ctx, usage=usage)
        return (param.metavar or (param.name or "").upper()) + ("..." if param.nargs != 1 else "")
    return make_metavar


def _unwrap(command) -> None:
    """Join the lines of each help paragraph (Typer's rich help would keep the docstring's line breaks;
    a paragraph that starts with \\b keeps them), in a command and its subcommands; flags take no value,
    so their help shows none (Typer would show <bool>), and a required argument reads as its name."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        if param.param_type_name == "argument" and param.required:  # usage: PHOTO..., not Typer's {PHOTO}...
            param.make_metavar = _plain_in_usage(param)
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
    from .outputs import sigterm_as_interrupt

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
        if set(HELP_OPTIONS) & set(args):  # made only for the help it ends (another 0.03 s of a photo)
            command.epilog = _photo_epilog()
    _unwrap(command)
    try:
        command.main(args, prog_name=PROG, standalone_mode=True)
    except SystemExit as e:  # standalone mode always ends here, with the code
        return int(e.code) if isinstance(e.code, int) else int(e.code is not None)
    except KeyboardInterrupt:
        code, line = stopped()
        print(f"{PROG}: {line}", file=sys.stderr)
        return int(code)
    except Exception as e:  # noqa: BLE001 -- a bug: show everything, then say so in one line
        missing = (e.name or "").split(".")[0] if isinstance(e, ModuleNotFoundError) else None
        if missing in ("torch", "torchmetrics"):  # train or eval on an install without torch: not a bug
            print(f"{PROG}: error: this needs {missing}, which is not installed ({TORCH_EXTRA})", file=sys.stderr)
            return int(ExitCode.DEVICE)
        traceback.print_exc()
        print(f"{PROG}: internal error (a bug; please report it with the traceback above)", file=sys.stderr)
        return int(ExitCode.INTERNAL)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        warnings.showwarning = shown
        logger.removeHandler(handler)
    return int(ExitCode.OK)


def run() -> None:
    """The `blur2clip` command (and `python -m blur2clip`): `main` on sys.argv, then out of the process at
    once with its exit code. By then every output is complete or removed and every child waited for; the
    interpreter's own teardown (onnxruntime's session and threads, every module's cleanup) would add
    0.05 s to a 2.4 s photo. stdout and stderr are flushed first (a closed pipe there changes nothing)."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
