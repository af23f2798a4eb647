"""Helpers of the scale-out tests: a tiny seeded checkpoint, synthetic scenes, and output comparisons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from tests.helpers import save_tiny_checkpoint as save_tiny_checkpoint  # one tiny checkpoint for every folder

from landseg.data.synthetic import generate_scene, write_scene


def write_synthetic_scene(folder: Path, name: str, shape: tuple[int, int], seed: int) -> Path:
    """A georeferenced 3-band synthetic landscape (with its no-data region) of ``shape`` pixels."""
    image, _ = write_scene(generate_scene(shape, seed=seed), folder / f"{name}.tif", folder / "labels" / f"{name}.tif")
    return image


def read_bands(path: Path) -> np.ndarray:
    with rasterio.open(path) as source:
        return source.read()


def profile_summary(path: Path) -> dict:
    """What makes two COGs the same map: grid, layout, no-data, overviews, colours, tags."""
    with rasterio.open(path) as source:
        return {
            "crs": source.crs,
            "transform": source.transform,
            "shape": source.shape,
            "count": source.count,
            "dtypes": source.dtypes,
            "nodata": source.nodata,
            "block_shapes": source.block_shapes,
            "overviews": source.overviews(1),
            "layout": source.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
            "colormap": source.colormap(1) if source.count == 1 and "classes" in path.name else None,
            "scales": source.scales,
            "descriptions": source.descriptions,
            "tags": source.tags(),
        }
