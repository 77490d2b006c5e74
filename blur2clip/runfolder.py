"""A training run's folder: whether a run may start in it, its checkpoint, and the network the run trains
when it starts from a weights file (`runconfig` holds the settings and writes them into the folder)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from .errors import DataError, MediaError, SettingsError
from .runconfig import TrainConfig

RUN_FILES = ("config.json", "checkpoint.pt", "log.jsonl", "best.safetensors", "curves.png", "tensorboard")


def check_out(cfg: TrainConfig) -> None:
    """The run folder may take this run: named (SettingsError), neither the data folder nor inside it (its
    files would be read as data), not a file; and, unless the run resumes, holding no run already (a new
    run there would write over its weights and mix the two runs' logs): MediaError, an output, otherwise."""
    out = Path(cfg.out)
    if not str(cfg.out).strip():
        raise SettingsError("out is empty: give the run folder (--out DIR)")
    data, real = Path(os.path.realpath(cfg.data)), Path(os.path.realpath(out))
    if real.is_relative_to(data):
        raise MediaError(out, f"is {'the data folder' if real == data else 'inside the data folder'} "
                              f"{cfg.data}, whose files it would become: give a run folder outside it", "output")
    if out.exists() and not out.is_dir():
        raise MediaError(out, "exists and is not a folder: give a run folder (--out DIR)", "output")
    if not cfg.resume and out.is_dir():
        held = [name for name in RUN_FILES if (out / name).exists()] + sorted(p.name for p in
                                                                              out.glob("stage*.safetensors"))
        if held:
            raise MediaError(out, f"holds a run already ({', '.join(held[:3])}{', …' * (len(held) > 3)}): "
                                  f"--resume it, or give a new --out", "output")


def load_checkpoint(path: Path) -> dict:
    """The checkpoint a run wrote; DataError naming it when it cannot be read (cut short, not torch's)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- cut short, not torch's, another torch's: all say the same
        raise DataError(f"{path}: cannot be read as a checkpoint ({str(e).splitlines()[0][:160]}); move it "
                        f"away to start the run over, or --init from a stage file") from None
    if not isinstance(ckpt, dict) or not {"stage", "step"} <= set(ckpt):
        raise DataError(f"{path}: not a blur2clip checkpoint")
    return ckpt


def trained_network(cfg: TrainConfig, resumed: bool, log=print) -> TrainConfig:
    """The settings with the network this run trains. A run that starts from `init` trains that file's
    network (its shape, with this run's head and frame count; the network settings given are not used,
    logged when they differ). A run resumed from its checkpoint that started from a file goes on with the
    network it recorded then (the file itself is not needed again)."""
    from .netconfig import ModelConfig

    own = {"frames": cfg.model.frames, "head": cfg.model.head, "stage": cfg.model.stage}
    if resumed:
        try:
            recorded = json.loads((Path(cfg.out) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):  # runconfig.record says what is wrong with it
            return cfg
        if isinstance(recorded, dict) and recorded.get("init") and isinstance(recorded.get("model"), dict):
            return replace(cfg, model=ModelConfig.from_dict({**recorded["model"], **own}))
        return cfg
    if not cfg.init:
        return cfg
    from .weightfile import read_metadata
    from .weights import resolve

    model = ModelConfig.from_dict({**read_metadata(resolve(cfg.init))["config"], **own})
    if model != cfg.model:
        log(f"  {cfg.init}: its network is trained (width {model.width}, encoder {model.enc_blocks}, middle "
            f"{model.middle_blocks}, decoder {model.dec_blocks}), not the one the settings describe")
    return replace(cfg, model=model)
