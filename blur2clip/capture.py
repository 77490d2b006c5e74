"""What a photo says about its capture (when, where, with what camera), and how each output keeps it.

`Capture.from_tags(exif, xmp)` reads the EXIF that `media.read_photo` kept (orientation already reset to
1) and the photo's XMP packet: the time the shutter opened (DateTimeOriginal, with OffsetTimeOriginal when
the camera wrote one), the camera's make and model, and the GPS position as an ISO 6709 string. The
writers (`clipwriter`) then put it where each format keeps it:

- MP4: `mp4_tags` gives ffmpeg's `-metadata` pairs, the QuickTime keys that photo libraries read
  (com.apple.quicktime.creationdate with the local time and its offset, make, model, location.ISO6709),
  written with `-movflags +use_metadata_tags`; `created_utc` the creation time that the writer puts into
  the movie's, tracks' and media headers itself (given to ffmpeg as creation_time, it would also become
  a key of that name, and readers would list it twice: "T;T").
- A WebP clip and a still photo: the EXIF with the pixel size it records (ExifImageWidth/Height) set to
  the image's and its colour space to sRGB; the XMP with orientation 1 and its recorded sizes updated
  likewise.

No torch and no numpy here; Pillow only when EXIF is parsed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_ORIGINAL, _OFFSET_ORIGINAL, _OFFSET = 0x9003, 0x9011, 0x9010
_COLOR_SPACE, _PIXEL_WIDTH, _PIXEL_HEIGHT = 0xA001, 0xA002, 0xA003


@dataclass(frozen=True)
class Capture:
    """A photo's capture metadata.

    exif: "Exif\\0\\0" + TIFF bytes (orientation 1), or None. xmp: the XMP packet, or None.
    taken: when it was taken (DateTimeOriginal, else DateTime): aware when the photo gives its offset
    from UTC, naive otherwise (a local time of unknown zone). make, model: the camera's, stripped.
    location: ISO 6709, e.g. "+48.85840+002.29450+035.000/", from the GPS tags.
    """

    exif: bytes | None = None
    xmp: bytes | None = None
    taken: datetime | None = None
    make: str | None = None
    model: str | None = None
    location: str | None = None

    @classmethod
    def from_tags(cls, exif: bytes | None, xmp: bytes | None = None) -> Capture:
        """Parse what can be parsed; a tag that is missing or malformed is left out (None)."""
        if not exif:
            return cls(None, xmp or None)
        from PIL import Image

        tags = Image.Exif()
        try:
            tags.load(exif)
            sub, gps = (tags.get_ifd(ifd) if ifd in tags else {} for ifd in (_EXIF_IFD, _GPS_IFD))
        except Exception:  # noqa: BLE001 -- malformed EXIF: kept as bytes, nothing read from it
            return cls(exif, xmp or None)
        taken = _when(sub.get(_ORIGINAL), sub.get(_OFFSET_ORIGINAL)) or _when(tags.get(_DATETIME), sub.get(_OFFSET))
        return cls(exif, xmp or None, taken, _text(tags.get(_MAKE)), _text(tags.get(_MODEL)), _iso6709(gps))

    def created_utc(self) -> datetime | None:
        """When the shutter opened, in UTC (a photo without an offset is taken to be in this computer's
        time zone), or None; an MP4's headers count from 1904, so earlier dates are None too."""
        if self.taken is None or self.taken.year < 1904:
            return None
        try:
            aware = self.taken if self.taken.tzinfo else self.taken.astimezone()
        except (OverflowError, OSError, ValueError):  # a date this computer's clock cannot place
            aware = self.taken.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc)

    def mp4_tags(self) -> dict[str, str]:
        """ffmpeg `-metadata` pairs for an MP4's QuickTime keys (empty when there is nothing to say)."""
        tags: dict[str, str] = {}
        if self.taken is not None and self.taken.tzinfo and self.created_utc() is not None:
            tags["com.apple.quicktime.creationdate"] = self.taken.strftime("%Y-%m-%dT%H:%M:%S%z")
        if self.make:
            tags["com.apple.quicktime.make"] = self.make
        if self.model:
            tags["com.apple.quicktime.model"] = self.model
        if self.location:
            tags["com.apple.quicktime.location.ISO6709"] = self.location
        return tags

    def image_exif(self, width: int, height: int) -> bytes | None:
        """The EXIF for an image (the still, a WebP clip) of width x height upright sRGB pixels: its
        recorded pixel size and colour space updated (left as they are when the EXIF cannot be parsed)."""
        if not self.exif:
            return None
        from PIL import Image

        tags = Image.Exif()
        try:
            tags.load(self.exif)
            if _EXIF_IFD not in tags:  # get_ifd would add an empty one, which libtiff refuses
                return self.exif
            sub = tags.get_ifd(_EXIF_IFD)
            sub[_PIXEL_WIDTH], sub[_PIXEL_HEIGHT], sub[_COLOR_SPACE] = width, height, 1
            return tags.tobytes()
        except Exception:  # noqa: BLE001 -- malformed EXIF: as it came
            return self.exif

    def image_xmp(self, width: int, height: int) -> bytes | None:
        """The XMP for an image of width x height upright pixels: orientation 1, recorded sizes updated."""
        if not self.xmp:
            return None
        text = self.xmp.decode("utf-8", "replace")
        for name, value in (("tiff:Orientation", 1), ("tiff:ImageWidth", width), ("tiff:ImageLength", height),
                            ("exif:PixelXDimension", width), ("exif:PixelYDimension", height)):
            text = re.sub(rf'({re.escape(name)}\s*=\s*")[^"]*(")', rf"\g<1>{value}\g<2>", text)
            text = re.sub(rf"(<{re.escape(name)}>)[^<]*(</{re.escape(name)}>)", rf"\g<1>{value}\g<2>", text)
        return text.encode("utf-8")


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = " ".join(value.replace("\0", " ").split())
    return value or None


def _when(stamp, offset) -> datetime | None:
    """An EXIF date ("2024:05:01 14:03:22") and offset ("+02:00") as a datetime; None when blank or bad."""
    stamp = _text(stamp)
    if not stamp:
        return None
    try:
        taken = datetime.strptime(stamp[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    match = re.fullmatch(r"([+-])(\d\d):(\d\d)", _text(offset) or "")
    if match:
        minutes = int(match[2]) * 60 + int(match[3])
        if minutes <= 14 * 60:
            taken = taken.replace(tzinfo=timezone(timedelta(minutes=-minutes if match[1] == "-" else minutes)))
    return taken


def _iso6709(gps) -> str | None:
    """The GPS IFD's position as ISO 6709 (+DD.DDDDD+DDD.DDDDD[+AAA.AAA]/), or None without one."""
    try:
        lat, lon = _degrees(gps.get(2)), _degrees(gps.get(4))
        if lat is None or lon is None or not (abs(lat) <= 90 and abs(lon) <= 180):
            return None
        lat = -lat if _text(gps.get(1)) == "S" else lat
        lon = -lon if _text(gps.get(3)) == "W" else lon
        text = f"{lat:+09.5f}{lon:+010.5f}"
        alt = float(gps.get(6)) if gps.get(6) is not None else math.nan
        if math.isfinite(alt):  # cameras write 0/0 for an altitude they do not know
            ref = gps.get(5)
            below = (ref[0] if isinstance(ref, bytes) and ref else ref) == 1
            text += f"{-alt if below else alt:+08.3f}"
        return text + "/"
    except (TypeError, ValueError, ZeroDivisionError, AttributeError):
        return None


def _degrees(value) -> float | None:
    """(degrees, minutes, seconds) rationals -> decimal degrees."""
    if not value or len(value) != 3:
        return None
    d, m, s = (float(v) for v in value)
    return d + m / 60 + s / 3600
