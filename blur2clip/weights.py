"""Weights files: names, the manifest, the cache, importing, downloading and loading.

A weights file is safetensors with the model config (and training facts) in the file's own metadata;
loading never runs code from a file. `--weights X` (and load_model(X)) accepts, in this order:

1. the path of an existing file (any .safetensors that `blur2clip train` wrote);
2. an http(s) URL: downloaded into the cache, checked against the manifest when the URL is one of its
   entries, else checked to be a usable blur2clip file before it is kept;
3. a name in the manifest ('default', 'stage1', ...): the file embedded in the package, else the cached
   copy (each checked against the manifest's size and sha256 on every load), else downloaded (never
   when BLUR2CLIP_OFFLINE=1);
4. a name given to a file with import_file (`blur2clip weights import`), kept in the cache.

The manifest (weights/manifest.json, installed as blur2clip/_weights/manifest.json) is a plain dict:
name -> {"stage", "file", "sha256", "size", "config", "onnx", "urls", "license", "data"}, or name ->
{"alias": other name}; "onnx" ({"file", "sha256", "size"}: the file's graph for onnxruntime, onnxfile.py)
is there when that file sits beside the weights. Files embedded in the package sit beside it.

Environment: BLUR2CLIP_HOME (cache root; weights go to $BLUR2CLIP_HOME/weights, default: the user cache
folder), BLUR2CLIP_WEIGHTS_URL (a mirror: <mirror>/<file> is tried before an entry's URLs),
BLUR2CLIP_OFFLINE=1 (never use the network), BLUR2CLIP_MANIFEST (another manifest file; for tests).

One file's format (hashing, checking, saving, building the network) is blur2clip.weightfile; its names
are available here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, NamedTuple
from urllib.parse import urlparse

from .weightfile import (DTYPES, WeightsError, build, check_file, mismatch,  # noqa: F401 -- also the API here
                         read_metadata, save, sha256, unusable)

if TYPE_CHECKING:  # download (http, ssl: 0.03 s) is imported when something is downloaded
    from .download import Progress

DEFAULT = "default"
EMBEDDED, CACHED, ABSENT = "embedded", "cached", "not present"  # WeightsInfo.status
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# The transfer itself is blur2clip.download (which imports this module; it is imported here where used).


# ----------------------------------------------------------------------------------------------------
# Where files live


def shipped_dir() -> Path:
    """Folder of the weights that ship with the package (installed) or the repository (source tree)."""
    here = Path(__file__).resolve().parent
    for d in (here / "_weights", here.parent / "weights"):
        if d.is_dir():
            return d
    return here / "_weights"


def cache_dir() -> Path:
    """Folder of downloaded and imported weights: $BLUR2CLIP_HOME/weights, else <user cache>/blur2clip/weights."""
    home = os.environ.get("BLUR2CLIP_HOME")
    if home:
        root = Path(home).expanduser()
        if root.exists() and not root.is_dir():
            raise WeightsError(f"BLUR2CLIP_HOME={home}: not a folder; point it at a folder (or unset it)")
        return root / "weights"
    import platformdirs

    return Path(platformdirs.user_cache_dir("blur2clip")) / "weights"


def offline() -> bool:
    """True when BLUR2CLIP_OFFLINE is set (to anything but 0/false/no/empty): never use the network."""
    return os.environ.get("BLUR2CLIP_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def mirror_url() -> str | None:
    """BLUR2CLIP_WEIGHTS_URL without a trailing slash, or None."""
    return os.environ.get("BLUR2CLIP_WEIGHTS_URL", "").strip().rstrip("/") or None


# ----------------------------------------------------------------------------------------------------
# The manifest


def manifest_path() -> Path:
    """The manifest in use: $BLUR2CLIP_MANIFEST, else manifest.json in shipped_dir()."""
    env = os.environ.get("BLUR2CLIP_MANIFEST")
    return Path(env).expanduser() if env else shipped_dir() / "manifest.json"


def _builtin_manifest() -> dict[str, dict]:
    """The shipped files by name only (no sha256, no URLs), for a source tree without manifest.json."""
    stages = {f"stage{s}": {"stage": s, "file": f"blur2clip-w16-stage{s}.safetensors", "urls": []}
              for s in (1, 2, 3)}
    return {DEFAULT: {"alias": "stage3"}, **stages}


def read_manifest() -> dict[str, dict]:
    """The manifest as a plain dict, name -> entry, in file order; checked for shape."""
    path = manifest_path()
    if not path.is_file() and "BLUR2CLIP_MANIFEST" not in os.environ:
        return _builtin_manifest()
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(manifest, dict) or not all(isinstance(e, dict) for e in manifest.values()):
        raise WeightsError(f"{path}: a manifest is a JSON object of name -> entry objects")
    for name, entry in manifest.items():
        if "alias" in entry and not isinstance(entry["alias"], str):
            raise WeightsError(f"{path}: entry {name!r}: alias is not a name")
        target = manifest.get(entry["alias"]) if "alias" in entry else entry
        if not isinstance(target, dict) or "alias" in target:
            problem = f"alias of {entry['alias']!r}, which is not a weights entry"
        elif not isinstance(target.get("file"), str) or Path(target["file"]).name != target["file"]:
            problem = "no plain file name"
        elif not isinstance(urls := target.get("urls", []), list) or not all(isinstance(u, str) for u in urls):
            problem = "urls is not a list of URLs"
        elif not isinstance(target.get("sha256", ""), (str, type(None))):
            problem = "sha256 is not text"
        elif not isinstance(size := target.get("size"), (int, type(None))) or isinstance(size, bool):
            problem = "size is not a whole number"
        elif "onnx" in target and not (isinstance(onnx := target["onnx"], dict) and onnx.get("file") ==
                                       Path(str(onnx.get("file"))).name):
            problem = "onnx is not an entry with a plain file name"
        else:
            continue
        raise WeightsError(f"{path}: entry {name!r}: {problem}")
    return manifest


def manifest_entry(path: str | os.PathLike, name: str, stage: int | None = None, urls=(),
                   license: str = "MIT", data: str = "") -> dict:
    """The manifest entry for the weights file at `path` (sha256, size and config from the file itself).

    stage: defaults to the stage in the file's config. urls: where it can be downloaded. data: a one-line
    summary of the training data. Use as manifest[name] = manifest_entry(path, name, ...).
    """
    path = Path(path)
    if not _NAME.fullmatch(name):
        raise WeightsError(f"{name!r}: a weights name is letters, digits, '.', '_' and '-'")
    config = read_metadata(path)["config"]
    if stage is not None and config.get("stage") not in (None, stage):
        raise WeightsError(f"{path}: stage {stage} given, but the file's config says stage {config['stage']}")
    onnx = path.with_suffix(".onnx")
    return {
        "stage": stage if stage is not None else config.get("stage"),
        "file": path.name,
        "sha256": sha256(path),
        "size": path.stat().st_size,
        "config": config,
        **({"onnx": {"file": onnx.name, "sha256": sha256(onnx), "size": onnx.stat().st_size}}
           if onnx.is_file() else {}),
        "urls": list(urls),
        "license": license,
        "data": data,
    }


def _entry(name: str, manifest: dict[str, dict]) -> tuple[str, dict]:
    """(real name, entry) for a manifest name, following an alias."""
    entry = manifest[name]
    if "alias" in entry:
        name = entry["alias"]
        entry = manifest[name]
    return name, entry


def _urls(entry: dict) -> list[str]:
    """Where an entry can be downloaded from, the mirror first."""
    mirror = mirror_url()
    return ([f"{mirror}/{entry['file']}"] if mirror else []) + list(entry.get("urls", []))


# ----------------------------------------------------------------------------------------------------
# Files imported by hash (`blur2clip weights import`): <cache>/imported.json, name -> record


def _registry() -> Path:
    return cache_dir() / "imported.json"


def read_imported() -> dict[str, dict]:
    """name -> {"file" (relative to cache_dir()), "sha256", "size", "stage", "source"}."""
    path = _registry()
    if not path.is_file():
        return {}
    try:
        registry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable registry of imported weights ({e})") from None
    # its files are import_file's, in the cache's imported/: one naming any other (../../x) is refused, as
    # replacing a name deletes the file it had
    if not isinstance(registry, dict) or not all(isinstance(r, dict) and isinstance(r.get("sha256"), str) and
                                                 re.fullmatch(r"imported/[0-9a-f]{16}\.safetensors", str(r.get("file")))
                                                 for r in registry.values()):
        raise WeightsError(f"{path}: not a registry of imported weights (name -> an entry whose file is in "
                           f"imported/); move it away to start it anew")
    return registry


def import_file(path: str | os.PathLike, name: str | None = None) -> WeightsInfo:
    """Copy a weights file (e.g. one `blur2clip train` wrote) into the cache under `name`.

    The copy is stored by its sha256 (importing the same file twice stores it once) and checked on every
    load. name: default '<file stem>-<first 8 hex digits of the sha256>'. Re-using a name replaces it.
    """
    from .download import file_lock

    src = Path(path).expanduser()
    if not src.is_file():
        raise WeightsError(f"{src}: weights file not found")
    config = check_file(src)["config"]
    digest = sha256(src)
    name = name or f"{src.stem}-{digest[:8]}"
    if not _NAME.fullmatch(name):
        raise WeightsError(f"{name!r}: a weights name is letters, digits, '.', '_' and '-'")
    if name in read_manifest():
        raise WeightsError(f"{name}: already the name of shipped weights; choose another with --name")
    rel = f"imported/{digest[:16]}.safetensors"
    dest = cache_dir() / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(_registry()):
        if not (dest.is_file() and sha256(dest) == digest):
            _write_new(dest, lambda tmp: shutil.copyfile(src, tmp))
        registry = read_imported()
        old = registry.get(name)
        registry[name] = {"file": rel, "sha256": digest, "size": dest.stat().st_size,
                          "stage": config.get("stage"), "source": str(src.resolve())}
        text = json.dumps(registry, indent=2) + "\n"
        _write_new(_registry(), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        if old and not any(r["file"] == old["file"] for r in registry.values()):
            (cache_dir() / old["file"]).unlink(missing_ok=True)
    return next(w for w in list_weights() if w.name == name)


def _write_new(dest: Path, write: Callable[[Path], object]) -> None:
    """write(tmp) then rename it to `dest`; a failed write leaves nothing behind and names `dest`."""
    from .files import atomic_path

    try:
        with atomic_path(dest) as tmp:
            write(tmp)
    except OSError as e:
        raise WeightsError(f"{dest}: cannot write it ({e.strerror or e}); nothing was changed") from None


# ----------------------------------------------------------------------------------------------------
# Listing and verifying


@dataclass(frozen=True)
class WeightsInfo:
    """One named weights file, as `blur2clip weights list` shows it."""

    name: str
    file: str
    stage: int | None
    size: int | None  # bytes
    status: str  # EMBEDDED, CACHED or ABSENT
    path: Path | None  # where it is, when present
    alias: str | None = None  # the name this one stands for ('default' -> 'stage3')
    imported: bool = False  # from import_file, not the manifest
    sha256: str | None = None


class Verified(NamedTuple):
    name: str
    path: Path
    ok: bool
    reason: str  # 'ok', or what is wrong


def list_weights() -> list[WeightsInfo]:
    """Every named weights file: the manifest's (aliases included, in manifest order), then imported ones."""
    manifest, out = read_manifest(), []
    for name in manifest:
        real, entry = _entry(name, manifest)
        embedded, cached = manifest_path().parent / entry["file"], cache_dir() / entry["file"]
        path = embedded if embedded.is_file() else cached if cached.is_file() else None
        status = ABSENT if path is None else EMBEDDED if path == embedded else CACHED
        out.append(WeightsInfo(
            name, entry["file"], entry.get("stage"), entry.get("size"), status, path,
            alias=real if real != name else None, sha256=entry.get("sha256")))
    for name, record in read_imported().items():
        path = cache_dir() / record["file"]
        out.append(WeightsInfo(
            name, Path(record["file"]).name, record.get("stage"), record.get("size"),
            CACHED if path.is_file() else ABSENT, path if path.is_file() else None, imported=True,
            sha256=record["sha256"]))
    return out


def verify() -> list[Verified]:
    """Re-hash every weights file present (embedded, cached, imported, downloaded by URL)."""
    manifest, out = read_manifest(), []
    for name, entry in manifest.items():
        if "alias" in entry:
            continue
        for path in (manifest_path().parent / entry["file"], cache_dir() / entry["file"]):
            if path.is_file():
                reason = mismatch(path, entry.get("sha256"), entry.get("size"))
                if reason is None and not entry.get("sha256"):
                    reason = unusable(path)
                out.append(Verified(name, path, reason is None, reason or "ok"))
        onnx = entry.get("onnx")
        if onnx and (path := manifest_path().parent / onnx["file"]).is_file():
            reason = mismatch(path, onnx["sha256"], onnx["size"])
            out.append(Verified(name, path, reason is None, reason or "ok"))
    for name, record in read_imported().items():
        path = cache_dir() / record["file"]
        reason = mismatch(path, record["sha256"]) if path.is_file() else "missing"
        out.append(Verified(name, path, reason is None, reason or "ok"))
    for path in sorted((cache_dir() / "urls").glob("*.safetensors")):
        reason = unusable(path)
        out.append(Verified(path.name, path, reason is None, reason or "ok (no sha256 known; it loads)"))
    return out


# ----------------------------------------------------------------------------------------------------
# Resolving names, paths and URLs to files; downloading


def resolve(name_or_path: str | os.PathLike | None = None, progress: Progress | None = None) -> Path:
    """A weights path, URL or name (None: 'default') -> the path of a present, checked file.

    Downloads when needed (progress(done, total) is called as bytes arrive). Raises WeightsError.
    """
    key = os.fspath(name_or_path) if name_or_path is not None else DEFAULT
    path = Path(key).expanduser()
    try:
        if path.is_file():
            return path
    except OSError as e:  # a name too long, a folder that may not be read
        raise WeightsError(f"{path}: {e.strerror or e}") from None
    if key.startswith(("http://", "https://")):
        return download_url(key, progress)
    if key in read_manifest() or key in read_imported():
        return download(key, progress)
    if "/" in key or os.sep in key or key.endswith(".safetensors"):
        raise WeightsError(f"{path}: weights file not found")
    names = ", ".join([*read_manifest(), *read_imported()])
    raise WeightsError(f"{key}: weights file or name not found (names: {names})")


def download(name: str, progress: Progress | None = None) -> Path:
    """Make the named weights present and return their path: the embedded file, a cached copy that
    passes its check, or a fresh download into cache_dir(). Raises WeightsError."""
    manifest = read_manifest()
    if name not in manifest:
        record = read_imported().get(name)
        if record is None:
            raise WeightsError(f"{name}: not a weights name in {manifest_path()} or {_registry()}")
        path = cache_dir() / record["file"]
        reason = mismatch(path, record["sha256"]) if path.is_file() else "file missing"
        if reason:
            raise WeightsError(f"{path}: imported weights {name!r}: {reason}; import the file again")
        return path
    name, entry = _entry(name, manifest)
    embedded = manifest_path().parent / entry["file"]
    if embedded.is_file():
        reason = mismatch(embedded, entry.get("sha256"), entry.get("size"))
        if reason:
            raise WeightsError(f"{embedded}: {reason} with {manifest_path()}; reinstall blur2clip")
        return embedded
    return _fetch(name, entry, _urls(entry), progress)


def download_url(url: str, progress: Progress | None = None) -> Path:
    """Download weights from a URL into the cache (once) and return the path.

    A URL the manifest lists is that entry's file, checked by sha256. Any other URL lands in
    cache_dir()/urls/ and is kept only if it is a usable blur2clip weights file.
    """
    manifest = read_manifest()
    for name in manifest:
        if "alias" not in manifest[name] and url in _urls(manifest[name]):
            return _fetch(name, manifest[name], [url, *_urls(manifest[name])], progress)
    try:
        parts = urlparse(url)
    except ValueError as e:  # e.g. an unclosed IPv6 bracket
        raise WeightsError(f"{url}: not a valid URL ({e})") from None
    base = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(parts.path).name) or "weights"
    stem, suffix = (base[: -len(".safetensors")], ".safetensors") if base.endswith(".safetensors") else (base, "")
    dest = cache_dir() / "urls" / f"{stem}-{hashlib.sha256(url.encode()).hexdigest()[:8]}{suffix}"
    if dest.is_file():  # it was checked before it was renamed into place
        return dest
    if offline():
        raise WeightsError(f"{url}: offline (BLUR2CLIP_OFFLINE=1), not downloading; "
                           f"pass a local file instead or place it as {dest}")
    from .download import fetch

    return fetch([url], dest, check=check_file, progress=progress)


def _fetch(name: str, entry: dict, urls: list[str], progress: Progress | None) -> Path:
    """The cached copy of a manifest entry if it passes its check, else a download of it."""
    dest = cache_dir() / entry["file"]
    note = ""
    if dest.is_file():
        reason = mismatch(dest, entry.get("sha256"), entry.get("size"))
        if reason is None:
            return dest
        dest.unlink()
        note = f" (the copy there failed its check: {reason}; it was deleted)"
    if offline():
        raise WeightsError(f"{name}: offline (BLUR2CLIP_OFFLINE=1): place {entry['file']} in {dest.parent}{note}")
    if not urls:
        raise WeightsError(f"{name}: {entry['file']} is in neither {manifest_path().parent} nor {dest.parent}, "
                           "and the manifest lists no URL for it")
    from .download import fetch

    return fetch(urls, dest, sha256=entry.get("sha256"), size=entry.get("size"),
                 check=None if entry.get("sha256") else check_file, progress=progress)


def load_model(name_or_path: str | os.PathLike | None = None, device="cpu", progress: Progress | None = None):
    """Build the network from weights (a name, path or URL; see resolve), on `device` ("auto", "cpu",
    "cuda", "cuda:N", "mps": DeviceError for one that is not here), in eval mode."""
    from .device import pick

    device = pick(device)  # first: a device that is not here is said before anything loads
    return build(resolve(name_or_path, progress))[0].to(device).eval()
