"""Helpers of the reliability tests: broken files made on purpose, a tiny checkpoint, CLI assertions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
import torch
import yaml
from rasterio.transform import from_origin

from landseg.checkpoint import CARD_KEY, STATE_PREFIX, ModelCard
from landseg.classes import get_schema
from landseg.models import ModelSpec, build_model
from landseg.normalization import Normalization

SCHEMA = get_schema("synthetic")
TINY_WIDTHS = [8, 16]


def save_tiny_checkpoint(path: Path, bands: int = 3, tile: int = 64) -> Path:
    """A classic U-Net (widths 8, 16) with seeded random weights, saved the way training saves one."""
    spec = ModelSpec(arch="classic_unet", in_channels=bands, num_classes=SCHEMA.num_classes, widths=TINY_WIDTHS)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = build_model(spec)
    card = ModelCard(
        model=spec.to_dict(),
        schema=SCHEMA.to_dict(),
        normalization=Normalization.symmetric(bands).to_dict(),
        bands=list(range(1, bands + 1)),
        tile_size=tile,
    )
    state = {STATE_PREFIX + k: v for k, v in network.state_dict().items()}
    checkpoint = {"epoch": 0, "global_step": 1, "hyper_parameters": {CARD_KEY: card.to_dict()}, "state_dict": state}
    torch.save(checkpoint, path)
    return path


def copy_dataset(source: Path, target: Path) -> Path:
    """A private copy of a session dataset, for a test that breaks some of its files."""
    shutil.copytree(source, target)
    return target


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its length, as an interrupted copy or download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_geotiff(
    path: Path, data: np.ndarray, transform=None, crs: str | None = "EPSG:32632", nodata=None, **profile
) -> Path:
    """``(C, H, W)`` or ``(H, W)`` array as a GeoTIFF; default grid 0.5 m in UTM 32N."""
    data = data[None] if data.ndim == 2 else data
    options = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=str(data.dtype),
        transform=transform or from_origin(500000, 5200000, 0.5, 0.5),
        nodata=nodata,
    )
    if crs is not None:
        options["crs"] = crs
    options.update(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **options) as dst:
        dst.write(data)
    return path


def experiment(root: Path, train_ids=("000", "001"), val_ids=("002",), **sections) -> dict:
    """A tiny training config over ``images/scene_{id}.tif`` with masks ``masks/scene_{id}.tif``."""
    config = {
        "name": "reliability",
        "data": {
            "root": str(root),
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "masks": "masks/scene_{id}.tif",
            "split": {"field": "id", "train": list(train_ids), "val": list(val_ids)},
        },
        "model": {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": TINY_WIDTHS},
        "train": {"crop_size": 32, "batch_size": 2, "epochs": 1, "steps_per_epoch": 1, "val_tile": 64},
    }
    for section, values in sections.items():
        config[section].update(values)
    return config


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit code 1, no traceback, exactly one ``error:`` line, and it holds every fragment."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def visible_files(folder: Path) -> list[str]:
    """Every non-hidden file under ``folder`` (hidden ones are temporaries), relative, sorted."""
    if not folder.exists():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def all_files(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
