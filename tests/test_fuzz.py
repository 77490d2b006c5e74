"""Hundreds of damaged photos through the real `blur2clip batch` command, in one run, bounded in time.

A few small photos of every readable format (tests/forge.py) are mutated with a seeded generator: bits
flipped, the file cut short, bytes inserted, deleted or overwritten, the data after some point replaced by
noise, the size the header declares rewritten (up to 2^31 where the field holds it) with or without the
data cut too, two of these at once, and one format's bytes under another's name. The batch must give
every file a result, a clip for the ones it could read and nothing for the others, an error line naming
the file for each failure, no traceback, no temporary left behind, and leave every photo as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from forge import corrupt_exif_jpeg, forge_size, seed_photos, stray_marker_tiff
from PIL import Image

SEED = 12
PER_PHOTO = 36  # mutants of each seed photo: 15 seeds x 36 = 540 damaged files
KINDS = ("flip", "truncate", "insert", "delete", "overwrite", "forge", "forge", "forge+cut", "noise", "twice",
         "forge", "renamed")
SIZES = ((1, 1), (2, 3), (25, 16), (24, 17), (48, 32), (16, 24), (333, 1), (1, 777), (1000, 1000),
         (3999, 4001), (12000, 12000), (14000, 14000), (16383, 16383), (65535, 65535), (2**24, 3),
         (2**31 - 1, 2**31 - 1))  # the default limit (200 million pixels) lets the first 12 through
BUDGET_S = 110  # the whole batch run; the test as a whole must stay under 2 minutes
PHOTO_S = 5  # any one file: these take tenths of a second; a forged size decoded would take seconds


def mutate(data: bytes, ext: str, kind: str, rng: random.Random) -> bytes:
    if kind == "twice":
        for kind in rng.sample(KINDS[:9], 2):
            data = mutate(data, ext, kind, rng)
        return data
    if not data:
        return data
    b = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[: rng.randrange(1, len(b))]
    elif kind == "insert":
        at = rng.randrange(len(b))
        b[at:at] = rng.randbytes(rng.randint(1, 64))
    elif kind == "delete":
        at = rng.randrange(len(b))
        del b[at : at + rng.randint(1, 64)]
    elif kind == "overwrite":
        at, n = rng.randrange(len(b)), rng.randint(1, 32)
        b[at : at + n] = rng.choice([bytes(n), b"\xff" * n, rng.randbytes(n)])
    elif kind in ("forge", "forge+cut"):
        b = bytearray(forge_size(data, ext, *rng.choice(SIZES)))
        if kind == "forge+cut":
            b = b[: rng.randrange(len(b) // 2, len(b))]
    elif kind == "noise":
        at = rng.randrange(min(8, len(b) - 1), len(b))
        b[at:] = rng.randbytes(len(b) - at)
    return bytes(b)


def make_folder(folder: Path) -> tuple[dict[str, Path], list[Path]]:
    """The seed photos (which must all be done) and the damaged files, all in `folder`."""
    seeds = seed_photos(folder, h=32, w=40)
    rng = random.Random(SEED)
    damaged = []
    for name, path in seeds.items():
        data, stem, ext = path.read_bytes(), path.stem, path.suffix
        for i in range(PER_PHOTO):
            kind = KINDS[i % len(KINDS)]
            if kind == "renamed":  # another seed's bytes, mutated as that kind of file, under this name
                other = seeds[rng.choice([n for n in seeds if not n.endswith(ext)])]
                body = mutate(other.read_bytes(), other.suffix, rng.choice(KINDS[:10]), rng)
            else:
                body = mutate(data, ext, kind, rng)
            out = folder / f"{stem}-{i:02d}-{kind}{ext}"
            out.write_bytes(body)
            damaged.append(out)
    return seeds, damaged


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_fuzzed_photos_through_batch(tmp_path, tiny_weights):
    shots, clips = tmp_path / "shots", tmp_path / "clips"
    seeds, damaged = make_folder(shots)
    assert len(damaged) >= 300
    before = digest(shots)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUR2CLIP_")}
    env.update(OMP_NUM_THREADS="1", BLUR2CLIP_THREADS="1")
    cmd = [sys.executable, "-m", "blur2clip", "batch", str(shots), "-o", str(clips), "--weights", str(tiny_weights),
           "--json", "--format", "gif", "--no-pingpong", "--fps", "10", "--max-size", "32", "--tile", "0"]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=BUDGET_S)
    seconds = time.monotonic() - start
    print(f"batch of {len(seeds) + len(damaged)} files: {seconds:.1f} s")

    assert proc.returncode == 1, proc.stderr[-3000:]  # some failed, none crashed (70) or stopped
    assert "Traceback" not in proc.stderr + proc.stdout and "internal error" not in proc.stderr
    results = {Path(r["input"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == set(before), "every file has exactly one result"
    failed = {name for name, r in results.items() if r["status"] == "failed"}
    done = {name for name, r in results.items() if r["status"] == "done"}
    assert failed | done == set(results), {r["status"] for r in results.values()}
    assert set(seeds) <= done, sorted(set(seeds) - done)
    assert 50 < len(failed) < len(damaged), (len(failed), len(done))
    slowest = max(results.values(), key=lambda r: r["seconds"])
    assert slowest["seconds"] < PHOTO_S, slowest

    for name in failed:
        r = results[name]
        assert r["error"] and "\n" not in r["error"] and not r["error"].startswith(f"{shots / name}"), r  # "input"
        assert f"{shots / name}: {r['error']}" in proc.stderr, r  # the line on stderr names the file
        assert not Path(r["output"]).exists() and not Path(r["output"]).is_symlink(), r
    for name in done:
        with Image.open(results[name]["output"]) as im:
            assert im.format == "GIF" and im.n_frames >= 1

    made = sorted(p.name for p in clips.rglob("*"))
    assert made == sorted(Path(results[name]["output"]).name for name in done), "only finished clips, no temporaries"
    assert digest(shots) == before, "the photos are never written"

    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("blur2clip: error: ")]
    named = {line.removeprefix("blur2clip: error: ").split(": ", 1)[0] for line in errors}
    assert named == {str(shots / name) for name in failed}
    for line in lines:  # a warning names its file (its form: test_warnings_are_one_line_naming_the_file)
        warned = re.match(r"^(?:blur2clip: warning: |\S+:\d+: \w*Warning: )(.*)$", line)
        assert warned is None or warned[1].startswith(f"{shots}{os.sep}"), line


def test_warnings_are_one_line_naming_the_file(tmp_path, tiny_weights):
    """What Pillow and libtiff warn about, and blur2clip's own warnings: `blur2clip: warning: <file>: ...`,
    one line each, and nothing else on stderr but the report."""
    shots = tmp_path / "shots"
    shots.mkdir()
    corrupt_exif_jpeg(shots / "exif.jpg")
    stray_marker_tiff(shots / "stray.tif")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUR2CLIP_")}
    env.update(OMP_NUM_THREADS="1", BLUR2CLIP_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "blur2clip", "batch", str(shots), "-q", "--weights",
                           str(tiny_weights), "--format", "gif", "--max-size", "32"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, lines
    assert re.match(f"blur2clip: warning: {re.escape(str(shots / 'exif.jpg'))}: .*EXIF", lines[0]), lines
    assert lines[1] == f"blur2clip: warning: {shots / 'stray.tif'}: JPEGLib: Unsupported marker type 0x24"
