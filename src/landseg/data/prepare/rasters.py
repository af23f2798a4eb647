"""Windowed raster reading for scene-scale preparation: bands, no-data, and scaling to float.

Scenes are never read whole: everything here works on one ``rasterio.windows.Window`` of an open
dataset at a time. Bands are chosen by 1-based index or by description (``B04``, ``nir``), no-data comes
from the file unless the config overrides it, and values can be scaled to float by a fixed range,
by percentiles or by per-band mean and std (the last two measured by ``landseg.data.prepare.stats``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from landseg.errors import ConfigError, DataError
from landseg.io.raster import open_raster, read_error_message

UINT8_NODATA = 0
"""No-data value of chips scaled to uint8; valid pixels are scaled into 1..255 so it stays unambiguous."""


def resolve_bands(src: rasterio.DatasetReader, bands: Sequence[int | str] | None) -> list[int]:
    """1-based band indexes of ``bands`` (indexes or descriptions) in ``src``; all bands when None."""
    if bands is None:
        return list(range(1, src.count + 1))
    descriptions = {(d or "").strip().lower(): i + 1 for i, d in enumerate(src.descriptions) if d}
    resolved: list[int] = []
    missing: list[int | str] = []
    for band in bands:
        if isinstance(band, int) or band.isdigit():
            index = int(band)
            if 1 <= index <= src.count:
                resolved.append(index)
            else:
                missing.append(index)
        elif band.strip().lower() in descriptions:
            resolved.append(descriptions[band.strip().lower()])
        else:
            missing.append(band)
    if missing:
        named = ", ".join(d for d in src.descriptions if d) or "none"
        raise DataError(f"has {src.count} bands (descriptions: {named}); cannot find bands {missing}", src.name)
    return resolved


def block_windows(width: int, height: int, block: int) -> Iterator[Window]:
    """Windows of ``block`` x ``block`` pixels (smaller at the right and bottom edges), row by row."""
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def valid_pixels(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(H, W)`` bool: False where every band is ``nodata``, or where any band is not finite."""
    valid = np.ones(data.shape[1:], dtype=bool)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    if nodata is not None and not math.isnan(nodata):
        valid &= ~(data == nodata).all(axis=0)
    return valid


class Unreadable(DataError):
    """A file or window GDAL cannot read (missing, empty, truncated, corrupt): quarantined, the run goes on."""


class UnreadableWindow(Unreadable):
    pass


class Unusable(DataError):
    """A scene whose files read fine but cannot be paired (its label misses its image, the two grids
    cannot be matched): quarantined, the run goes on."""


def open_readable(path) -> rasterio.DatasetReader:
    """``open_raster``, its failures marked as ``Unreadable``."""
    try:
        return open_raster(path)
    except DataError as exc:
        raise Unreadable(exc.problem, exc.path) from None


READ_ERRORS: tuple[type[BaseException], ...] = (RasterioError,)
try:  # GDAL's CPLE errors are not RasterioErrors in rasterio 1.4
    from rasterio._err import CPLE_BaseError

    READ_ERRORS += (CPLE_BaseError,)
except ImportError:  # pragma: no cover
    pass


def read_window(
    src: rasterio.DatasetReader, bands: list[int], window: Window, nodata: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(C, h, w)`` values in the file's dtype and their ``(h, w)`` validity; ``DataError`` if corrupt."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            data = src.read(bands, window=window)
    except READ_ERRORS as exc:
        message = f"cannot read window {window_text(window)}: {read_error_message(exc)}"
        raise UnreadableWindow(message, src.name) from None
    return data, valid_pixels(data, nodata)


def window_text(window: Window) -> str:
    return f"col {int(window.col_off)}, row {int(window.row_off)}, {int(window.width)} x {int(window.height)}"


def scene_nodata(src: rasterio.DatasetReader, override: float | None) -> float | None:
    return override if override is not None else src.nodata


@dataclass(frozen=True)
class Scaling:
    """Per-band ``(x - offset) / scale`` to float32; no-data becomes NaN."""

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    kind: str = "none"

    def __post_init__(self):
        if len(self.offset) != len(self.scale):
            raise ConfigError(f"scaling has {len(self.offset)} offsets but {len(self.scale)} scales")
        if any(not s > 0 for s in self.scale):
            raise ConfigError(f"scaling ranges must be positive, got {list(self.scale)} (is a band constant?)")

    @classmethod
    def identity(cls, bands: int) -> Scaling:
        return cls((0.0,) * bands, (1.0,) * bands, "none")

    @classmethod
    def fixed(cls, low: float | Sequence[float], high: float | Sequence[float], bands: int) -> Scaling:
        """``[low, high]`` to ``[0, 1]``; one value for all bands or one per band."""
        lows, highs = _per_band(low, bands, "min"), _per_band(high, bands, "max")
        return cls(lows, tuple(high - low for low, high in zip(lows, highs, strict=False)), "fixed")

    @classmethod
    def mean_std(cls, mean: Sequence[float], std: Sequence[float]) -> Scaling:
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std), "meanstd")

    @property
    def bands(self) -> int:
        return len(self.offset)

    def to_float(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if data.shape[0] != self.bands:
            raise ConfigError(f"scaling is for {self.bands} bands, the data has {data.shape[0]}")
        offset = np.asarray(self.offset, dtype=np.float32)[:, None, None]
        scale = np.asarray(self.scale, dtype=np.float32)[:, None, None]
        out = (data.astype(np.float32) - offset) / scale
        out[:, ~valid] = np.nan
        return out

    def to_uint8(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``[0, 1]`` after scaling to ``1..255``, values outside clipped; no-data ``UINT8_NODATA``."""
        unit = np.clip(np.nan_to_num(self.to_float(data, valid), nan=0.0), 0.0, 1.0)
        out = (1 + np.rint(unit * 254)).astype(np.uint8)
        out[:, ~valid] = UINT8_NODATA
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "offset": list(self.offset), "scale": list(self.scale)}


def _per_band(value: float | Sequence[float], bands: int, name: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * bands
    values = tuple(float(v) for v in value)
    if len(values) != bands:
        raise ConfigError(f"scale.{name} has {len(values)} values for {bands} bands")
    return values
