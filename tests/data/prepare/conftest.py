"""Helpers for the preparation tests: small seeded GeoTIFFs written on demand."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine, from_origin


def write_raster(
    path: Path,
    data: np.ndarray,
    transform: Affine | None = None,
    crs: str | None = "EPSG:32632",
    nodata=None,
    descriptions=None,
    block: int | None = None,
) -> Path:
    """``(C, H, W)`` or ``(H, W)`` array as a GeoTIFF (tiled and deflated when ``block`` is given)."""
    data = data[None] if data.ndim == 2 else data
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=str(data.dtype),
        crs=crs,
        transform=transform or from_origin(500000, 5200000, 10, 10),
        nodata=nodata,
    )
    if block:
        profile.update(tiled=True, blockxsize=block, blockysize=block, compress="deflate")
    if crs is None:
        profile.pop("crs")
        profile["transform"] = transform or Affine.identity()
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def blocky_codes(shape, block: int, codes, seed: int) -> np.ndarray:
    """Random class codes constant over ``block`` x ``block`` cells (parcels), cropped to ``shape``."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(np.asarray(codes), size=(shape[0] // block + 1, shape[1] // block + 1))
    return np.kron(cells, np.ones((block, block), dtype=cells.dtype))[: shape[0], : shape[1]]


@pytest.fixture
def raster_writer():
    return write_raster


@pytest.fixture
def blocky():
    return blocky_codes
