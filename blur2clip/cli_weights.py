"""`blur2clip weights ...`: list, download, verify, path and import weights files (weights.py does the
work; this shows it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .cli_options import APP_SETTINGS, commands
from .report import ExitCode, Report

weights_app = typer.Typer(no_args_is_help=True, **APP_SETTINGS)
commands.add_typer(weights_app, name="weights")


@weights_app.callback()
def _weights() -> None:
    """List, download, verify, import and export weights files; where the cache is.

    Downloads and imports go to the cache folder (`blur2clip weights path`; BLUR2CLIP_HOME moves it).
    BLUR2CLIP_WEIGHTS_URL names a mirror to download from first; BLUR2CLIP_OFFLINE=1 never downloads.
    """


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
    with report.running("Listing…"):
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
    with report.running("Reading the manifest…"):
        if every:
            names = [n for n, entry in weights.read_manifest().items() if "alias" not in entry]
    for name in dict.fromkeys(names if not report.failures else []):
        with report.running(f"Checking {name}…"):
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
    with report.running("Verifying…"):
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

    report = Report(quiet=True)
    with report.running(""):
        report.result(cache_dir())
    report.exit()


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
    with report.running("Importing…"):
        info = import_file(file, name)
        report.result(info.name)
        report.info(f"imported {file} as {info.name} (stage {info.stage}): "
                    f"blur2clip PHOTO --weights {info.name}")
    report.exit()


@weights_app.command("export", no_args_is_help=True)
def weights_export(
    file: Annotated[str, typer.Argument(metavar="FILE", show_default=False,
                                        help="A .safetensors file (e.g. one that `blur2clip train` wrote), or a "
                                             "weights name.")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="OUT.onnx", show_default=False,
        help="Where to write it. Default: beside FILE, as FILE.onnx, where --weights FILE finds it.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only results and errors.")] = False,
) -> None:
    """Write the ONNX file of a weights file, for the onnxruntime engine (no torch needed to run it).

    With the ONNX file beside it, `blur2clip PHOTO --weights FILE` runs on the CPU in onnxruntime. Prints
    the ONNX file's path. Needs torch and onnx (pip install 'blur2clip\\[torch]'); the same weights always
    give the same bytes.
    """
    from .onnxfile import export_onnx
    from .weights import resolve

    report = Report(quiet)
    with report.running("Exporting…"):
        out = export_onnx(file, output, overwrite)
        report.result(out)
        found = resolve(file).with_suffix(".onnx")  # where --weights FILE (a path or a name) looks for it
        report.info(f"exported {file} to {out}: blur2clip PHOTO --weights {file}" if Path(out).resolve() ==
                    found.resolve() else f"exported {file} to {out} (to run --weights {file} in onnxruntime, put "
                    f"it at {found})")
    report.exit()
