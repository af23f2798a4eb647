"""Checking an uploaded file before any job is queued: its format by content, its size, its pixels.

The file's name and extension say nothing here: the first bytes decide the format, GDAL then opens
the file with that one driver only (so a file cannot smuggle in a VRT or any other GDAL format that
reads other files), and every pixel is decoded once so truncated files are refused at upload time,
with a 4xx message, rather than failing later as a job.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from landseg.checkpoint import ModelCard
from landseg.errors import LandsegError
from landseg.io.georef import GCPS, RPCS, Georeference
from landseg.io.raster import RasterImage, read_image

# Leading bytes of each accepted format, and the one GDAL driver allowed to read it.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "GTiff"),  # TIFF, little-endian
    (b"MM\x00*", "GTiff"),  # TIFF, big-endian
    (b"II+\x00", "GTiff"),  # BigTIFF
    (b"MM\x00+", "GTiff"),
)
FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "GTiff": "TIFF / GeoTIFF"}
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "GTiff": ".tif"}
ACCEPTED = "PNG, JPEG or TIFF/GeoTIFF"
# GDAL must not list or probe the job folder for side-car files an upload could name.
GDAL_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


class UploadRejected(Exception):
    """An upload the server refuses; ``status_code`` is the HTTP status, the message says why."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    bands: int
    dtype: str
    georeferenced: bool
    crs: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def sniff_format(head: bytes) -> str | None:
    """GDAL driver name for a file starting with ``head``, or None when it is no accepted format."""
    for signature, driver in SIGNATURES:
        if head.startswith(signature):
            return driver
    return None


def safe_display_name(filename: str | None) -> str:
    """A client's file name reduced to a harmless stem for download names, never for server paths."""
    stem = Path((filename or "").replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")
    return stem[:80] or "image"


def inspect_upload(path: Path, card: ModelCard, max_pixels: int) -> tuple[Path, ImageInfo, RasterImage]:
    """Check an uploaded file and rename it to the extension its content calls for.

    Returns the new path, what the image is, and its pixels. Raises ``UploadRejected`` with 415 for
    an unaccepted format, 413 for too many pixels, 422 for a file that cannot be used.
    """
    with open(path, "rb") as handle:
        head = handle.read(16)
    driver = sniff_format(head)
    if driver is None:
        raise UploadRejected(415, f"the file is not a {ACCEPTED} image (its content starts with {head[:8].hex(' ')})")
    named = path.with_name(f"input{SUFFIXES[driver]}")
    os.replace(path, named)
    kind = FORMAT_NAMES[driver]
    try:
        with rasterio.Env(**GDAL_OPTIONS), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(named, driver=driver) as src:
                width, height, bands, dtype = src.width, src.height, src.count, src.dtypes[0]
                descriptions = src.descriptions
                georef = Georeference.of(src)
    except RasterioError as exc:
        problem = scrub_paths(str(exc))
        raise UploadRejected(422, f"the file looks like {kind} but cannot be opened ({problem})") from None
    if width * height > max_pixels:
        raise UploadRejected(
            413,
            f"the image is {width} x {height} = {width * height:,} pixels; this server accepts at most "
            f"{max_pixels:,} pixels (start it with a larger --max-pixels, or cut the image into parts)",
        )
    needed = max(card.bands)
    if bands < needed and not names_every_band(card, descriptions):
        names = f" ({', '.join(card.band_names)})" if card.band_names else ""
        raise UploadRejected(
            422,
            f"the image has {bands} band{'s' if bands != 1 else ''}, but the model reads bands {card.bands}{names}",
        )
    try:
        with rasterio.Env(**GDAL_OPTIONS):
            image = read_image(named)
    except LandsegError as exc:
        raise UploadRejected(422, f"the {kind} file cannot be read: {scrub_paths(exc.problem)}") from None
    info = ImageInfo(
        format=kind,
        width=width,
        height=height,
        bands=bands,
        dtype=dtype,
        georeferenced=georef.georeferenced,
        crs=placed_by(georef),
    )
    return named, info, image


def names_every_band(card: ModelCard, descriptions) -> bool:
    """Whether the image's band descriptions name every band the model reads: the engine then reads them
    by name (``predict.bands.match_bands``), wherever they are, as ``landseg predict`` does."""
    if not card.band_names:
        return False
    found = {(d or "").strip().lower() for d in descriptions}
    return all(name.strip().lower() in found for name in card.band_names)


def placed_by(georef: Georeference) -> str | None:
    """What the page says places the image on Earth: its CRS, or its GCPs or RPCs."""
    kind, crs = georef.kind, georef.describe()["crs"]
    if kind == GCPS:
        return f"GCPs in {crs}"
    return "RPCs" if kind == RPCS and crs is None else crs


def scrub_paths(text: str) -> str:
    """The first line of an error message with file paths replaced: server paths stay private."""
    lines = text.strip().splitlines()
    return re.sub(r"'?/[^\s':]+'?", "the file", lines[0] if lines else "unknown error")[:200]
