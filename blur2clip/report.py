"""What the command line shows and how it ends: results on stdout, progress, the summary and errors on
stderr (rich), and the exit code, all in one place.

`ExitCode` lists every status a command can end with; `Report` counts what a command wrote and what
failed and owns the code; `DownloadBar` and `BatchProgress` draw the progress of a weights download and
of a folder run; `score_table` lays out what `blur2clip eval` measured. Nothing here imports torch.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from .errors import (DataError, DeviceError, MediaError, SettingsError, WeightsError, is_out_of_memory,
                     one_line)

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
    OUTPUT = 4, ("the output exists (pass --overwrite), may not be written (a photo, a device, another run's) "
                 "or cannot be")
    WEIGHTS = 5, "the weights file is missing or unusable"
    DEVICE = 6, "the device asked for is not available, or it ran out of memory"
    INTERNAL = 70, "an unexpected error (a bug): the traceback is printed, please report it"
    INTERRUPTED = 130, "interrupted (Ctrl-C; training first finishes its step and writes its checkpoint)"
    STDOUT_CLOSED = 141, "stdout was closed by its reader (| head), which stops a run as Ctrl-C does"
    TERMINATED = 143, "stopped by SIGTERM, which is handled as Ctrl-C is"


class StdoutClosed(KeyboardInterrupt):
    """Whoever read stdout went away (`| head`): the command stops as Ctrl-C stops it (STDOUT_CLOSED)."""


_stdout_closed = False


def print_result(line: str) -> None:
    """One line of results on stdout. When its reader has gone, stdout is pointed at /dev/null (nothing
    later fails on it) and StdoutClosed is raised."""
    global _stdout_closed
    try:
        print(line, flush=True)
    except BrokenPipeError:
        import os

        _stdout_closed = True
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        raise StdoutClosed from None


def stopped() -> tuple[ExitCode, str]:
    """The exit code and the line of a command that a KeyboardInterrupt stopped: its stdout closed,
    SIGTERM, or Ctrl-C."""
    from .outputs import terminated

    if _stdout_closed:
        return ExitCode.STDOUT_CLOSED, "stopped (stdout was closed)"
    return (ExitCode.TERMINATED, "terminated") if terminated() else (ExitCode.INTERRUPTED, "interrupted")


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
        self._status = self._live = None  # the spinner and its display, while one runs

    # -- output ---------------------------------------------------------------------------------------

    def result(self, path) -> None:
        """A file or folder written (or a name registered): its path on stdout."""
        self.written.append(Path(path))
        print_result(str(path))

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
        for stop in (ExitCode.TERMINATED, ExitCode.STDOUT_CLOSED, ExitCode.INTERRUPTED):
            if stop in self.failures:
                return stop
        if not self.written and len(set(self.failures)) == 1:
            return self.failures[0]
        return ExitCode.FAILED

    def exit(self) -> None:
        raise typer.Exit(int(self.code))

    # -- progress and errors --------------------------------------------------------------------------

    def step(self, text: str) -> None:
        """A step begins: its text is shown beside the spinner (it decides nothing)."""
        if self._status is not None:
            self._status.update(text=text)

    @contextmanager
    def running(self, text: str):
        """Shows a spinner on a terminal; an expected error (one with a code in EXIT_CODES) becomes one
        line and its code (`fail`), anything else is a bug and propagates."""
        self.step(text)
        try:
            if self.quiet or not self.err.is_terminal:
                yield self
            else:
                from rich.live import Live
                from rich.spinner import Spinner

                # stdout stays stdout: rich would send print() through the stderr console while the
                # spinner runs, and `clip=$(blur2clip photo.jpg)` would get nothing
                self._status = Spinner("dots", text, style="status.spinner")
                with Live(self._status, console=self.err, transient=True, refresh_per_second=12.5,
                          redirect_stdout=sys.stdout.isatty()) as self._live:
                    yield self
        except KeyboardInterrupt:
            code, line = stopped()
            self.fail(line, code, label="")
        except Exception as e:  # noqa: BLE001 -- sorted by exit_code; the unexpected ones are re-raised
            code = exit_code(e)
            if code is None:
                raise
            self.fail(one_line(e), code)
        finally:
            self._status = self._live = None

    @contextmanager
    def downloading(self, label: str):
        """A progress callback for the weights functions (progress(done, total)): a bar with size and
        speed on stderr, shown once bytes arrive; the spinner pauses meanwhile. None when quiet."""
        if self.quiet:
            yield None
            return
        bar = DownloadBar(self.err, label, self._live)
        try:
            yield bar
        finally:
            bar.close()


class DownloadBar:
    """progress(done, total) as a rich bar on stderr: name, bar, bytes of total, speed, time left.

    Starts on the first call (a file already present shows nothing); `used` says whether it did."""

    def __init__(self, console: Console, label: str, pause=None):
        self.console, self.label, self.pause = console, label, pause
        self.progress = self.task = None
        self.resumed = 0  # bytes from an earlier attempt: not part of the speed

    @property
    def used(self) -> bool:
        return self.progress is not None

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is None:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            if self.pause is not None:
                self.pause.stop()  # one live display at a time
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), console=self.console,
                                     redirect_stdout=False, redirect_stderr=False)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total, completed=done)
            self.resumed = done
        else:
            self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            task = self.progress.tasks[0]
            if task.finished and task.elapsed:  # the last line shows the average speed
                task.finished_speed = (task.completed - self.resumed) / task.elapsed
            self.progress.stop()
            if self.pause is not None:
                self.pause.start()


# The exit code of every expected error, by its type: the first row that matches decides. An error that
# matches none is a bug (exit code 70, with its traceback).
EXIT_CODES: tuple[tuple[type[BaseException], str | None, ExitCode], ...] = (
    (MediaError, "input", ExitCode.INPUT),  # a photo that cannot be read
    (MediaError, "output", ExitCode.OUTPUT),  # an output that exists, may not or cannot be written
    (WeightsError, None, ExitCode.WEIGHTS),
    (DeviceError, None, ExitCode.DEVICE),
    (MemoryError, None, ExitCode.DEVICE),  # and torch's OutOfMemoryError: see exit_code
    (DataError, None, ExitCode.INPUT),
    (SettingsError, None, ExitCode.USAGE),
    (FileExistsError, None, ExitCode.OUTPUT),
    (OSError, None, ExitCode.INPUT),  # a file or folder given that cannot be read
)


def exit_code(e: BaseException) -> ExitCode | None:
    """The exit code of an expected error (EXIT_CODES), or None for a bug."""
    if is_out_of_memory(e):
        return ExitCode.DEVICE
    for kind, sub, code in EXIT_CODES:
        if isinstance(e, kind) and (sub is None or getattr(e, "kind", None) == sub):
            return code
    return None


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min" if seconds < 3600 else \
        f"{seconds / 3600:.1f} h"


class BatchProgress:
    """What `batch` shows: stdout gets each clip's path (or a JSON line per file); stderr a rich bar with
    count, ETA and the current file on a terminal, a plain line per file otherwise, nothing when quiet
    (but failures); then the summary."""

    def __init__(self, report: Report, total: int, json_lines: bool):
        self.report, self.total, self.json_lines = report, total, json_lines
        self.count = 0
        self.progress = self.task = None

    def __enter__(self):
        if not self.report.quiet and self.report.err.is_terminal and self.total:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("[bold]clips"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[file]}"), console=self.report.err,
                                     transient=True, redirect_stdout=sys.stdout.isatty(), redirect_stderr=False)
            self.task = self.progress.add_task("clips", total=self.total, file="")
            self.progress.start()
            self.report._live = self.progress  # a weights download pauses the bar
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.report._live = None

    def event(self, kind: str, job, result) -> None:
        if kind == "start":
            if self.progress is not None:
                self.progress.update(self.task, file=str(job.input))
            return
        from .batch import EXISTS, OTHER_RUN

        if result.error in (EXISTS, OTHER_RUN):  # clips made before or elsewhere: not this run's work
            self.total -= 1
            if self.progress is not None:
                self.progress.update(self.task, total=self.total)
        else:
            self.count += 1
            if self.progress is not None:
                self.progress.advance(self.task)
        self.result(result)

    def result(self, r) -> None:
        from .outputs import printable

        if self.json_lines:
            import json

            print_result(json.dumps(r.as_dict()))
        elif r.status == "done":
            self.report.result(r.output)
        err = self.report.err if self.progress is None else self.progress.console
        if r.status == "failed":
            err.print(Text.assemble((f"{PROG}: error: ", "bold red"), r.error))
        elif self.report.quiet or self.progress is not None:
            return
        elif r.status == "done":
            self.report.info(f"[{self.count}/{self.total}] {printable(r.input)} -> {r.output} ({r.seconds:.1f} s)")
        elif r.output is None:
            self.report.info(f"skipped {printable(r.input)}: {r.error}")

    def summary(self, run) -> None:
        """The table on stderr: counts, then each failure and each skipped file with its reason."""
        if self.report.quiet:
            return
        from rich.table import Table

        from .batch import EXISTS, OTHER_RUN
        from .outputs import printable

        table = Table(box=None, header_style="bold", show_edge=False, pad_edge=False)
        for column in ("status", "file", "reason"):
            table.add_column(column, overflow="fold")
        for r in run.failed:
            table.add_row("[red]failed[/]", printable(r.input), Text(_reason(r)))
        for r in run.skipped:
            if r.error not in (EXISTS, OTHER_RUN):
                table.add_row("[yellow]skipped[/]", printable(r.input), Text(r.error or ""))
        for reason, why in ((EXISTS, "clip already made (--overwrite remakes it)"),
                            (OTHER_RUN, "taken by another blur2clip run at the same time")):
            n = sum(r.error == reason for r in run.skipped)
            if n:
                table.add_row("[dim]skipped[/]", f"{n} photo{'s' * (n != 1)}", why)
        if table.row_count:
            self.report.err.print(table)
        if not run.results:
            self.report.info("no photos found (sub-folders are searched with --recursive)")
            return
        done = len(run.done)
        rate = f" ({done / run.seconds * 60:.1f} photos/min)" if done and run.seconds else ""
        self.report.info(f"{done} done, {len(run.skipped)} skipped, {len(run.failed)} failed "
                         f"in {duration(run.seconds)}{rate}")
        left = len(run.pending)
        if run.interrupted:
            self.report.info(f"{stopped()[1]}: {left} photo{'s' * (left != 1)} not done; run again to resume"
                             if left else stopped()[1])
        elif run.stopped:
            self.report.info(f"stopped at the first failure (--fail-fast): {left} not done")


def _reason(r) -> str:
    """A failure's reason without the file name that media's messages start with."""
    from .outputs import printable

    prefix = f"{printable(r.input)}: "
    return r.error[len(prefix):] if r.error and r.error.startswith(prefix) else r.error or ""


def score_table(result) -> str:
    """The evaluation as an aligned text table: model (blurred input) per figure; "-" where a figure has no
    baseline (the reblur: the input copied to every frame averages back to itself)."""
    names = {"ppsnr": "pPSNR dB", "ssim": "SSIM", "middle": "middle dB", "middle_ssim": "middle SSIM",
             "outer": "outer dB", "reblur": "reblur dB", "moves": "moves px (true)"}
    figures = [k for k in names if k in result.mean.model]

    def cell(scores, k):
        if k == "moves":  # the frames' travel, first to last, beside the true frames'
            return f"{scores.model[k]:.1f} ({scores.model['moves_true']:.1f})"
        f = ".4f" if "ssim" in k else ".2f"
        base = format(scores.baseline[k], f) if k in scores.baseline else "-"
        return f"{scores.model[k]:{f}} ({base})"

    rows = [[s.name, str(s.samples)] + [cell(s, k) for k in figures] for s in [*result.sequences, result.mean]]
    head = ["sequence", "samples"] + [names[k] for k in figures]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

    return "\n".join([f"{result.data} ({result.layout}), weights {result.weights}: model (blurred input)",
                      line(head), *map(line, rows[:-1]), "-" * len(line(head)), line(rows[-1])])
