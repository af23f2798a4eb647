"""Reading images and masks through rasterio: GeoTIFF, JPEG, PNG, any band count and dtype.

Everything is read band-first, ``(C, H, W)``, in the file's own dtype; georeferencing travels with the
pixels so outputs can be written on the same grid. Unreadable files raise ``DataError`` naming the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from landseg.classes import ClassSchema, UnknownPolicy
from landseg.errors import DataError
from landseg.io.sentinel2 import is_sentinel2_product, open_sentinel2

# An image claiming more pixels than this is refused before any memory is allocated.
MAX_PIXELS_IN_MEMORY = 1_000_000_000


@dataclass
class RasterImage:
    data: np.ndarray
    """``(C, H, W)`` in the file's dtype."""
    path: Path
    crs: rasterio.crs.CRS | None
    transform: rasterio.Affine
    nodata: float | None
    valid: np.ndarray | None = None
    """``(H, W)`` bool, False where every band is no-data or NaN; None when all pixels are valid."""

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape[-2], self.data.shape[-1]


@dataclass(frozen=True)
class RasterInfo:
    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: rasterio.crs.CRS | None
    transform: rasterio.Affine
    nodata: float | None
    descriptions: tuple[str | None, ...]


def open_raster(path: str | Path):
    """``rasterio.open`` with a clear error instead of GDAL's, and no warning for plain JPEG/PNG; a
    Sentinel-2 ``.SAFE`` folder, ``.zip`` or STAC item opens as one stacked raster (``sentinel2.py``)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file does not exist", path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataError("file is empty (0 bytes)", path)
    if is_sentinel2_product(path):
        return open_sentinel2(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise DataError(f"not a readable raster image ({read_error_message(exc)})", path) from None


def _check_png_complete(path: Path) -> None:
    """GDAL's PNG driver returns zeros for a truncated PNG instead of failing; PIL's chunk check does not."""
    if path.suffix.lower() != ".png":
        return
    from PIL import Image

    try:
        with Image.open(path) as png:
            png.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"PNG is truncated or corrupt ({read_error_message(exc)})", path) from None


def raster_info(path: str | Path) -> RasterInfo:
    with open_raster(path) as src:
        return RasterInfo(
            path=Path(path),
            width=src.width,
            height=src.height,
            count=src.count,
            dtype=src.dtypes[0],
            crs=src.crs,
            transform=src.transform,
            nodata=src.nodata,
            descriptions=tuple(src.descriptions),
        )


def read_image(
    path: str | Path,
    bands: Sequence[int] | None = None,
    window: Window | None = None,
    nodata: float | None = None,
) -> RasterImage:
    """Read ``bands`` (1-based, default all) of ``path``; ``nodata`` overrides the file's value."""
    path = Path(path)
    _check_png_complete(path)
    with open_raster(path) as src:
        if bands is None:
            bands = list(range(1, src.count + 1))
        missing = [b for b in bands if not 1 <= b <= src.count]
        if missing:
            raise DataError(f"has {src.count} bands; bands {missing} were asked for", path)
        height = window.height if window is not None else src.height
        width = window.width if window is not None else src.width
        if height * width * len(bands) > MAX_PIXELS_IN_MEMORY:
            raise DataError(
                f"declares {src.width}x{src.height}x{src.count} pixels, too many to read at once; "
                "use windowed or streamed reading",
                path,
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                data = src.read(list(bands), window=window)
        except (RasterioIOError, rasterio.errors.RasterioError) as exc:
            raise DataError(
                f"cannot read pixels, file is truncated or corrupt ({read_error_message(exc)})", path
            ) from None
        nodata_value = nodata if nodata is not None else src.nodata
        transform = src.window_transform(window) if window is not None else src.transform
        crs = src.crs
    if transform.is_identity or crs is None:
        crs = None
    valid = _valid_mask(data, nodata_value)
    return RasterImage(data=data, path=path, crs=crs, transform=transform, nodata=nodata_value, valid=valid)


def _valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    invalid = np.zeros(data.shape[1:], dtype=bool)
    if np.issubdtype(data.dtype, np.floating):
        invalid |= ~np.isfinite(data).all(axis=0)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        invalid |= (data == nodata).all(axis=0)
    return ~invalid if invalid.any() else None


def read_mask_raw(path: str | Path) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A mask as stored: ``(H, W)`` codes or ``(H, W, 3)`` colours; a paletted PNG gives both, as
    ``(colours, codes)``, since only the schema can say which of the two its classes are written in."""
    path = Path(path)
    _check_png_complete(path)
    with open_raster(path) as src:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                data = src.read()
        except (RasterioIOError, rasterio.errors.RasterioError) as exc:
            raise DataError(
                f"cannot read mask, file is truncated or corrupt ({read_error_message(exc)})", path
            ) from None
        colormap = None
        if src.count == 1:
            try:
                colormap = src.colormap(1)
            except ValueError:
                colormap = None
    if data.shape[0] in (3, 4):
        return np.ascontiguousarray(np.moveaxis(data[:3], 0, -1))
    if data.shape[0] != 1:
        raise DataError(f"mask has {data.shape[0]} bands; expected 1 (codes) or 3 (RGB colours)", path)
    codes = data[0]
    if colormap is not None and path.suffix.lower() == ".png":
        # A paletted PNG stores colours; only the palette says which.
        lut = np.zeros((256, 3), dtype=np.uint8)
        for index, rgba in colormap.items():
            lut[index] = rgba[:3]
        return lut[codes.astype(np.uint8)], codes
    return codes


def read_mask(path: str | Path, schema: ClassSchema, unknown: UnknownPolicy = "error") -> np.ndarray:
    """Read and decode a mask to a ``uint8`` class-index array (``IGNORE_INDEX`` = no label)."""
    raw = read_mask_raw(path)
    if isinstance(raw, tuple):  # paletted PNG: colours if the schema speaks colours, else codes
        colors, codes = raw
        raw = colors if schema.has_mask_colors and not schema.has_codes else codes
    return schema.decode(raw, unknown=unknown, source=str(path))


def read_error_message(exc: BaseException) -> str:
    """GDAL's own explanation of a failed read: rasterio often says only "See previous exception" and
    keeps GDAL's message as the cause, so the chain is walked (three messages at most)."""
    messages: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(messages) < 3:
        text = str(current).strip().splitlines()[0] if str(current).strip() else type(current).__name__
        if "See previous exception" not in text and text[:200] not in messages:
            messages.append(text[:200])
        current = current.__cause__ or current.__context__
    return "; ".join(messages) or "read failed"
