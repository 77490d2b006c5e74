"""Shared fixtures: a tiny model saved as a weights file, real-photo folders when present."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"

torch.set_num_threads(1)  # tests run beside other work; tiny configs need no more


def tiny_config(**kw):
    from blur2clip.model import ModelConfig

    base = dict(width=4, enc_blocks=[1, 1], middle_blocks=1, dec_blocks=[1, 1])
    base.update(kw)
    return ModelConfig(**base)


def tiny_model(seed: int = 0, **kw):
    """A tiny network whose frames really differ (random head, not the zero start)."""
    from blur2clip.model import Blur2Clip

    torch.manual_seed(seed)
    model = Blur2Clip(tiny_config(**kw))
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():  # the zero-initialised head, block scales and biases
                p.normal_(0, 0.05)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Path of a tiny weights file (safetensors, config inside), made once per session."""
    from blur2clip import weights

    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return weights.save(tiny_model(), path)


@pytest.fixture(scope="session")
def travel_weights(tmp_path_factory) -> Path:
    """A tiny travel head whose frames move, saved with its ONNX file beside it, made once per session."""
    from blur2clip import weights
    from blur2clip.model import with_travel_head
    from blur2clip.onnxfile import export_onnx

    model = with_travel_head(tiny_model(seed=6))
    with torch.no_grad():
        model.ending.weight[3:] = torch.randn_like(model.ending.weight[3:]) * 0.5
    path = weights.save(model, tmp_path_factory.mktemp("travel") / "travel.safetensors")
    export_onnx(path)
    return path


@pytest.fixture(scope="session")
def shared_blurred() -> Path:
    d = SHARED / "blurred"
    if not d.is_dir():
        pytest.skip("../shared/data/blurred is not present")
    return d


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    d = SHARED / "photos"
    if not d.is_dir():
        pytest.skip("../shared/data/photos is not present")
    return d


def write_photo(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    """A small photo (format by suffix): gradients, stripes and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 3 + seed)], -1) * 0.8 + 0.2 * rng.random((h, w, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    return path


def error_line(proc) -> str:
    """The one error line a command printed on stderr (and nothing like a traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("blur2clip: "), lines[0]
    return lines[0]


def isolate_weights(monkeypatch, manifest: Path, home: Path) -> None:
    """Weights from this manifest and a cache under home only (no BLUR2CLIP_* settings of the caller's),
    and downloads with short timeouts and backoff."""
    from blur2clip import download

    for var in ("BLUR2CLIP_OFFLINE", "BLUR2CLIP_WEIGHTS_URL", "BLUR2CLIP_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BLUR2CLIP_MANIFEST", str(manifest))
    monkeypatch.setenv("BLUR2CLIP_HOME", str(home))
    monkeypatch.setattr(download, "TIMEOUT", 2.0)
    monkeypatch.setattr(download, "BACKOFF", 0.01)
    monkeypatch.setattr(download, "RETRIES", 3)


class Interrupted:
    """A clip's frames (a sequence) whose frame `at` is never delivered: Ctrl-C arrives while the clip is
    being written."""

    def __init__(self, frames, at: int):
        self.frames, self.at = frames, at

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        if i == self.at:
            raise KeyboardInterrupt
        return self.frames[i]
