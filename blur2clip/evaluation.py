"""Weights scored on a data folder of any layout, per sequence and on average, beside the baseline.

`evaluate(data, predict)` runs `predict` (a 3xHxW blurred photo, sRGB 0..1 -> Fx3xHxW frames) on every
evaluation sample of a `data.Data` (`Data.items`: a few exposures spread over each sequence; of a photos
folder the held-out photos, given synthetic motion) and averages `metrics.score` (PSNR and SSIM figures)
per sequence and over all samples. The baseline is the blurred input copied to every frame; the reblur has
none (`metrics.NO_BASELINE`). `on_sample(name)` follows the progress; `save` writes every scored sample as
PNG files. `predictor(extractor)` makes `predict` from an extract.Extractor.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import metrics
from .data import Data
from .errors import MediaError
from .motion import motion_px


@dataclass
class Scores:
    name: str
    samples: int
    model: dict[str, float]
    baseline: dict[str, float]


@dataclass
class Evaluation:
    data: str
    layout: str
    weights: str
    sequences: list[Scores]
    mean: Scores  # over every sample
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def predictor(extractor, frames: int | None = None, interpolate: str = "guarded"
              ) -> Callable[[torch.Tensor], torch.Tensor]:
    """`predict` for `evaluate` from an extract.Extractor (tiles, device and precision as it is set): the
    network's own frames, or `frames` instants of the exposure made from them (`timeline.resample`)."""
    from .timeline import resample

    def predict(blurred: torch.Tensor) -> torch.Tensor:
        out = extractor(blurred.permute(1, 2, 0).numpy())  # KxHxWx3 float32
        out = np.stack(list(resample(out, frames or len(out), interpolate)))  # NxHxWx3
        return torch.from_numpy(out).permute(0, 3, 1, 2)
    return predict


def check_save_folder(save: str | Path, data: str | Path) -> None:
    """Where `evaluate` may write what it scored: a new or empty folder (MediaError otherwise, an output),
    outside the data folder (inside, its files would change what the folder is read as), that can be made."""
    from .errors import MediaError
    from .files import check_folder_target

    save = Path(save)
    if save.exists() and (not save.is_dir() or any(save.iterdir())):
        raise MediaError(save, "exists and is not an empty folder; give a new or empty folder", "output")
    if Path(os.path.realpath(save)).is_relative_to(os.path.realpath(data)):
        raise MediaError(save, f"is inside the data folder {data}, whose files it would become: give a folder "
                               f"outside it", "output")
    check_folder_target(save)


def evaluate(data: Data, predict: Callable[[torch.Tensor], torch.Tensor], per_sequence: int = 4,
             size: int | None = None, weights: str = "", on_sample: Callable[[str], None] | None = None,
             save: str | Path | None = None, all_photos: bool = False) -> Evaluation:
    """Score `predict` on `data`; on_sample(name) is called after each sample (for progress).

    save: a folder to write what was scored into (`save_sample`). all_photos: score every photo of a
    photos folder, not only the held-out ones."""
    if save is not None:
        check_save_folder(save, data.root)
    meters: dict[str, tuple[metrics.Meter, metrics.Meter]] = {}
    for name, blurred, frames, _ in data.items(per_sequence, size, all_photos):
        b, f = blurred[None], frames[None]
        with torch.no_grad():
            pred = predict(blurred).float()[None]
        if len(frames) > 1 and pred.shape[1] != len(frames):
            raise ValueError(f"{data.root}: the predictions have {pred.shape[1]} frames and the data {len(frames)}: "
                             f"score as many (predictor(extractor, frames={len(frames)}), or open_data(..., "
                             f"frames={pred.shape[1]}))")
        mine, base = meters.setdefault(name, (metrics.Meter(), metrics.Meter()))
        if save is not None:
            save_sample(Path(save) / name / f"{mine.count:03d}", blurred, pred[0], frames)
        scores = metrics.score(pred, f, b)
        if len(frames) > 1:  # how far the frames move, first to last (px), beside how far the true ones do
            scores.update(moves=motion_px(_ends(pred[0])), moves_true=motion_px(_ends(frames)))
        mine.add(scores)
        base.add({k: v for k, v in metrics.baseline(f, b).items() if k not in metrics.NO_BASELINE})
        if on_sample:
            on_sample(name)
    if not meters:
        raise ValueError(f"{data.root}: no sample to evaluate")
    rows = [Scores(name, m.count, m.mean(), b.mean()) for name, (m, b) in meters.items()]
    total = [metrics.Meter(), metrics.Meter()]
    for (m, b) in meters.values():
        for t, meter in zip(total, (m, b)):
            t.add(meter.mean(), meter.count)
    mean = Scores("mean", sum(r.samples for r in rows), total[0].mean(), total[1].mean())
    return Evaluation(str(data.root), data.layout, weights, rows, mean, list(data.skipped))


def _ends(frames: torch.Tensor) -> np.ndarray:
    """The first and last of Fx3xHxW frames as 2xHxWx3 (all that motion_px compares)."""
    return frames[[0, -1]].clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def save_sample(folder: Path, blurred: torch.Tensor, pred: torch.Tensor, frames: torch.Tensor) -> None:
    """One scored sample as 8-bit PNG files: folder/input.png, folder/predicted/NN.png (in the direction of
    time it was scored in) and folder/true/NN.png; when only the middle frame is known, true/ holds it
    under the middle frame's number."""
    from PIL import Image

    def png(t: torch.Tensor, path: Path) -> None:
        pixels = (t.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
        except OSError as e:  # the disk full, the folder taken away: an output that cannot be written
            raise MediaError(path, e.strerror or e, kind="output") from None

    if len(frames) > 1:
        pred = metrics.oriented(pred[None], frames[None])[0]
    nf = len(pred)
    png(blurred, folder / "input.png")
    for i, frame in enumerate(pred):
        png(frame, folder / "predicted" / f"{i:02d}.png")
    known = {nf // 2: frames[0]} if len(frames) == 1 else dict(enumerate(frames))
    for i, frame in known.items():
        png(frame, folder / "true" / f"{i:02d}.png")
