"""Writing a file so that it is either whole or not there: `atomic_path`.

The clip writers (clipwriter) add what a user's outputs need beyond this (never replacing a photo, claims
between runs, folders of frames); weights, the registry, run configs and pictures use this helper.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a fresh temporary path beside `path` (hidden, ending in `suffix`: e.g. ".png" for a writer
    that picks the format from the name). When the block ends normally it replaces `path` in one step;
    when it raises (a full disk, Ctrl-C) the temporary is removed and `path` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
