"""What the commands share: the option definitions (one each), the subcommands' Typer app, and the
network as the commands load it (`Loader`: weights resolved with a download bar, then the extractor,
with the spinner's text following each step). Nothing here imports torch."""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from . import FPS_RANGE, FRAMES_RANGE
from .report import PROG, Report, duration

HELP_OPTIONS = ("-h", "--help")
APP_SETTINGS = dict(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": list(HELP_OPTIONS)},
)
OUTPUT, MODEL = "Clip", "Model and device"


def _tile(value: int) -> int:
    if 0 < value < 32:
        raise typer.BadParameter("use 0 (the whole photo in one pass) or at least 32")
    return value


# Options of the single-photo command that `batch` shares: one definition each.
def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value}: use a number")
    return value


Fps = Annotated[float, typer.Option(min=FPS_RANGE[0], max=FPS_RANGE[1], callback=_finite, rich_help_panel=OUTPUT,
                                    help="Frames per second (a GIF or WebP plays at most 50).")]
Frames = Annotated[int, typer.Option(
    min=FRAMES_RANGE[0], max=FRAMES_RANGE[1], metavar="N", rich_help_panel=OUTPUT,
    help="Instants of the exposure the clip shows ({}-{}), made from the network's frames; --frames 7 --fps 10 "
         "shows the seven the network predicts as they are.".format(*FRAMES_RANGE))]
Pingpong = Annotated[bool, typer.Option(
    "--pingpong/--no-pingpong", rich_help_panel=OUTPUT,
    help="Play the frames forward then back: one photo cannot tell which way time ran.")]
Loops = Annotated[int, typer.Option(min=1, max=1000, metavar="N", rich_help_panel=OUTPUT,
                                    help="Repeat the sequence N times in an mp4.")]
Reverse = Annotated[bool, typer.Option("--reverse", rich_help_panel=OUTPUT,
                                       help="Start from the other end of the exposure.")]
MaxSize = Annotated[Optional[int], typer.Option(
    min=1, metavar="PX", show_default=False, rich_help_panel=OUTPUT,
    help="Shrink the photo first so its long side is at most PX (faster, smaller clip). Without it an MP4 "
         "is scaled to at most 3840 px (H.264 level 5.1) and a GIF or WebP to 1080 px; the still and a frames "
         "folder keep the photo's size.")]
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
Engine = Annotated[Literal["auto", "onnx", "torch"], typer.Option(
    envvar="BLUR2CLIP_ENGINE", rich_help_panel=MODEL,
    help="What runs the network. auto: onnxruntime on the CPU when the weights have an ONNX file (the shipped "
         "ones do; `blur2clip weights export` makes one), else torch (GPUs, bf16/fp16, weights without one).")]
Threads = Annotated[int, typer.Option(
    min=0, max=1024, metavar="N", envvar="BLUR2CLIP_THREADS", rich_help_panel=MODEL,
    help="CPU threads for the network (0: the engine's default).")]
MaxPixels = Annotated[Optional[int], typer.Option(
    min=1, metavar="N", show_default=False, envvar="BLUR2CLIP_MAX_PIXELS", rich_help_panel=MODEL,
    help="Refuse photos with more than N pixels (default: 200 million).")]
Quality = Annotated[Literal["high", "medium", "low"], typer.Option(
    rich_help_panel=OUTPUT, help="Encoding quality: MP4 rate factor 18/23/28, WebP 90/80/65, GIF 256/128/64 "
                                 "colours. Lower is smaller.")]
Crf = Annotated[Optional[int], typer.Option(
    min=0, max=51, metavar="N", show_default=False, rich_help_panel=OUTPUT,
    help="H.264 rate factor of an MP4 (1 .. 51; lower is better and larger), instead of --quality's; 0 is "
         "lossless, which many players do not play.")]
StripMetadata = Annotated[bool, typer.Option(
    "--strip-metadata", rich_help_panel=OUTPUT,
    help="Keep none of the photo's metadata (time taken, camera, GPS location, EXIF, XMP) in the clip or the "
         "still. By default it is kept where the format can hold it.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")]



commands = typer.Typer(name=PROG, no_args_is_help=True, **APP_SETTINGS)


@commands.callback()
def _commands() -> None:
    """blur2clip's subcommands (the clip itself is `blur2clip PHOTO`)."""


RUN, TRAINING, LOSS, NETWORK = "Run", "Training", "Loss", "Network (new runs only)"


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


def short_name(key: str) -> str:
    """A weights name or path as a bar's label; a URL by its file name."""
    if key.startswith(("http://", "https://")):
        return key.rstrip("/").rsplit("/", 1)[-1]
    return key




class Loader:
    """The network as a command loads it: `load` makes the extract.Extractor the first time it is called
    (make_clip and run_batch call it once a photo needs it, so a bad photo or output is reported before
    the weights load), showing each step beside the spinner and the tiles done while frames are made."""

    def __init__(self, report: Report, **options):
        self.report, self.options, self.extractor = report, options, None

    def load(self):
        if self.extractor is None:
            from .device import emulated
            from .extract import Extractor
            from .weights import resolve

            self.report.step("Finding weights…")
            key = self.options["weights"]
            with self.report.downloading(f"weights {short_name(key or 'default')}") as progress:
                path = resolve(key, progress=progress)  # a name or URL may download; a bar shows it
            self.report.step("Loading weights…")
            self.extractor = Extractor(**{**self.options, "weights": path})
            slow = emulated(str(self.extractor.device), self.extractor.precision)
            if slow is not None:
                logging.getLogger(PROG).warning(slow)  # one line: blur2clip: warning: ...
            self.extractor.on_tile = self._progress
            self._start = None
        return self.extractor

    def _progress(self, done: int, total: int) -> None:
        """The spinner's text while tiles run (shown on a terminal only)."""
        if done <= self.extractor.batch or self._start is None:
            self._start = time.perf_counter()
        left = (time.perf_counter() - self._start) / done * (total - done)
        bar = "━" * round(20 * done / total) + "╌" * (20 - round(20 * done / total))
        self.report.step(f"Extracting frames… {bar} {done}/{total} tiles, {duration(left)} left")
