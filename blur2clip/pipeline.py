"""The names of the earlier single module, for code written against it: the extractor is `extract`,
the file job `job`, device and precision `device`."""

from .device import pick as pick_device  # noqa: F401
from .device import precision as pick_precision  # noqa: F401
from .extract import MIN_TILE, Extractor, extract_frames, ramp_weights, tile_spans  # noqa: F401
from .job import ClipOptions, ClipResult, downscale, load_image, make_clip  # noqa: F401
