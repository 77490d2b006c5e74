"""What a training run records as it goes: log.jsonl, curves.png and, when asked, TensorBoard.

`Logbook(out, tensorboard=True)` appends each record to out/log.jsonl (one JSON object a line: the loss
records of the steps, the validation records with their baseline), draws out/curves.png from it, and with
`tensorboard` writes the same scalars and a few validation samples (input, predicted and true frames) as
TensorBoard events under out/tensorboard (`tensorboard --logdir runs`). TensorBoard is an optional package
(`pip install "blur2clip[tensorboard]"`): `require_tensorboard` says so in one line when it is missing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import plot
from .errors import MediaError

TENSORBOARD_MISSING = ('TensorBoard logging needs the tensorboard package: pip install "blur2clip[tensorboard]" '
                       '(or pip install tensorboard)')


def require_tensorboard():
    """torch's SummaryWriter class; errors.SettingsError with one line saying what to install when it is
    missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from .errors import SettingsError

        raise SettingsError(TENSORBOARD_MISSING) from None
    return SummaryWriter


class Logbook:
    def __init__(self, out: Path, tensorboard: bool = False, log=print):
        self.out, self.log = Path(out), log
        self.writer = require_tensorboard()(str(self.out / "tensorboard")) if tensorboard else None

    def write(self, rec: dict, x: int) -> None:
        """Append a record to log.jsonl; `x` is its step counted over the run's stages one after another
        (TensorBoard's step)."""
        rec["time"] = time.time()
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is None:
            return
        if "val" in rec:
            for group in ("val", "baseline"):
                for k, v in rec.get(group, {}).items():
                    self.writer.add_scalar(f"{group}/{k}", v, x)
        else:
            for k, v in rec.items():
                if k not in ("step", "time") and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"train/{k}", v, x)
        self.writer.flush()

    def samples(self, blurred, pred, gt, x: int) -> None:
        """A few validation samples as TensorBoard images, one per sample: the input then the predicted
        frames (in the direction of time scored) above the true frames."""
        if self.writer is None:
            return
        import torch

        from .metrics import oriented

        pred, gt = pred.detach().float().cpu().clamp(0, 1), gt.float().cpu()
        if gt.shape[1] > 1:
            pred = oriented(pred, gt)
        for i in range(len(blurred)):
            nf = pred.shape[1]
            truth = torch.zeros_like(pred[i])
            if gt.shape[1] == 1:  # the middle frame alone is known
                truth[nf // 2] = gt[i, 0]
            else:
                truth = gt[i]
            top = torch.cat([blurred[i].cpu(), *pred[i]], dim=2)
            bottom = torch.cat([torch.zeros_like(blurred[i]).cpu(), *truth], dim=2)
            self.writer.add_image(f"samples/{i}", torch.cat([top, bottom], dim=1), x)
        self.writer.flush()

    def draw(self) -> None:
        try:
            plot.curves(self.out / "log.jsonl", self.out / "curves.png")
        except (OSError, MediaError) as e:  # a plot is never worth stopping a run for
            self.log(f"  could not draw curves.png: {e}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
