"""`blur2clip batch DIR`, and several photos given to `blur2clip`: many photos, one clip each, with
progress, resume and a summary (batch.py does the work; this shows it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from . import CLIP_FPS, CLIP_FRAMES
from .cli_options import (DEFAULT_TILE, OUTPUT, Crf, Device, Engine, Fps, Frames, Loader, Loops, MaxPixels,
                          MaxSize, Overwrite, Pingpong, Precision, Quality, Quiet, Reverse, StripMetadata, Threads,
                          Tile, Weights, commands)
from .report import BatchProgress, ExitCode, Report, exit_code, stopped

def clip_notes(options, capped: bool) -> list[str]:
    """What stderr says of clips made with these options that is not what was asked for: a size capped
    (`capped`: it was, or, for a batch, may be), a rate above what the format plays, crf 0's profile."""
    from .clipwriter import ANIMATED_MAX_FPS, MP4_MAX_SIZE
    from .media import ANIMATED_MAX_SIZE

    kind, notes = options.fmt, []
    if capped and kind == "mp4":
        notes.append(f"mp4 clips are made at most {MP4_MAX_SIZE} px on the long side, within H.264 level 5.1 "
                     "(what 4K players decode); --max-size PX for another size")
    elif capped:
        notes.append(f"{kind} clips are made at most {ANIMATED_MAX_SIZE} px on the long side; --max-size PX "
                     "for another size")
    if kind in ("gif", "webp") and options.fps > ANIMATED_MAX_FPS:
        notes.append(f"{kind} clips play at most {ANIMATED_MAX_FPS:g} fps (browsers slow faster frames to 10 "
                     f"fps), so this one plays at {ANIMATED_MAX_FPS:g}; an mp4 plays at {options.fps:g}")
    if kind == "mp4" and options.crf == 0:
        notes.append("--crf 0 is lossless H.264 (the High 4:4:4 Predictive profile), which many players, "
                     "browsers and phones do not play; --crf 1 or more plays everywhere")
    return notes


def several_photos(photos: list[Path], output: Optional[Path], options, model: dict, quiet: bool) -> None:
    """Several photos of one command: each to its clip beside it or in OUT/, as `batch` does them (an
    existing clip is skipped unless --overwrite); ends the command."""
    from . import batch

    report = Report(quiet)
    jobs = None
    with report.running("Checking…"):
        jobs = batch.plan_photos(photos, output, options.fmt)
    if jobs is None:
        report.exit()
    _run_jobs(report, jobs, [], options, model, json_lines=False, fail_fast=False, min_motion=None)


FOLDER = "Folder"


@commands.command("batch", no_args_is_help=True)
def batch_command(
    folder: Annotated[Path, typer.Argument(metavar="DIR", show_default=False, help="The folder of photos.")],
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
             "reported as skipped with their motion score. Pixels of the clip: with --max-size, of the "
             "shrunk photo, where a blur is shorter (and a short one may not be found at all).")] = None,
    weights: Weights = None,
    device: Device = "auto",
    precision: Precision = "auto",
    engine: Engine = "auto",
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
    to stderr. Exit code 1 when some photos failed, 130 when interrupted, 143 on SIGTERM, 141 when stdout
    was closed (run again to resume).
    """
    from . import batch, outputs
    from .errors import output_error
    from .job import ClipOptions

    report = Report(quiet)
    out = out_dir if out_dir is not None else batch.default_out_dir(folder)
    found = jobs = None
    with report.running("Looking for photos…"):
        found = batch.find_photos(folder, recursive, out)  # first: a folder of photos that is not there
        blocked = outputs.not_a_folder(out)
        if blocked is not None:
            raise output_error(blocked, "not a folder")
        jobs = batch.plan(found.photos, folder, out, fmt)
    if found is None or jobs is None:
        report.exit()
    options = ClipOptions(fmt=fmt, frames=frames, fps=fps, pingpong=pingpong, loops=loops, reverse=reverse,
                          max_size=max_size, quality=quality, crf=crf, metadata=not strip_metadata,
                          overwrite=overwrite, max_pixels=max_pixels)
    model = dict(weights=weights, device=device, precision=precision, tile=tile, threads=threads, engine=engine)
    others = [batch.PhotoResult(path, None, batch.SKIPPED, 0.0, reason) for path, reason in found.others]
    _run_jobs(report, jobs, others, options, model, json_lines, fail_fast, min_motion)


def _run_jobs(report: Report, jobs, others, options, model: dict, json_lines: bool, fail_fast: bool,
              min_motion: Optional[float]) -> None:
    """Run planned batch jobs with a progress display and the summary; ends the command with batch's
    exit code. others: results to list first (files that are not photos)."""
    from . import batch
    from .errors import one_line

    lazy = Loader(report, **model)
    show = BatchProgress(report, len(jobs), json_lines)
    for result in others:
        show.result(result)
    for note in clip_notes(options, capped=options.fmt in ("gif", "webp") and not options.max_size) if jobs else ():
        report.info(note)
    try:
        with show:
            run = batch.run_batch(jobs, options, extractor=lazy.load, on_event=show.event, min_motion=min_motion,
                                  fail_fast=fail_fast)
    except Exception as e:  # noqa: BLE001 -- not about one photo (weights, device): sorted, bugs re-raised
        code = exit_code(e)
        if code is None:
            raise
        report.fail(one_line(e), code)
        report.exit()
    run.results[:0] = others
    show.summary(run)
    raise typer.Exit(int(stopped()[0] if run.interrupted else ExitCode.FAILED if run.failed else ExitCode.OK))
