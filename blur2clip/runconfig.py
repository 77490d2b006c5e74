"""A training run's settings: `TrainConfig`, config files, and the run folder's config.json.

A config file is TOML or JSON (by its suffix; `.json` or a file that starts with `{` is JSON) whose keys
are TrainConfig's fields, with the network's under `model` and the synthetic motion's under `synth`:

    data = "../shared/data/photos"
    out = "runs/x"
    steps = [2000, 2000, 4000]
    lr = 5e-4
    ema = 0.999
    [model]
    frames = 21
    [synth]
    p_static_camera = 0.4

`read(path)` parses and checks it (ValueError naming the file, the key and what is wrong);
`merge(file, flags)` lays the command line's flags over it; `from_dict` makes the TrainConfig, taking
TrainConfig's defaults for what neither gives. Every run writes its resolved settings to config.json in its
folder (`record`), in the same form, so `--config runs/x/config.json` starts a run with the same settings;
on a resume the settings are compared with that file: a change of data layout or network is refused,
other changes are logged.
"""

from __future__ import annotations

import json
import math
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .data import LAYOUTS
from .errors import DataError, SettingsError
from .files import atomic_path
from .model import ModelConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib


@dataclass
class TrainConfig:
    data: str  # data folder in any layout of data.LAYOUTS
    out: str  # run folder: checkpoint, stage weights, log, curves, validation set
    stage: str = "all"  # "1", "2", "3" or "all"
    layout: str = "auto"  # or one of data.LAYOUTS
    frames_per_blur: int = 7  # consecutive sharp frames averaged into one blur (sequences, videos)
    steps: list[int] = field(default_factory=lambda: [2000, 2000, 4000])  # per stage 1, 2, 3
    batch: int = 8
    crop: int = 192
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    rec: str = "charbonnier"  # a frame's error: "charbonnier" per pixel or the frame's "rmse" (losses.py)
    w_middle: float = 2.0  # extra weight of the middle frame (plain deblurring lags most)
    w_pairs: float = 0.5  # order-invariant pairwise term (x_i + x_j and |x_i - x_j| of mirrored frames)
    pairs_fade: float = 0.5  # the pairwise term fades to zero over this fraction of each stage (0: never)
    w_reblur: float = 0.5  # frames must average back to the blur, in linear light (stage 3)
    order: str = "sample"  # direction of time scored against: "sample" or "local" (losses.py says how)
    w_travel: float = 0.1  # weight of the travel head's travel against the synthesis' (losses.py)
    travel_over: str = "known"  # the travel's error averaged over every pixel whose travel is "known" or "moving"
    w_still: float = 0.0  # weight of the travel head's travel where the synthesis' is still (losses.py)
    w_fft: float = 0.0  # weight of the middle frame's error in the frequency domain (losses.py)
    w_harm: float = 0.0  # weight of the frames' error beyond the blur's own, pixel by pixel (losses.py)
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and saved (0: none)
    ckpt_every: int = 200
    val_every: int = 500
    val_count: int = 48
    val_size: int = 256
    log_every: int = 20
    seed: int = 0
    workers: int = 1
    threads: int = 0  # torch threads in the main process (0: torch's default)
    device: str = "auto"  # "auto": the process's CUDA device (LOCAL_RANK under torchrun) if any, else cpu
    synth_device: str = "cpu"  # where synthetic motion is rendered: "cpu", or "cuda" (the training GPU)
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 elsewhere; or "fp32", "bf16"
    compile: bool = False  # the loss through torch.compile: up to a minute of compiling per start, faster steps
    init: str | None = None  # weights to start from instead of the previous stage's file
    resume: bool = False
    tensorboard: bool = False  # also log to TensorBoard (OUT/tensorboard; needs the tensorboard package)
    synth: dict = field(default_factory=dict)  # SynthConfig fields that differ from its defaults (training stream)
    model: ModelConfig = field(default_factory=ModelConfig)


FIXED_ON_RESUME = ("layout", "frames_per_blur", "model")  # a resumed run keeps these
OPERATIONAL = ("resume", "threads", "workers", "device", "synth_device", "log_every", "val_every",
               "ckpt_every", "tensorboard", "compile")  # free to change on a resume, not logged
NOT_RECORDED = ("resume",)  # how this start was asked for, not a setting of the run

CHOICES = {"stage": ("1", "2", "3", "all"), "order": ("sample", "local"), "rec": ("charbonnier", "rmse"),
           "travel_over": ("known", "moving"),
           "precision": ("auto", "fp32", "bf16"), "layout": ("auto", *LAYOUTS), "synth_device": ("cpu", "cuda")}
LEAST = {"frames_per_blur": 1, "batch": 1, "crop": 16, "lr": 0, "weight_decay": 0, "warmup": 0, "w_middle": 0,
         "w_pairs": 0, "w_travel": 0, "w_still": 0, "w_fft": 0, "w_harm": 0, "pairs_fade": 0, "w_reblur": 0, "ema": 0,
         "ckpt_every": 1, "val_every": 1, "val_count": 1, "val_size": 16, "log_every": 1, "workers": 0,
         "threads": 0, "seed": 0}
MOST = {"crop": 4096, "val_size": 4096, "val_count": 100_000, "batch": 65_536, "workers": 256, "threads": 1024,
        "frames_per_blur": 1000}
SET_BY_LAYOUT = ("size", "frames")  # SynthConfig fields the data's layout and the crop decide


def read(path: str | os.PathLike) -> dict:
    """The settings a config file gives, checked (see `check`); errors.SettingsError (a ValueError) naming
    the file, also when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SettingsError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not a text file (UTF-8)") from None
    is_json = path.suffix.lower() == ".json" or text.lstrip().startswith("{")
    try:
        d = json.loads(text) if is_json else tomllib.loads(text)
    except ValueError as e:  # json.JSONDecodeError and tomllib.TOMLDecodeError both are
        raise SettingsError(f"{path}: not valid {'JSON' if is_json else 'TOML'}: "
                         f"{str(e).splitlines()[0]}") from None
    if not isinstance(d, dict):
        raise SettingsError(f"{path}: a config file holds settings (key = value), not a {type(d).__name__}")
    check(d, str(path))
    return d


def merge(base: dict, over: dict) -> dict:
    """`over` laid over `base`; the `model` and `synth` tables are merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = {**out[k], **v} if k in ("model", "synth") and isinstance(out.get(k), dict) else v
    return out


def from_dict(d: dict, where: str = "config") -> TrainConfig:
    """The TrainConfig that `d` describes (TrainConfig's defaults where it says nothing), checked."""
    d = check(d, where)
    missing = [k for k in ("data", "out") if k not in d]
    if missing:
        raise SettingsError(f"{where}: no {missing[0]} (the {'data folder' if missing[0] == 'data' else 'run folder'})")
    values = {k: v for k, v in d.items() if k != "model"}
    return TrainConfig(**values, model=ModelConfig.from_dict(d.get("model", {})))


def to_dict(cfg: TrainConfig) -> dict:
    """The settings of `cfg` as config.json holds them (JSON types: lists where the config has tuples)."""
    d = json.loads(json.dumps(asdict(cfg)))
    for k in NOT_RECORDED:
        d.pop(k, None)
    d["model"].pop("stage", None)  # set by each stage, not by the run
    return d


def check(d: dict, where: str) -> dict:
    """`d` with each value checked against its TrainConfig field and made its type (an int where a float is
    expected, a stage given as a number, one number of steps for every stage); ValueError otherwise."""
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for key, value in d.items():
        if key not in hints:
            raise SettingsError(f"{where}: unknown setting {key!r}")
        out[key] = _value(key, value, hints[key], where)
    return out


def _value(key: str, value, hint, where: str):
    def bad(what: str):
        return SettingsError(f"{where}: {key} = {value!r}: {what}")

    if key == "model":
        if not isinstance(value, dict):
            raise bad("expected a table of network settings")
        known = {f.name for f in fields(ModelConfig)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise SettingsError(f"{where}: unknown network setting model.{unknown[0]}")
        try:
            ModelConfig.from_dict(value)
        except ValueError as e:
            raise SettingsError(f"{where}: {e}") from None
        if value.get("frames", 7) % 2 == 0:
            raise SettingsError(f"{where}: model.frames = {value['frames']}: expected an odd number (a middle frame "
                                f"for the middle of the exposure)")
        return dict(value)
    if key == "synth":
        from .synth import SynthConfig

        if not isinstance(value, dict):
            raise bad("expected a table of synthetic-motion settings")
        unknown = sorted(set(value) - {f.name for f in fields(SynthConfig)})
        if unknown:
            raise SettingsError(f"{where}: unknown synthetic-motion setting synth.{unknown[0]}")
        fixed = sorted(set(value) & set(SET_BY_LAYOUT))
        if fixed:
            raise SettingsError(f"{where}: synth.{fixed[0]} is set by the data and --crop, not here")
        return _synth(value, where)
    if key == "stage" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if key == "steps":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value] * 3
        if (not isinstance(value, list) or len(value) not in (1, 3)
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value)):
            raise bad("expected a number of steps for every stage, or three (one per stage), each at least 1")
        return list(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("expected true or false")
    elif hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("expected a whole number")
    elif hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise bad("expected a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad("expected a finite number")
    elif value is not None or key != "init":
        if not isinstance(value, str):
            raise bad("expected a string")
    if key in CHOICES and value not in CHOICES[key]:
        raise bad(f"expected one of {', '.join(CHOICES[key])}")
    if key in LEAST and value < LEAST[key]:
        raise bad(f"expected at least {LEAST[key]}")
    if key in MOST and value > MOST[key]:
        raise bad(f"expected at most {MOST[key]}")
    if key == "ema" and value >= 1:
        raise bad("expected a decay below 1 (0: no average)")
    return value


def _synth(value: dict, where: str) -> dict:
    """Synthetic-motion settings checked against SynthConfig's defaults: numbers where it has numbers
    (whole ones where it has whole ones), finite and not negative, shares (p_*) at most 1, pairs (lo, hi)
    as pairs in order, layer_probs a list of shares, JPEG qualities 1-100, 1 sub-frame or more."""
    from .synth import SynthConfig

    defaults, out = asdict(SynthConfig()), {}
    for key, v in value.items():
        default = defaults[key]

        def bad(what: str):
            return SettingsError(f"{where}: synth.{key} = {v!r}: {what}")

        def number(x, whole: bool) -> bool:
            return (isinstance(x, int) or (not whole and isinstance(x, float) and math.isfinite(x))) and \
                not isinstance(x, bool) and x >= 0

        if isinstance(default, tuple):
            whole = all(isinstance(d, int) for d in default)
            if not isinstance(v, (list, tuple)) or not all(number(x, whole) for x in v) or (
                    key != "layer_probs" and len(v) != len(default)) or not v:
                raise bad(f"expected {'a list of shares' if key == 'layer_probs' else f'{len(default)} numbers'}"
                          f"{', whole' if whole else ''}, none negative")
            if key == "layer_probs" and sum(v) <= 0:
                raise bad("expected shares that add up to more than 0")
            if key != "layer_probs" and list(v) != sorted(v):
                raise bad("expected the least first")
            if key == "jpeg_quality" and not all(1 <= x <= 100 for x in v):
                raise bad("expected JPEG qualities from 1 to 100")
            v = list(v)
        elif not number(v, isinstance(default, int)):
            raise bad(f"expected a {'whole ' * isinstance(default, int)}number, not negative")
        elif key.startswith("p_") and v > 1:
            raise bad("expected a share from 0 to 1")
        elif key in ("min_sub", "max_sub", "max_step_px") and v <= 0:
            raise bad("expected more than 0")
        out[key] = float(v) if isinstance(default, float) else v
    if out.get("min_sub", defaults["min_sub"]) > out.get("max_sub", defaults["max_sub"]):
        raise SettingsError(f"{where}: synth.min_sub is more than synth.max_sub")
    return out


def record(cfg: TrainConfig, out: Path, log=print, checkpoint: bool = False) -> None:
    """Write the run's resolved settings to out/config.json; on resume, compare them with the ones the run
    was started with first: a change of data layout or network is refused (ValueError), others are logged.
    A setting the run's file does not hold (added to blur2clip since it started, a network's too) had its
    default then.
    checkpoint: the resume goes on from a checkpoint, so its weights are not --init's: the file keeps the
    init the run started from."""
    path = out / "config.json"
    now = to_dict(cfg)
    if cfg.resume and path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise DataError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
        if not isinstance(saved, dict):
            raise DataError(f"{path}: holds a {type(saved).__name__}, not a run's settings")
        defaults = to_dict(TrainConfig(data=cfg.data, out=cfg.out))
        before = {**defaults, **saved}
        if isinstance(saved.get("model"), dict):  # a network setting added since, as any other
            before["model"] = {**defaults["model"], **saved["model"]}
        before.get("model", {}).pop("stage", None)
        if checkpoint and now["init"] != before["init"]:
            if now["init"]:
                log(f"  --init {now['init']} not used: the run goes on from its checkpoint (it started from "
                    f"{before['init']})")
            now["init"] = before["init"]
        changed = [k for k in now if k not in OPERATIONAL and before[k] != now[k]]
        refused = [k for k in changed if k in FIXED_ON_RESUME]
        if refused:
            k = refused[0]
            raise SettingsError(f"{path}: the run was started with {k} = {before[k]}, not {now[k]}; a resumed "
                             f"run keeps its data and network (start a new run with --init instead)")
        for k in changed:
            log(f"  resuming with {k} = {now[k]} (the run started with {before[k]})")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(now, indent=2) + "\n")
