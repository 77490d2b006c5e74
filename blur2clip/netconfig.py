"""The network's configuration: everything that fixes its shape, stored inside every weights file (as
JSON in a safetensors file's metadata, and in an exported ONNX file's metadata). No torch here: the
onnxruntime engine reads and checks a config without it; model.py builds the network from one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class ModelConfig:
    """Everything that fixes the network's shape; stored inside every weights file."""

    width: int = 16  # channels at full resolution; doubled at each level down
    enc_blocks: list[int] = field(default_factory=lambda: [1, 1, 2, 4])  # NAFBlocks per encoder level
    middle_blocks: int = 2  # NAFBlocks at the bottom (1/16 resolution)
    dec_blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # NAFBlocks per decoder level
    frames: int = 7  # frames predicted per photo; the middle one is the middle of the exposure
    # "frames": a residual per frame on the photo; "travel": the middle frame and how far each pixel travels
    # over the exposure, every frame the middle one moved along that travel (model.py)
    head: str = "frames"
    # "layer": a LayerNorm over the channels of each pixel; "centre": each pixel's channels centred, then a
    # learned scale and shift per channel, no division (model.CentreNorm2d: linear, so an exported graph
    # folds it into the convolutions after it, which onnxruntime's blocked-layout CPU kernels keep)
    norm: str = "layer"
    # With norm "layer": how many of the full-resolution-most levels (their encoder and decoder blocks) take
    # the centre norm instead. The first level alone holds most of the norms' work per pixel.
    centre_levels: int = 0
    stage: int = 3  # training stage the weights come from: 1 middle frame, 2 adds 3/5, 3 all frames

    @property
    def multiple(self) -> int:
        """Height and width are padded to a multiple of this."""
        return 2 ** len(self.enc_blocks)

    def to_dict(self) -> dict:
        """The config as stored; `norm` only when it is not the LayerNorm and `centre_levels` only when
        set, so the files of networks made before they existed (the shipped ONNX graphs among them) are
        written byte for byte as before."""
        d = asdict(self)
        if d["norm"] == "layer":
            del d["norm"]
        if not d["centre_levels"]:
            del d["centre_levels"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """The config stored as `d` (keys it does not know are ignored, missing ones take their defaults),
        checked: ValueError with the reason when a value has the wrong type or lies out of range."""
        if not isinstance(d, dict):
            raise ValueError(f"the model config is a JSON {_json_type(d)}, not an object")
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in known})
        config.check()
        return config

    def check(self) -> None:
        """ValueError unless every field has its type and lies in a range this network can be built in."""
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if not _is_int(value):
                raise ValueError(f"model config {name}: {value!r} is not an integer")
            if not low <= value <= high:
                raise ValueError(f"model config {name}: {value} is out of range ({low} to {high})")
        for name in ("enc_blocks", "dec_blocks"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(_is_int(n) for n in value):
                raise ValueError(f"model config {name}: {value!r} is not a list of integers")
            if len(value) > MAX_LEVELS or not all(0 <= n <= MAX_BLOCKS for n in value):
                raise ValueError(f"model config {name}: {value} is out of range "
                                 f"(at most {MAX_LEVELS} levels of 0 to {MAX_BLOCKS} blocks)")
        if self.head not in HEADS:
            raise ValueError(f"model config head: {self.head!r} is not one of {', '.join(HEADS)}")
        if self.norm not in NORMS:
            raise ValueError(f"model config norm: {self.norm!r} is not one of {', '.join(NORMS)}")
        if len(self.enc_blocks) != len(self.dec_blocks):
            raise ValueError(f"model config: {len(self.enc_blocks)} encoder levels but "
                             f"{len(self.dec_blocks)} decoder levels")
        if self.width << len(self.enc_blocks) > MAX_CHANNELS:
            raise ValueError(f"model config: width {self.width} over {len(self.enc_blocks)} levels makes "
                             f"{self.width << len(self.enc_blocks)} channels (at most {MAX_CHANNELS})")


HEADS = ("frames", "travel")
NORMS = ("layer", "centre")
MAX_LEVELS, MAX_BLOCKS, MAX_CHANNELS = 6, 64, 8192  # far beyond any trainable network, far below a crash
_RANGES = {"width": (1, 1024), "middle_blocks": (0, MAX_BLOCKS), "frames": (1, 255), "stage": (1, 3),
           "centre_levels": (0, MAX_LEVELS)}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value) -> str:
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return names.get(type(value), type(value).__name__)
