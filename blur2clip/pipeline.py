"""The names of the earlier single module, kept so that code written against it (a notebook's
`from blur2clip.pipeline import Extractor`) still runs; new code imports from `extract` (the extractor),
`job` (the file job) and `device` (device and precision). Nothing in the package imports this."""

from .device import pick as pick_device  # noqa: F401
from .device import precision as pick_precision  # noqa: F401
from .extract import MIN_TILE, Extractor, extract_frames, ramp_weights, tile_spans  # noqa: F401
from .job import ClipOptions, ClipResult, downscale, load_image, make_clip  # noqa: F401
