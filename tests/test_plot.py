"""Training curves: round ticks, labelled axes with gridlines, and several runs in one picture."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blur2clip import plot
from blur2clip.errors import MediaError
from blur2clip.cli import main


def write_log(path: Path, stages=(1, 2), steps: int = 40, val_every: int = 20, key: str = "ppsnr",
              level: float = 25.0) -> Path:
    """A log.jsonl as a run writes it: a loss record per step, a validation record every val_every steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for stage in stages:
        for step in range(1, steps + 1):
            lines.append({"stage": stage, "step": step, "loss": 0.1 / (1 + step / 10), "lr": 1e-3})
            if step % val_every == 0:
                lines.append({"stage": stage, "step": step, "val": {key: level + step / 20, "reblur": 40.0},
                              "baseline": {key: level}})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_ticks_are_round_values_within_the_range():
    assert plot.nice_ticks(0, 300, 8) == [0, 50, 100, 150, 200, 250, 300]
    assert plot.nice_ticks(24.2, 25.6) == [24.5, 25.0, 25.5]
    assert plot.nice_ticks(0.013, 0.061, 4) == pytest.approx([0.02, 0.04, 0.06])
    assert plot._log_ticks(-3, 1) == pytest.approx([0.001, 0.01, 0.1, 1, 10])  # log axis: powers of ten
    assert plot._log_ticks(-1.5, -0.9) == pytest.approx([0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1])


def _rows_of(img: Image.Image, colour, x0: int, x1: int) -> list[int]:
    """Rows where most pixels between x0 and x1 have `colour` (a horizontal line across the panel)."""
    a = np.asarray(img)[:, x0:x1]
    return [y for y in range(a.shape[0]) if (a[y] == colour).all(-1).mean() > 0.6]


def test_curves_have_gridlines_at_the_ticks_and_labelled_axes(tmp_path):
    png = plot.curves(write_log(tmp_path / "log.jsonl"), tmp_path / "curves.png")
    with Image.open(png) as im:
        img = im.convert("RGB")
    assert img.size == (plot.W, 2 * plot.H)
    grid = _rows_of(img, plot.GRID, plot.LEFT + 1, plot.W - plot.RIGHT - 1)
    lower = [y for y in grid if y > plot.H]
    assert len(lower) >= 3  # the validation panel: a gridline per round PSNR value
    a = np.asarray(img)
    dark = (a < 100).all(-1)
    # the y axis label (turned upright) left of the tick labels, the x axis label under each panel
    for top in (0, plot.H):
        assert dark[top + plot.TOP:top + plot.H - plot.BOTTOM, :16].any()
    assert dark[plot.H - 24:plot.H - 4, plot.W // 3:2 * plot.W // 3].any()
    assert dark[2 * plot.H - 24:2 * plot.H - 4, plot.W // 3:2 * plot.W // 3].any()


def test_several_runs_are_drawn_in_one_picture_one_colour_each(tmp_path):
    a = write_log(tmp_path / "a" / "log.jsonl")
    b = write_log(tmp_path / "b" / "log.jsonl", stages=(1,), key="middle", level=27.0)
    png = plot.runs([a, b], tmp_path / "both.png", names=["a", "b"])
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    for colour in plot.RUN_COLOURS[:2]:
        seen = (pixels == colour).all(-1)
        assert seen[:plot.H].sum() > 50 and seen[plot.H:].sum() > 50  # in the loss and in the validation panel
    assert not (pixels == plot.RUN_COLOURS[2]).all(-1).any()


def test_plot_command_draws_runs_and_refuses_what_it_cannot_do(tmp_path, capsys):
    write_log(tmp_path / "runs" / "a" / "log.jsonl")
    write_log(tmp_path / "runs" / "b" / "log.jsonl")
    out = tmp_path / "both.png"
    code = main(["plot", str(tmp_path / "runs" / "a"), str(tmp_path / "runs" / "b" / "log.jsonl"), "-o", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert stdout.strip() == str(out) and Image.open(out).format == "PNG"
    before = out.read_bytes()
    code = main(["plot", str(tmp_path / "runs" / "a"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 4 and "exists; pass --overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    assert main(["plot", str(tmp_path / "runs" / "a"), "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != before
    capsys.readouterr()
    code = main(["plot", str(tmp_path / "runs"), "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 3 and "no log.jsonl here" in err and len(err.strip().splitlines()) == 1
    code = main(["plot", str(tmp_path / "runs" / "a"), "-o", str(tmp_path / "x.jpg")])
    assert code == 2 and ".png" in capsys.readouterr().err
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not text")
    code = main(["plot", str(tmp_path / "photo.jpg"), "-o", str(tmp_path / "y.png")])
    err = capsys.readouterr().err
    assert code == 3
    assert err.strip() == f"blur2clip: error: {tmp_path / 'photo.jpg'}: not a training log (log.jsonl is text)"


def test_a_picture_that_cannot_be_put_in_place_leaves_no_temporary(tmp_path):
    log = write_log(tmp_path / "run" / "log.jsonl")
    taken = tmp_path / "curves.png"
    taken.mkdir()  # a folder where the picture should go: the rename fails
    (taken / "x").write_text("x")
    with pytest.raises(MediaError, match="curves.png: Is a directory") as e:
        plot.curves(log, taken)
    assert e.value.kind == "output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "run"]


def test_a_diverged_runs_curves_leave_out_what_is_not_a_number(tmp_path):
    log = write_log(tmp_path / "run" / "log.jsonl")
    with log.open("a") as f:  # what a diverged run logs (json writes NaN for float("nan"))
        f.write(json.dumps({"stage": 2, "step": 41, "loss": float("nan"), "lr": 1e-3}) + "\n")
        f.write(json.dumps({"stage": 2, "step": 41, "val": {"ppsnr": float("nan"), "reblur": float("inf")},
                            "baseline": {"ppsnr": 25.0}}) + "\n")
    loss, val, _ = plot.read_log(log)
    assert all(np.isfinite(v) for _, v in loss) and all(np.isfinite(v) for pts in val.values() for _, v, _ in pts)
    assert len(val["ppsnr"]) == 4  # two stages of two validations, the NaN left out
    with Image.open(plot.curves(log, tmp_path / "c.png")) as im:
        assert im.size[0] > 0


def test_records_of_the_wrong_types_are_left_out_as_a_cut_line_is(tmp_path, capsys):
    log = write_log(tmp_path / "run" / "log.jsonl")
    good = plot.read_log(log)
    with log.open("a") as f:
        for r in ({"stage": 1, "step": 2, "loss": "abc"}, {"stage": 1, "step": 3}, {"stage": "1", "step": 4, "loss": 1},
                  {"stage": 1, "step": 5, "val": {"ppsnr": "x"}, "baseline": {}}, {"stage": 1, "step": 6, "val": 3},
                  [1, 2], "text"):
            f.write(json.dumps(r) + "\n")
    assert plot.read_log(log) == good
    assert main(["plot", str(log), "-o", str(tmp_path / "c.png")]) == 0
