"""Helpers of the scale-out tests: a tiny seeded checkpoint, synthetic scenes, and output comparisons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch

from landseg.checkpoint import CARD_KEY, STATE_PREFIX, ModelCard
from landseg.classes import get_schema
from landseg.data.synthetic import generate_scene, write_scene
from landseg.models import ModelSpec, build_model
from landseg.normalization import Normalization

SCHEMA = get_schema("synthetic")


def save_tiny_checkpoint(path: Path, tile: int = 64) -> Path:
    """A 3-band classic U-Net (widths 8, 16) with seeded random weights, saved as training saves one."""
    spec = ModelSpec(arch="classic_unet", in_channels=3, num_classes=SCHEMA.num_classes, widths=[8, 16])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = build_model(spec)
    card = ModelCard(
        model=spec.to_dict(),
        schema=SCHEMA.to_dict(),
        normalization=Normalization.symmetric(3).to_dict(),
        bands=[1, 2, 3],
        tile_size=tile,
    )
    state = {STATE_PREFIX + k: v for k, v in network.state_dict().items()}
    torch.save(
        {"epoch": 0, "global_step": 1, "hyper_parameters": {CARD_KEY: card.to_dict()}, "state_dict": state}, path
    )
    return path


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
