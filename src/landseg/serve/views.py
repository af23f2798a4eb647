"""What the browser shows: the input as a JPEG it can decode, and the class map as a matching overlay.

Browsers cannot show TIFF or 16-bit data, and a very large picture makes a page crawl, so both are
drawn at most ``max_side`` pixels a side, on the same grid, so that the overlay sits exactly on the
image at every zoom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from landseg.classes import ClassSchema
from landseg.io.raster import RasterImage, open_raster
from landseg.io.write import atomic_output, write_index_png
from landseg.report.display import display_rgb

PREVIEW_QUALITY = 88


def view_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled down to fit ``max_side``, never up, keeping the aspect ratio."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def write_preview(image: RasterImage, path: Path, max_side: int) -> Path:
    """The image in display colours (first three bands, 16-bit data stretched) as a JPEG."""
    picture = Image.fromarray(display_rgb(image.data, valid=image.valid))
    size = view_size(picture.width, picture.height, max_side)
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    with atomic_output(path) as temporary:
        picture.save(temporary, format="JPEG", quality=PREVIEW_QUALITY, optimize=True)
    return path


def write_overlay(classes_path: Path, schema: ClassSchema, path: Path, max_side: int) -> Path:
    """The class map as a paletted PNG in display colours, no-data transparent, sized like the preview.

    Shrinking picks one class per pixel (nearest), as averaging class indices would invent classes.
    """
    with open_raster(classes_path) as src:
        index = src.read(1)
    size = view_size(index.shape[1], index.shape[0], max_side)
    if size != (index.shape[1], index.shape[0]):
        index = np.asarray(Image.fromarray(index).resize(size, Image.Resampling.NEAREST))
    return write_index_png(path, index, schema)
