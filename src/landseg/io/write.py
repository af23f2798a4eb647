"""Writing class maps, images and tables: GeoTIFF with a colour table, paletted PNG, RGB PNG, CSV rows.

Every file is written under a temporary name in its destination folder and renamed into place only
once complete, so an interrupted run never leaves a truncated output that looks finished.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

from landseg.classes import IGNORE_INDEX, ClassSchema
from landseg.errors import LandsegError, OutputError

GEOTIFF_BLOCK = 256


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; fsync it and rename it to ``path`` if the block succeeds.

    The temporary name keeps the extension, since GDAL and Pillow choose their format from it. On any
    exception the partial file is removed and the exception propagates; an existing ``path`` is left
    untouched. The fsync before the rename means a crash or power cut leaves either the old file or the
    complete new one, never a renamed file whose blocks never reached the disk.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, path)
    except LandsegError:
        temporary.unlink(missing_ok=True)
        raise
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        # The message names the output the user asked for, not our hidden temporary name.
        problem = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        problem = problem.replace(str(temporary), path.name)[:200]
        raise OutputError(f"cannot write this file ({problem})", path) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_rows_csv(path: str | Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """``rows`` as a CSV with a header of ``columns`` (keys outside them are left out), written atomically."""
    path = Path(path)
    with atomic_output(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def fsync_file(path: str | Path) -> None:
    """Flush a closed file's data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_index_geotiff(
    path: str | Path,
    index: np.ndarray,
    crs: rasterio.crs.CRS | None,
    transform: rasterio.Affine,
    schema: ClassSchema,
) -> Path:
    """A ``uint8`` class map on the given grid: no-data 255, the schema's colour table, band "class"."""
    index = _check_index(index)
    profile = {
        "driver": "GTiff",
        "width": index.shape[1],
        "height": index.shape[0],
        "count": 1,
        "dtype": "uint8",
        "nodata": IGNORE_INDEX,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": GEOTIFF_BLOCK,
        "blockysize": GEOTIFF_BLOCK,
        "compress": "deflate",
        "photometric": "palette",
    }
    path = Path(path)
    with atomic_output(path) as temporary, rasterio.open(temporary, "w", **profile) as dst:
        dst.write(index, 1)
        dst.write_colormap(1, schema.colormap())
        dst.set_band_description(1, "class")
    return path


def write_index_png(path: str | Path, index: np.ndarray, schema: ClassSchema) -> Path:
    """A paletted PNG whose pixel values are class indices and whose palette is the display colours.

    Index 255 (no-data) is fully transparent, like in the GeoTIFF colour table.
    """
    index = _check_index(index)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: schema.num_classes] = schema.palette
    alpha = np.full(256, 255, dtype=np.uint8)
    alpha[IGNORE_INDEX] = 0
    image = Image.fromarray(index)  # "L"; the palette makes it "P"
    image.putpalette(palette.tobytes(), rawmode="RGB")
    path = Path(path)
    with atomic_output(path) as temporary:
        image.save(temporary, format="PNG", transparency=alpha.tobytes(), optimize=True)
    return path


def write_rgb_png(path: str | Path, rgb: np.ndarray) -> Path:
    """An ``(H, W, 3) uint8`` image as PNG."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    path = Path(path)
    with atomic_output(path) as temporary:
        Image.fromarray(rgb).save(temporary, format="PNG")
    return path


def _check_index(index: np.ndarray) -> np.ndarray:
    if index.ndim != 2:
        raise ValueError(f"expected an (H, W) class index map, got shape {index.shape}")
    if index.dtype != np.uint8:
        raise ValueError(f"expected a uint8 class index map, got {index.dtype}")
    return index
