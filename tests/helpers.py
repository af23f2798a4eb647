"""Helpers shared by test files: GeoTIFFs written from arrays, a tiny seeded checkpoint, a tiny training
config, and validation scored again outside training. Import them as ``from tests.helpers import ...``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from landseg.checkpoint import CARD_KEY, STATE_PREFIX, ModelCard
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.config import ExperimentConfig
from landseg.data.catalog import build_catalog, load_pair
from landseg.metrics import ConfusionMatrix
from landseg.models import ModelSpec, build_model
from landseg.normalization import Normalization

SCHEMA = get_schema("synthetic")
TINY_WIDTHS = [8, 16]
TINY_MODEL = {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": TINY_WIDTHS}
UTM_HALF_METRE = from_origin(500000, 5200000, 0.5, 0.5)
"""The default grid of ``write_geotiff``: 0.5 m pixels in UTM 32N (EPSG:32632)."""


def write_geotiff(
    path: Path,
    data: np.ndarray,
    transform=None,
    crs: str | None = "EPSG:32632",
    nodata=None,
    descriptions: Sequence[str] | None = None,
    **profile,
) -> Path:
    """``(C, H, W)`` or ``(H, W)`` array as a GeoTIFF (``crs=None``: without a CRS); ``profile`` overrides
    or adds creation options. Default grid ``UTM_HALF_METRE``."""
    data = data[None] if data.ndim == 2 else data
    options = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=str(data.dtype),
        transform=transform or UTM_HALF_METRE,
        nodata=nodata,
    )
    if crs is not None:
        options["crs"] = crs
    options.update(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **options) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def save_tiny_checkpoint(
    path: Path,
    bands: int = 3,
    tile: int = 64,
    widths: Sequence[int] = TINY_WIDTHS,
    seed: int = 0,
    normalization: dict | None = None,
    **card_fields,
) -> Path:
    """A classic U-Net for the synthetic schema with seeded random weights, saved the way training saves
    one. ``normalization`` defaults to symmetric scaling of 8-bit data; ``card_fields`` go on the card
    (``band_names``, ``input_scale``, ``input_stats`` ...)."""
    spec = ModelSpec(arch="classic_unet", in_channels=bands, num_classes=SCHEMA.num_classes, widths=list(widths))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = build_model(spec)
    card = ModelCard(
        model=spec.to_dict(),
        schema=SCHEMA.to_dict(),
        normalization=normalization or Normalization.symmetric(bands).to_dict(),
        bands=list(range(1, bands + 1)),
        tile_size=tile,
        **card_fields,
    )
    state = {STATE_PREFIX + k: v for k, v in network.state_dict().items()}
    checkpoint = {"epoch": 0, "global_step": 1, "hyper_parameters": {CARD_KEY: card.to_dict()}, "state_dict": state}
    torch.save(checkpoint, path)
    return path


def experiment(
    root: Path,
    train_ids: Sequence[str] = ("000", "001"),
    val_ids: Sequence[str] = ("002",),
    *,
    name: str = "tiny",
    base_model: dict | None = None,
    **sections: dict,
) -> dict:
    """A tiny training config (a dict, as a YAML file holds it) over ``images/scene_{id}.tif`` and
    ``masks/scene_{id}.tif`` of the synthetic schema: one step of a two-level classic U-Net.

    ``base_model`` replaces the tiny U-Net as the model section; each other keyword (``data``, ``model``,
    ``train``) updates its section."""
    config: dict[str, Any] = {
        "name": name,
        "data": {
            "root": str(root),
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "masks": "masks/scene_{id}.tif",
            "split": {"field": "id", "train": list(train_ids), "val": list(val_ids)},
        },
        "model": dict(base_model if base_model is not None else TINY_MODEL),
        "train": {
            "crop_size": 32,
            "batch_size": 2,
            "epochs": 1,
            "steps_per_epoch": 1,
            "val_tile": 64,
            "int8_export": False,  # tests/predict/test_quantize.py trains with it
        },
    }
    for section, values in sections.items():
        config[section].update(values)
    return config


def validation_confusion(checkpoint: Path, config: ExperimentConfig, split: str = "val") -> ConfusionMatrix:
    """The checkpoint's network scored on ``split`` in this one process, the way training validates: each
    whole image in raw units through the inference core, tiles of ``train.val_tile``, one matrix for all."""
    from landseg.predict.core import predict_array
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.options import PredictOptions

    ensemble = load_ensemble([checkpoint], engine="torch", channels_last=False)
    schema = get_schema(config.data.schema_)
    confusion = ConfusionMatrix(schema.num_classes, ignore_index=IGNORE_INDEX)
    for sample in build_catalog(config.data).split(split):
        image, truth = load_pair(
            sample,
            schema,
            bands=config.data.bands,
            tolerance=config.data.size_tolerance,
            unknown=config.data.unknown_labels,
            nodata=config.data.nodata,
        )
        pixels = image.data.astype(np.float32)
        options = PredictOptions(
            tile=config.train.val_tile,
            overlap=config.train.val_overlap,
            bands=tuple(range(1, len(pixels) + 1)),
            allow_input_mismatch=True,
        )
        predicted = predict_array(pixels, ensemble, options).probabilities.argmax(axis=0)
        confusion.update(predicted, truth)
    return confusion
