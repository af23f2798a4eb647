"""Synthetic two-date class maps whose transitions are known by construction."""

import numpy as np
import rasterio
from affine import Affine

from landseg.classes import IGNORE_INDEX

K = 5  # the synthetic schema: Field, Forest, Water, Road, Building
GRID = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_200_000.0)  # UTM 32N, 10 m pixels: 0.01 ha each


def write_map(path, index, crs="EPSG:32632", transform=GRID, nodata=IGNORE_INDEX, tags=None, count=1):
    data = np.asarray(index)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[-1],
        height=data.shape[-2],
        count=count,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data if data.ndim == 3 else np.broadcast_to(data, (count, *data.shape)))
        if tags:
            dst.update_tags(**tags)
    return path


def known_pair(height=60, width=80, seed=0):
    """BEFORE: 10 x 10 px parcels of Field/Forest/Water; AFTER: two rectangles changed on purpose."""
    rng = np.random.default_rng(seed)
    before = rng.integers(0, 3, (height // 10, width // 10)).repeat(10, 0).repeat(10, 1).astype(np.uint8)
    after = before.copy()
    after[10:30, 20:50] = 2  # 600 px become Water
    after[40:50, 0:10] = 4  # 100 px become Building
    return before, after


def reference_matrix(before, after):
    """The matrix straight from the arrays, with no-data (255) on either date left out."""
    valid = (before != IGNORE_INDEX) & (after != IGNORE_INDEX)
    return np.bincount(before[valid].astype(np.int64) * K + after[valid], minlength=K * K).reshape(K, K)
