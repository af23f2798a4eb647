"""AFTER on BEFORE's grid: the overlap window, nearest-neighbour warping window by window, pixel areas.

The comparison happens on BEFORE's grid, cropped to where AFTER has pixels. When AFTER's CRS,
resolution or extent differ it is read through a ``rasterio.vrt.WarpedVRT`` onto BEFORE's grid with
nearest-neighbour resampling (class codes are never averaged), one window at a time, so no scene is
ever warped whole. Pixels outside AFTER's footprint come back masked and count as AFTER no-data.

Ground areas of the pixels of BEFORE's grid come from ``maps.areas``, as every area in landseg does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from landseg.errors import DataError
from landseg.io.georef import warped_onto


@dataclass(frozen=True)
class Overlap:
    """The part of BEFORE's grid that AFTER covers, as a window of BEFORE."""

    window: Window
    transform: rasterio.Affine
    crs: rasterio.crs.CRS | None
    resampled: bool
    """True when AFTER is warped (another CRS, resolution or alignment), False when read as it is."""

    @property
    def height(self) -> int:
        return int(self.window.height)

    @property
    def width(self) -> int:
        return int(self.window.width)

    def blocks(self, size: int) -> Iterator[Window]:
        """Windows of at most ``size``² pixels covering the overlap, relative to it, row by row."""
        for top in range(0, self.height, size):
            for left in range(0, self.width, size):
                yield Window(left, top, min(size, self.width - left), min(size, self.height - top))

    def block_rows(self, size: int) -> list[list[Window]]:
        """``blocks`` grouped by row of blocks: the unit of work of one task."""
        rows: dict[int, list[Window]] = {}
        for block in self.blocks(size):
            rows.setdefault(int(block.row_off), []).append(block)
        return list(rows.values())

    def in_before(self, block: Window) -> Window:
        return Window(
            self.window.col_off + block.col_off, self.window.row_off + block.row_off, block.width, block.height
        )


def same_grid(a, b) -> bool:
    return a.crs == b.crs and a.transform.almost_equals(b.transform) and a.shape == b.shape


def find_overlap(before, after) -> Overlap:
    """Where AFTER overlaps BEFORE, in BEFORE's pixels; ``DataError`` naming AFTER when nowhere."""
    full = Window(0, 0, before.width, before.height)
    if same_grid(before, after):
        return Overlap(full, before.transform, before.crs, resampled=False)
    if (before.crs is None) != (after.crs is None):
        which = before if before.crs is None else after
        raise DataError("has no CRS, so it cannot be put on the other date's grid", which.name)
    if before.crs is None and before.transform.is_identity and after.transform.is_identity:
        # Two plain pixel grids (no georeferencing at all): compared from the top-left corner.
        window = Window(0, 0, min(before.width, after.width), min(before.height, after.height))
        return Overlap(window, before.transform, None, resampled=False)
    bounds = (
        after.bounds
        if before.crs == after.crs
        else transform_bounds(after.crs, before.crs, *after.bounds, densify_pts=21)
    )
    raw = from_bounds(*bounds, transform=before.transform)
    raw = raw.round_offsets(op="floor", pixel_precision=3).round_lengths(op="ceil", pixel_precision=3)
    try:
        window = raw.intersection(full)
    except rasterio.errors.WindowError:
        window = None
    if window is None or window.width < 1 or window.height < 1:
        raise DataError(f"does not overlap {_name(before)}: the maps cover different places", after.name)
    window = Window(int(window.col_off), int(window.row_off), int(window.width), int(window.height))
    return Overlap(window, before.window_transform(window), before.crs, resampled=True)


def _name(dataset) -> str:
    return str(dataset.name).rsplit("/", 1)[-1]


@contextmanager
def on_before_grid(after, before, overlap: Overlap):
    """AFTER (or its confidence) readable in BEFORE's pixel windows: itself, or a nearest-neighbour VRT."""
    if not overlap.resampled:
        yield after
        return
    # Without no-data, an alpha band tells AFTER's footprint.
    footprint = dict(src_nodata=after.nodata, nodata=after.nodata) if after.nodata is not None else dict(add_alpha=True)
    with warped_onto(after, before, **footprint) as vrt:
        yield vrt


def read_band(dataset, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Band 1 of ``window`` and where it holds data (no-data, masks and outside the footprint excluded)."""
    data = dataset.read(1, window=window, boundless=False)
    valid = dataset.read_masks(1, window=window) != 0
    return data, valid
