"""Training curves as a PNG, drawn with Pillow: the loss per step above, validation figures below.

`curves(log, png)` reads the run's log.jsonl (records with "loss", and records with "val" and "baseline")
and writes png atomically. Stages follow each other along the x axis; the blurred-input baseline of each
validation figure is drawn dashed in the same colour.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"loss": (40, 90, 200), "ppsnr": (40, 90, 200), "middle": (200, 80, 40), "outer": (60, 150, 60)}
W, H, PAD = 900, 300, 56


def read_log(path: Path) -> tuple[list[tuple[int, float]], dict[str, list[tuple[int, float, float]]], list[int]]:
    """(loss points, validation points per figure as (x, value, baseline), stage starts) on one x axis."""
    records: dict[tuple[int, int, str], dict] = {}
    for line in Path(path).read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if "stage" in r and "step" in r:
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
                if k in COLOURS:
                    val.setdefault(k, []).append((gx, v, r["baseline"].get(k, v)))
    return loss, val, starts


def _panel(draw: ImageDraw.ImageDraw, top: int, title: str, series, xmax: int, starts, log_y=False) -> None:
    """series: [(colour, [(x, y)], dashed)]."""
    ys = [y for _, pts, _ in series for _, y in pts]
    if not ys:
        draw.text((PAD, top + H // 2), f"{title}: nothing yet", fill=(90, 90, 90))
        return
    f = (lambda v: math.log10(max(v, 1e-8))) if log_y else (lambda v: v)
    lo, hi = min(map(f, ys)), max(map(f, ys))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    x0, x1, y0, y1 = PAD, W - 16, top + 24, top + H - 28

    def at(x, y):
        return x0 + (x1 - x0) * x / max(1, xmax), y1 - (y1 - y0) * (f(y) - lo) / (hi - lo)

    draw.rectangle((x0, y0, x1, y1), outline=(160, 160, 160))
    draw.text((x0, top + 6), title, fill=(20, 20, 20))
    for s in starts[1:]:
        draw.line([at(s, 10 ** lo if log_y else lo)[0], y0, at(s, 0)[0], y1], fill=(200, 200, 200))
    for v, label in ((lo, "lo"), (hi, "hi")):
        value = 10 ** v if log_y else v
        draw.text((4, y1 - 10 if label == "lo" else y0), f"{value:.3g}", fill=(90, 90, 90))
    draw.text((x1 - 60, y1 + 6), f"step {xmax}", fill=(90, 90, 90))
    for colour, pts, dashed in series:
        xy = [at(x, y) for x, y in pts]
        if dashed:
            for a, b in zip(xy[::2], xy[1::2]):
                draw.line([a, b], fill=colour, width=1)
        elif len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        else:
            draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=colour)


def curves(log: str | os.PathLike, png: str | os.PathLike) -> Path:
    """Draw the curves of the run whose log.jsonl is `log` into `png` (written atomically)."""
    loss, val, starts = read_log(Path(log))
    xmax = max([x for x, _ in loss] + [x for pts in val.values() for x, _, _ in pts] + [1])
    img = Image.new("RGB", (W, 2 * H), "white")
    draw = ImageDraw.Draw(img)
    _panel(draw, 0, "training loss (log scale)", [(COLOURS["loss"], loss, False)], xmax, starts, log_y=True)
    series = []
    for k, pts in val.items():
        series.append((COLOURS[k], [(x, v) for x, v, _ in pts], False))
        # the baseline as a dashed line over the same steps
        dense = [(pts[0][0] + (pts[-1][0] - pts[0][0]) * i / 40, pts[-1][2]) for i in range(41)]
        series.append((COLOURS[k], dense, True))
    _panel(draw, H, "validation PSNR in dB (dashed: the blurred input):", series, xmax, starts)
    x = PAD + 300
    for k in val:  # the legend, each name in its line's colour
        draw.text((x, H + 6), k, fill=COLOURS[k])
        x += 8 * len(k) + 16
    png = Path(png)
    tmp = png.with_name(png.name + ".tmp.png")
    img.save(tmp)
    os.replace(tmp, png)
    return png
