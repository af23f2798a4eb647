"""A continuous raster (an uncertainty or confidence COG) cut into integer classes by breaks, so that it
can stratify a sample (``landseg sample --strata-breaks``).

Values are read in full-width strips with the band's scale applied (a landseg probability-type COG stores
value / 254); class i holds values in ``[breaks[i-1], breaks[i])``, class 0 those below the first break,
the last class those at or above the last. No-data stays no-data (255). Each class's range is its name in
the ``landseg_legend`` tag, which ``assess.rasters.open_class_raster`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from landseg.errors import ConfigError
from landseg.io.georef import open_without_grid_warning
from landseg.io.write import atomic_output
from landseg.maps.cog import NODATA_BYTE

LEGEND_TAG = "landseg_legend"
STRIP_ROWS = 256


def check_breaks(breaks: Sequence[float]) -> None:
    if not breaks:
        raise ConfigError("--strata-breaks needs at least one break, e.g. 0.2,0.5")
    if list(breaks) != sorted(set(breaks)):
        raise ConfigError(f"--strata-breaks must increase, got {list(breaks)}")
    if len(breaks) >= NODATA_BYTE - 1:
        raise ConfigError(f"--strata-breaks makes {len(breaks) + 1} classes; at most {NODATA_BYTE - 1}")


def legend(breaks: Sequence[float]) -> dict[int, str]:
    edges = ["", *(f"{b:g}" for b in breaks), ""]
    names = {}
    for i in range(len(breaks) + 1):
        low, high = edges[i], edges[i + 1]
        names[i] = f"< {high}" if not low else (f">= {low}" if not high else f"{low} to < {high}")
    return names


def write_binned(source: str | Path, breaks: Sequence[float], out: str | Path) -> Path:
    """``source``'s band 1, scaled, cut at ``breaks`` into uint8 classes on the same grid, at ``out``."""
    check_breaks(breaks)
    source, out = Path(source), Path(out)
    edges = np.asarray(breaks, dtype=np.float64)
    with open_without_grid_warning(source) as raster:
        profile = {
            "driver": "GTiff",
            "width": raster.width,
            "height": raster.height,
            "count": 1,
            "dtype": "uint8",
            "nodata": NODATA_BYTE,
            "crs": raster.crs,
            "transform": raster.transform,
            "tiled": True,
            "compress": "deflate",
        }
        scale, offset = raster.scales[0], raster.offsets[0]
        with atomic_output(out) as temporary, open_without_grid_warning(temporary, "w", **profile) as written:
            written.update_tags(**{LEGEND_TAG: json.dumps(legend(breaks))})
            for top in range(0, raster.height, STRIP_ROWS):
                window = Window(0, top, raster.width, min(STRIP_ROWS, raster.height - top))
                values = raster.read(1, window=window).astype(np.float64) * scale + offset
                valid = raster.read_masks(1, window=window) != 0
                classes = np.where(valid, np.digitize(values, edges), NODATA_BYTE).astype(np.uint8)
                written.write(classes, 1, window=window)
    return out
