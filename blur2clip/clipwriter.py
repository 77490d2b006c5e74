"""Writing clips and stills: the only module that writes image and video files.

`write_clip` takes FxHxWx3 uint8 frames already in play order (see `media.play_order`) and writes H.264
MP4 (through the ffmpeg binary that imageio-ffmpeg ships), GIF (one shared palette), animated WebP or a
folder of numbered PNGs. An MP4 that repeats is encoded once and its stream copied `loops` times over (no
re-encoding), and an MP4 is scaled to fit MP4_MAX_SIZE and H.264 level 5.1 unless a max_size is given.
`write_still` writes one HxWx3 uint8 image as JPEG, PNG or TIFF. Every write is
atomic: the file (or folder) is written under a hidden temporary name `.NAME.partXXXXXXXX` beside the
target and renamed only when complete, so the final name never holds half a file, and the temporary is
removed on any error or KeyboardInterrupt. Existing outputs are refused unless overwrite=True, and a
file read by `media.read_photo` (or named to `files.protect`) is never overwritten, even with overwrite=True.

No torch here.
"""

from __future__ import annotations

import io
import math
import os
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from typing import NamedTuple
from contextlib import suppress
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .capture import Capture
from .errors import output_error
from .files import atomic_dir, atomic_file, check_target, temp_beside
from .media import FORMATS, _ffmpeg, _last_line

QUALITIES = ("high", "medium", "low")
_STILL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}
_CRF = {"high": 18, "medium": 23, "low": 28}  # H.264 constant rate factor
_WEBP_QUALITY = {"high": 90, "medium": 80, "low": 65}
_GIF_COLOURS = {"high": 256, "medium": 128, "low": 64}
# x264's preset: "fast" matched "medium" in PSNR at each rate factor on a 720p clip, 3% smaller and 0.7x
# the time (benchmarks/clip_speed.py prints the comparison)
_PRESET = "fast"
MP4_MAX_SIZE = 3840  # the long side of an MP4 clip when no max_size is given
# The fastest a GIF or WebP plays: a GIF's delays are whole hundredths of a second, and browsers slow a
# GIF delay under 2 hundredths, or a WebP frame of 10 ms or less, to 100 ms
ANIMATED_MAX_FPS = 50.0
# H.264 level 5.1 (what 4K players decode): at most 36864 macroblocks of 16x16 a frame, 983040 a second
_LEVEL_MBS, _LEVEL_MBS_PER_S = 36864, 983040
# Above this many pixels a frame, x264 looks ahead 4 frames with 1 B-frame on 2 threads: each frame in
# flight costs ~50 bytes a pixel. At 3744x2496 (46 frames, crf 18) that took ffmpeg's peak from 1.37 GB
# (lookahead 10, x264's 3 B-frames) to 0.98 GB, 0.65x the time, 17% smaller at 0.3 dB less PSNR (44.3 dB).
_BIG_FRAME = 4_000_000


def write_clip(
    frames: np.ndarray | Sequence[np.ndarray],
    out: str | os.PathLike[str],
    fmt: str,
    fps: float = 10.0,
    loops: int = 1,
    overwrite: bool = False,
    quality: str = "high",
    crf: int | None = None,
    capture: Capture | None = None,
    max_size: int | None = None,
) -> Path:
    """Write frames as a clip at `out` (atomically) and return its path.

    frames: FxHxWx3 uint8 in play order (already ping-ponged); a sequence of HxWx3 uint8 arrays also works.
    fmt: one of FORMATS (see `clip_format`). fps: frames per second, 0.01 .. 1000 (a GIF or WebP plays at
    most ANIMATED_MAX_FPS: `played_fps`).
    loops: how many times an mp4 repeats the sequence (GIF and WebP loop forever; frames are written once).
    quality: "high" (H.264 crf 18, WebP 90, 256 GIF colours), "medium" (23, 80, 128) or "low" (28, 65, 64).
    crf: H.264's constant rate factor for an mp4 (0 lossless, a profile many players cannot play .. 51),
    instead of the quality's.
    capture: the photo's capture metadata (see capture.Capture), kept where the format can hold it: an
    mp4's creation time and QuickTime keys (camera, location), a WebP's EXIF and XMP chunks. None: none.
    max_size: an mp4's frames are scaled (Lanczos, aspect kept, even sizes) so their long side is at most
    this; None: at most MP4_MAX_SIZE and within H.264 level 5.1 (frame size and macroblock rate). GIF,
    WebP and frames are written at the frames' size.
    mp4: H.264 yuv420p, BT.709, odd sizes padded by one edge pixel, +faststart; the played sequence is
    encoded once, then repeated `loops` times by stream copy. gif: one global palette
    for all frames, Floyd-Steinberg dither, delays in whole centiseconds whose running total keeps to the
    fps; identical neighbouring frames are merged into one longer frame. webp: lossy, every
    frame kept (each a whole frame), loops forever. frames: a folder of frame_0001.png, frame_0002.png, ...
    (more digits past 9999 frames).
    """
    if fmt not in FORMATS or quality not in QUALITIES:
        raise ValueError(f"fmt must be one of {FORMATS}, quality one of {QUALITIES}; got {fmt!r}, {quality!r}")
    if not 0.01 <= fps <= 1000 or loops < 1:
        raise ValueError(f"fps must be 0.01 .. 1000 and loops >= 1, got {fps}, {loops}")
    if crf is not None and not 0 <= crf <= 51:
        raise ValueError(f"crf must be 0 .. 51, got {crf}")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be 1 or more, got {max_size}")
    hw = _frame_size(frames)
    out = Path(out)
    check_target(out, overwrite, folder=fmt == "frames")
    if fmt == "frames":
        return atomic_dir(out, overwrite, lambda tmp: _write_frames(frames, hw, tmp))
    if fmt == "webp" and max(hw) > 16383:
        raise output_error(out, f"{hw[1]}x{hw[0]} is too large for WebP (16383 pixels a side); use mp4 or frames")
    write = {"mp4": _write_mp4, "gif": _write_gif, "webp": _write_webp}[fmt]
    settings = _Settings(fps, loops, quality, _CRF[quality] if crf is None else crf, capture, max_size)
    return atomic_file(out, overwrite, lambda tmp: write(frames, hw, tmp, out, settings))


class _Settings(NamedTuple):
    fps: float
    loops: int
    quality: str
    crf: int
    capture: Capture | None
    max_size: int | None


def still_format(out: Path) -> str:
    """Pillow's format for a still named `out`, or MediaError naming it."""
    fmt = _STILL_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise output_error(out, f"unknown still format {out.suffix!r} (use .jpg, .png or .tif)")
    return fmt


def write_still(
    image: np.ndarray, out: str | os.PathLike[str], capture: Capture | None = None, overwrite: bool = False
) -> Path:
    """Write one HxWx3 uint8 sRGB image (atomically) by the suffix of `out`: .jpg/.jpeg (JPEG quality 95,
    4:4:4 chroma), .png or .tif/.tiff (deflate; uncompressed when it carries EXIF or XMP, which only
    Pillow's own TIFF writer keeps whole), with an sRGB ICC profile. `capture` (capture.Capture): its EXIF
    and XMP are kept in all three, the pixel size they record set to the still's (see
    Capture.image_exif, image_xmp). Returns the path."""
    out = Path(out)
    fmt = still_format(out)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    check_target(out, overwrite, folder=False)
    h, w = image.shape[:2]
    if fmt == "JPEG" and max(h, w) > 65500:  # libjpeg's limit (it would also print to stderr)
        raise output_error(out, f"{w}x{h} is too large for JPEG (65500 pixels a side); use .png or .tif")
    options = {"JPEG": {"quality": 95, "subsampling": 0}, "PNG": {}, "TIFF": {}}[fmt]
    options["icc_profile"] = srgb_profile()
    exif = xmp = None
    if capture is not None:
        exif, xmp = capture.image_exif(w, h), capture.image_xmp(w, h)
    if fmt == "TIFF" and (exif or xmp):  # Pillow's own TIFF writer: libtiff's drops EXIF's sub-IFDs
        tags = Image.Exif()
        if exif:
            tags.load(exif)
        if xmp:
            tags[700] = xmp
        options["exif"] = tags
    elif fmt == "TIFF":
        options["compression"] = "tiff_deflate"
    elif exif:
        options["exif"] = exif
    if xmp and fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
        options["pnginfo"] = info
    elif xmp and fmt == "JPEG":
        options["xmp"] = xmp
    return atomic_file(out, overwrite, lambda tmp: Image.fromarray(image).save(tmp, format=fmt, **options))


_SRGB: list[bytes] = []


def srgb_profile() -> bytes:
    """An sRGB ICC profile (lcms's), made once."""
    if not _SRGB:
        from PIL import ImageCms

        _SRGB.append(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    return _SRGB[0]


def played_fps(fmt: str, fps: float) -> float:
    """The rate a clip of this format asked for `fps` plays at: a GIF or WebP at most ANIMATED_MAX_FPS."""
    return min(fps, ANIMATED_MAX_FPS) if fmt in ("gif", "webp") else fps


def _frame_size(frames) -> tuple[int, int]:
    """(H, W) of the frames, checking the first (the others are checked as they are written)."""
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(f"frames must be FxHxWx3 uint8, got shape {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames to write")
    first = np.asarray(frames[0])
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8 or 0 in first.shape:
        raise ValueError(f"frames must be HxWx3 uint8, got {first.shape} {first.dtype}")
    return first.shape[0], first.shape[1]


def _each(frames, hw: tuple[int, int]):
    """The frames one by one as HxWx3 uint8, each checked against the size of the first."""
    for i in range(len(frames)):
        f = np.asarray(frames[i])
        if f.shape != (*hw, 3) or f.dtype != np.uint8:
            raise ValueError(f"frame {i} is {f.shape} {f.dtype}, expected {(*hw, 3)} uint8")
        yield f


def mp4_size(h: int, w: int, fps: float, max_size: int | None = None) -> tuple[int, int]:
    """(H, W) that an mp4 of HxW frames is encoded at: their own size, odd sides padded by one pixel, when
    they fit; else scaled with the aspect kept to even sides whose long side is at most max_size (None:
    MP4_MAX_SIZE, and a frame size and macroblock rate within H.264 level 5.1 at this fps)."""
    limit = max_size or MP4_MAX_SIZE
    budget = min(_LEVEL_MBS, _LEVEL_MBS_PER_S / fps) if max_size is None else float("inf")

    def fits(eh: int, ew: int) -> bool:
        return max(eh, ew) <= limit and -(-eh // 16) * -(-ew // 16) <= budget

    size = (h + h % 2, w + w % 2)
    if fits(*size) or (max(h, w) <= limit and max_size is not None):
        return size
    scale = min(1.0, limit / max(h, w), math.sqrt(budget * 256 / (h * w)))
    while True:
        size = tuple(max(2, min(2 * round(side * scale / 2), limit - limit % 2)) for side in (h, w))
        if fits(*size) or size == (2, 2):
            return size
        scale *= 0.995


def mp4_scaled(h: int, w: int, fps: float, max_size: int | None = None) -> tuple[int, int] | None:
    """The (H, W) an mp4 scales HxW frames to (mp4_size), or None when it encodes them at their own size."""
    size = mp4_size(h, w, fps, max_size)
    return None if size == (h + h % 2, w + w % 2) else size


def _write_mp4(frames, hw, tmp: Path, out: Path, s: _Settings) -> None:
    """Encode the frames once (scaled to mp4_size); when loops > 1, into a second temporary beside `out`
    whose stream is then copied `loops` times over into `tmp`."""
    (h, w), rate = hw, Fraction(s.fps).limit_denominator(1001)
    scaled = mp4_scaled(h, w, s.fps, s.max_size)
    eh, ew = scaled or (h + h % 2, w + w % 2)
    tags = s.capture.mp4_tags() if s.capture is not None else {}
    container = [*[arg for key, value in tags.items() for arg in ("-metadata", f"{key}={value}")],
                 "-movflags", "+faststart+use_metadata_tags" if tags else "+faststart", "-f", "mp4"]
    lean = ["-threads", "2", "-x264-params", "rc-lookahead=4:bframes=1"] if eh * ew > _BIG_FRAME else []
    encode = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
              "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{ew}x{eh}",
              "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-", "-an",
              "-vf", "scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int,format=yuv420p,"
              "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
              "-c:v", "libx264", "-preset", _PRESET, "-crf", str(s.crf), *lean, "-pix_fmt", "yuv420p"]

    def feed(stdin) -> None:
        if scaled:
            for f in _each(frames, hw):
                stdin.write(Image.fromarray(f).resize((ew, eh), Image.LANCZOS).tobytes())
            return
        pad = ((0, h % 2), (0, w % 2), (0, 0))  # yuv420p needs even sizes: repeat the last row / column
        for f in _each(frames, hw):
            stdin.write((np.pad(f, pad, mode="edge") if h % 2 or w % 2 else f).tobytes())

    if s.loops == 1:
        _ffmpeg_run([*encode, *container, f"file:{tmp}"], out, feed)
    else:
        once = temp_beside(out, "part", lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))
        try:
            _ffmpeg_run([*encode, "-f", "mp4", f"file:{once}"], out, feed)
            # -map_metadata -1: the first file's own tags (its brands, its encoder) would become keys
            _ffmpeg_run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(s.loops - 1),
                         "-i", f"file:{once}", "-map", "0:v", "-map_metadata", "-1", "-c", "copy", *container,
                         f"file:{tmp}"], out)
        finally:
            once.unlink(missing_ok=True)
    when = s.capture.created_utc() if s.capture is not None else None
    if when is not None:
        _stamp_mp4(tmp, when)


def _stamp_mp4(path: Path, when: datetime) -> None:
    """Write `when` (UTC) as the creation and modification time of an MP4's movie, tracks and media (mvhd,
    tkhd, mdhd), in place; a header of 32-bit times keeps its 0 ("unknown") for dates past 2040."""
    seconds = int((when - datetime(1904, 1, 1, tzinfo=timezone.utc)).total_seconds())  # an MP4's epoch
    with open(path, "r+b") as f:
        def boxes(start: int, end: int):
            pos = start
            while pos + 8 <= end:
                f.seek(pos)
                size, kind = struct.unpack(">I4s", f.read(8))
                head = 8
                if size == 1:
                    size, head = struct.unpack(">Q", f.read(8))[0], 16
                elif size == 0:  # to the end of its parent
                    size = end - pos
                if size < head or pos + size > end:
                    return
                yield kind, pos + head, pos + size
                pos += size

        def walk(start: int, end: int) -> None:
            for kind, body, stop in boxes(start, end):
                if kind in (b"moov", b"trak", b"mdia"):
                    walk(body, stop)
                elif kind in (b"mvhd", b"tkhd", b"mdhd"):
                    f.seek(body)
                    version = f.read(1)[0]
                    if version == 1 or seconds <= 0xFFFFFFFF:
                        f.seek(body + 4)  # after the version and flags
                        f.write(struct.pack(">QQ" if version == 1 else ">II", seconds, seconds))

        walk(0, os.fstat(f.fileno()).st_size)


def _ffmpeg_run(cmd: list[str], out: Path, feed=None) -> None:
    """Run ffmpeg, writing to its stdin with feed(stdin) when given; raise an output error naming `out`
    with the last useful line of ffmpeg's log when it fails."""
    with tempfile.TemporaryFile() as log:
        # Its own session: Ctrl-C at a terminal reaches us, not ffmpeg, so we decide whether the clip
        # being encoded is finished (batch) or abandoned and removed (by the caller).
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            if feed:
                feed(proc.stdin)
        except BrokenPipeError:  # ffmpeg gave up; its log says why
            pass
        except BaseException:  # our error or Ctrl-C: stop ffmpeg (the caller removes its file)
            proc.kill()
            raise
        finally:
            if feed:
                with suppress(BrokenPipeError):
                    proc.stdin.close()
            try:
                proc.wait()
            except BaseException:  # Ctrl-C or a stop signal while it works on: it must not outlive us
                proc.kill()
                proc.wait()
                raise
        if proc.returncode != 0:
            log.seek(0)
            raise output_error(out, f"ffmpeg failed: {_last_line(log.read()) or f'exit status {proc.returncode}'}")


def _write_gif(frames, hw, tmp: Path, out: Path, s: _Settings) -> None:
    seq = list(_each(frames, hw))
    step = max(1, int(np.ceil(np.sqrt(len(seq) * hw[0] * hw[1] / 1e6))))  # palette from ~1 megapixel
    sample = Image.fromarray(np.concatenate([f[::step, ::step] for f in seq]))
    palette = sample.quantize(_GIF_COLOURS[s.quality], method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in seq]
    ticks = [round(i * 100 / played_fps("gif", s.fps)) for i in range(len(seq) + 1)]  # delays: centiseconds
    durations = [(b - a) * 10 for a, b in zip(ticks, ticks[1:])]
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                   palette=bytes(palette.getpalette()), optimize=False)


def _write_webp(frames, hw, tmp: Path, out: Path, s: _Settings) -> None:
    """Every frame encoded whole, then the animation assembled here: libwebp's animation encoder drops a
    frame that differs from the one before by less than its lossy tolerance (it lengthens the previous
    one instead), so a clip of near-identical frames (a 5000x1 photo) came out with 4 frames of 12."""
    (h, w) = hw
    ticks = [round(i * 1000 / played_fps("webp", s.fps)) for i in range(len(frames) + 1)]  # milliseconds
    durations = [b - a for a, b in zip(ticks, ticks[1:])]
    size = (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    # what the photo says of its pixels (orientation, size) made true of the clip's
    exif, xmp = (s.capture.image_exif(w, h), s.capture.image_xmp(w, h)) if s.capture is not None else (None, None)
    exif = exif[6:] if exif and exif.startswith(b"Exif\0\0") else exif  # the chunk holds the TIFF data
    flags = 0x02 | (0x08 if exif else 0) | (0x04 if xmp else 0)  # animation, EXIF, XMP
    with open(tmp, "wb") as f:
        f.write(b"RIFF\0\0\0\0WEBP")
        f.write(_chunk(b"VP8X", bytes((flags, 0, 0, 0)) + size))
        f.write(_chunk(b"ANIM", bytes(4) + (0).to_bytes(2, "little")))  # background, loop forever
        for frame, ms in zip(_each(frames, hw), durations):
            still = io.BytesIO()
            Image.fromarray(frame).save(still, format="WEBP", lossless=False, quality=_WEBP_QUALITY[s.quality],
                                        method=4)
            bitstream = _webp_chunks(still.getvalue(), keep=(b"ALPH", b"VP8 ", b"VP8L"))
            # offset 0,0; the whole canvas; duration; no blending, no disposal
            f.write(_chunk(b"ANMF", bytes(6) + size + ms.to_bytes(3, "little") + b"\x02" + bitstream))
        if exif:  # after the frames, as the container's specification orders them
            f.write(_chunk(b"EXIF", exif))
        if xmp:
            f.write(_chunk(b"XMP ", xmp))
        riff = f.tell() - 8
        f.seek(4)
        f.write(riff.to_bytes(4, "little"))


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    """A RIFF chunk: fourcc, little-endian size, data, padded to an even length."""
    return fourcc + len(data).to_bytes(4, "little") + data + b"\0" * (len(data) % 2)


def _webp_chunks(data: bytes, keep: tuple[bytes, ...]) -> bytes:
    """The chunks of a still WebP file whose fourcc is in `keep`, as they are."""
    out, pos = [], 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if data[pos : pos + 4] in keep:
            out.append(data[pos : pos + 8 + size + size % 2])
        pos += 8 + size + size % 2
    return b"".join(out)


def _write_frames(frames, hw, folder: Path) -> None:
    digits = max(4, len(str(len(frames))))
    for i, f in enumerate(_each(frames, hw), 1):
        Image.fromarray(f).save(folder / f"frame_{i:0{digits}d}.png", compress_level=4)
