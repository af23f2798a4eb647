"""The coloured preview with legend that a prediction writes beside its class map.

It lives here, not in ``maps``, because it draws with ``report`` (which ``maps`` does not import);
areas, COGs and polygons are ``maps``' own.
"""

from __future__ import annotations

from pathlib import Path

from rasterio.enums import Resampling

from landseg.classes import ClassSchema
from landseg.io.georef import open_without_grid_warning


def write_preview(class_raster: str | Path, schema: ClassSchema, path: str | Path) -> Path:
    """A coloured PNG with legend of a class raster of any size, read at most ``PREVIEW_MAX_SIDE`` a side."""
    from landseg.report.overlay import PREVIEW_MAX_SIDE, save_colorized_png

    with open_without_grid_warning(class_raster) as source:
        step = max(1, -(-max(source.height, source.width) // PREVIEW_MAX_SIDE))
        shape = (max(1, source.height // step), max(1, source.width // step))
        # Decimated reads come from the COG's overviews, built by majority vote.
        index = source.read(1, out_shape=shape, resampling=Resampling.nearest)
    return save_colorized_png(index, schema, path, legend=True)
