"""Training curves as a PNG, drawn with Pillow: the loss per step above, validation figures below.

`curves(log, png)` reads one run's log.jsonl (records with "loss", and records with "val" and "baseline")
and writes png atomically: the loss, and each validation PSNR figure with the blurred-input baseline drawn
dashed in the same colour. `runs(logs, png, names)` draws several runs in one picture, one colour per run:
their losses, and below each run's main validation figure (pPSNR, or the middle frame's PSNR where only it
is known) with its baseline dashed. Stages follow each other along the x axis; both panels have labelled
axes and gridlines at round values.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"loss": (40, 90, 200), "ppsnr": (40, 90, 200), "middle": (200, 80, 40), "outer": (60, 150, 60)}
RUN_COLOURS = [(40, 90, 200), (200, 80, 40), (60, 150, 60), (150, 60, 170), (20, 150, 160), (180, 140, 20),
               (110, 110, 110), (220, 60, 120)]
W, H = 900, 300  # the picture's width, and the height of each panel
LEFT, RIGHT, TOP, BOTTOM = 76, 16, 26, 44  # a panel's margins: tick labels and axis labels
INK, GREY, GRID = (20, 20, 20), (90, 90, 90), (228, 228, 228)
X_LABEL = "step (the stages one after another)"


def read_log(path: Path) -> tuple[list[tuple[int, float]], dict[str, list[tuple[int, float, float]]], list[int]]:
    """(loss points, validation points per figure as (x, value, baseline), stage starts) on one x axis."""
    records: dict[tuple[int, int, str], dict] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a training log (log.jsonl is text)") from None
    for line in text.splitlines():
        try:
            r = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if _well_formed(r):  # (and not another program's line)
            records[(r["stage"], r["step"], "val" if "val" in r else "loss")] = r  # the last write of a step wins
    ends: dict[int, int] = {}
    for stage, step, _ in records:
        ends[stage] = max(ends.get(stage, 0), step)
    offset, starts = {}, []
    x = 0
    for stage in sorted(ends):
        offset[stage] = x
        starts.append(x)
        x += ends[stage]
    loss, val = [], {}
    for (stage, step, kind), r in sorted(records.items(), key=lambda kv: (offset[kv[0][0]] + kv[0][1])):
        gx = offset[stage] + step
        if kind == "loss" and math.isfinite(r["loss"]):
            loss.append((gx, r["loss"]))
        elif kind == "val":
            for k, v in r["val"].items():
                base = r["baseline"].get(k, v)
                if k in COLOURS and math.isfinite(v) and math.isfinite(base):  # a diverged run's NaN: not drawn
                    val.setdefault(k, []).append((gx, v, base))
    return loss, val, starts


def _well_formed(r) -> bool:
    """A log record as `train` writes it: stage and step whole numbers, then a loss, or validation figures
    with their baseline, as numbers."""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(r, dict) or not all(isinstance(r.get(k), int) and not isinstance(r.get(k), bool)
                                          for k in ("stage", "step")):
        return False
    if "val" in r:
        return (isinstance(r["val"], dict) and isinstance(r.get("baseline"), dict)
                and all(number(v) for v in (*r["val"].values(), *r["baseline"].values())))
    return number(r.get("loss"))


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) between lo and hi, about `count` of them."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [round(i * step, 12) for i in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values (not logarithms) for a log axis spanning 10**lo .. 10**hi."""
    def within(mantissas):
        return [m * 10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in mantissas
                if lo - 1e-9 <= e + math.log10(m) <= hi + 1e-9]

    ticks = within((1, 2, 5))
    if len(ticks) < 3:  # less than a decade: every digit
        ticks = within(range(1, 10))
    if len(ticks) > 8:
        ticks = [t for t in ticks if abs(math.log10(t) - round(math.log10(t))) < 1e-9]
    if len(ticks) < 2:
        ticks = [t for t in nice_ticks(10 ** lo, 10 ** hi, 4) if t > 0]
    return ticks


def _label(v: float) -> str:
    return f"{v:.4g}"


def _panel(img: Image.Image, top: int, title: str, ylabel: str, series, xmax: int, starts, log_y=False) -> None:
    """One panel at `top`: axes with labels and gridlines, then series [(colour, [(x, y)], dashed)]."""
    draw = ImageDraw.Draw(img)
    ys = [y for _, pts, _ in series for _, y in pts]
    draw.text((LEFT, top + 6), title, fill=INK)
    if not ys:
        draw.text((LEFT, top + H // 2), "nothing yet", fill=GREY)
        return
    f = (lambda v: math.log10(max(v, 1e-8))) if log_y else (lambda v: v)
    lo, hi = min(map(f, ys)), max(map(f, ys))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    x0, x1, y0, y1 = LEFT, W - RIGHT, top + TOP, top + H - BOTTOM

    def at(x, y):
        return x0 + (x1 - x0) * x / max(1, xmax), y1 - (y1 - y0) * (f(y) - lo) / (hi - lo)

    for v in (_log_ticks(lo, hi) if log_y else nice_ticks(lo, hi)):  # horizontal gridlines, y labels
        y = at(0, v)[1]
        draw.line([x0, y, x1, y], fill=GRID)
        text = _label(v)
        draw.text((x0 - 6 - draw.textlength(text), y - 6), text, fill=GREY)
    for v in nice_ticks(0, xmax, 8):  # vertical gridlines, x labels
        x = at(v, 10 ** lo if log_y else lo)[0]
        draw.line([x, y0, x, y1], fill=GRID)
        text = f"{v:g}"
        draw.text((x - draw.textlength(text) / 2, y1 + 4), text, fill=GREY)
    for n, s in enumerate(starts[1:], 2):  # where each later stage begins
        x = at(s, 10 ** lo if log_y else lo)[0]
        draw.line([x, y0, x, y1], fill=(170, 170, 170))
        draw.text((x + 3, y0 + 2), f"stage {n}", fill=GREY)
    draw.rectangle((x0, y0, x1, y1), outline=(150, 150, 150))
    draw.text(((x0 + x1 - draw.textlength(X_LABEL)) / 2, y1 + 20), X_LABEL, fill=INK)
    side = Image.new("RGB", (int(draw.textlength(ylabel)) + 4, 14), "white")  # the y label, turned upright
    ImageDraw.Draw(side).text((2, 1), ylabel, fill=INK)
    side = side.rotate(90, expand=True)
    img.paste(side, (4, int((y0 + y1 - side.height) / 2)))
    for colour, pts, dashed in series:
        xy = [at(x, y) for x, y in pts]
        if dashed:
            for a, b in zip(xy[::2], xy[1::2]):
                draw.line([a, b], fill=colour, width=1)
        elif len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        elif xy:
            draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=colour)


def _dashed(pts) -> list[tuple[float, float]]:
    """The baseline of validation points [(x, value, baseline)] as a dashed line over the same steps."""
    return [(pts[0][0] + (pts[-1][0] - pts[0][0]) * i / 40, pts[-1][2]) for i in range(41)]


def _legend(img: Image.Image, top: int, entries: list[tuple[str, tuple]]) -> None:
    """Each name in its line's colour: in a row right of the panel's title, or where the row would not fit,
    one a line in the panel's top right corner."""
    draw = ImageDraw.Draw(img)
    width = sum(draw.textlength(name) + 18 for name, _ in entries)
    row = width < W - RIGHT - LEFT - 300
    x = W - RIGHT - width if row else W - RIGHT - 6 - max(draw.textlength(name) + 13 for name, _ in entries)
    y = top + 6 if row else top + TOP + 4
    if not row:
        draw.rectangle((x - 4, y - 2, W - RIGHT - 2, y + 14 * len(entries) + 2), fill="white", outline=GRID)
    for name, colour in entries:
        draw.line([x, y + 7, x + 10, y + 7], fill=colour, width=2)
        draw.text((x + 13, y), name, fill=colour)
        if row:
            x += draw.textlength(name) + 18
        else:
            y += 14


def _save(img: Image.Image, png: str | os.PathLike) -> Path:
    png = Path(png)
    from .files import atomic_path

    from .errors import output_error

    try:
        with atomic_path(png, suffix=".png") as tmp:  # a full disk, Ctrl-C: no half-written picture beside it
            img.save(tmp)
    except OSError as e:
        raise output_error(png, e.strerror or e) from e
    return png


def curves(log: str | os.PathLike, png: str | os.PathLike) -> Path:
    """Draw the curves of the run whose log.jsonl is `log` into `png` (written atomically)."""
    loss, val, starts = read_log(Path(log))
    xmax = max([x for x, _ in loss] + [x for pts in val.values() for x, _, _ in pts] + [1])
    img = Image.new("RGB", (W, 2 * H), "white")
    _panel(img, 0, "training loss (log scale)", "loss", [(COLOURS["loss"], loss, False)], xmax, starts, log_y=True)
    series = []
    for k, pts in val.items():
        series.append((COLOURS[k], [(x, v) for x, v, _ in pts], False))
        series.append((COLOURS[k], _dashed(pts), True))
    _panel(img, H, "validation (dashed: the blurred input)", "PSNR (dB)", series, xmax, starts)
    _legend(img, H, [(k, COLOURS[k]) for k in val])
    return _save(img, png)


def runs(logs: list[str | os.PathLike], png: str | os.PathLike, names: list[str] | None = None) -> Path:
    """Several runs in one picture (one colour each): their losses above, their main validation figure below
    (pPSNR, else the middle frame's PSNR) with each run's blurred-input baseline dashed."""
    names = names or [str(p) for p in logs]
    read = [read_log(Path(p)) for p in logs]
    xmax = max([x for loss, val, _ in read for x, _ in loss]
               + [x for _, val, _ in read for pts in val.values() for x, _, _ in pts] + [1])
    starts = read[0][2] if all(r[2] == read[0][2] for r in read) else []  # stage lines when the runs agree
    colours = [RUN_COLOURS[i % len(RUN_COLOURS)] for i in range(len(read))]
    img = Image.new("RGB", (W, 2 * H), "white")
    _panel(img, 0, "training loss (log scale)", "loss", [(c, loss, False) for c, (loss, _, _) in zip(colours, read)],
           xmax, starts, log_y=True)
    series, keys = [], set()
    for c, (_, val, _) in zip(colours, read):
        key = "ppsnr" if "ppsnr" in val else "middle" if "middle" in val else None
        if key:
            keys.add(key)
            series += [(c, [(x, v) for x, v, _ in val[key]], False), (c, _dashed(val[key]), True)]
    what = " or ".join({"ppsnr": "pPSNR", "middle": "middle-frame PSNR"}[k] for k in sorted(keys, reverse=True))
    _panel(img, H, f"validation {what or 'PSNR'} (dashed: the blurred input)", "PSNR (dB)", series, xmax, starts)
    _legend(img, 0, list(zip(names, colours)))
    return _save(img, png)
