"""``landseg evaluate`` scores the maps ``landseg predict`` writes: the same options give the same map, so
the confusion matrix of the written class maps is the one in metrics.json, entry for entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import yaml
from typer.testing import CliRunner

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.cli import app
from landseg.config import load_config
from landseg.data.catalog import build_catalog
from landseg.io.raster import read_mask
from landseg.train.run import train

runner = CliRunner()
VAL = ["004", "005"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_dataset):
    """A tiny U-Net fitted for a few steps: its maps are neither constant nor perfect."""
    config = {
        "name": "tiny",
        "data": {
            "root": str(synthetic_dataset),
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "masks": "masks/scene_{id}.tif",
            "split": {"field": "id", "train": ["000", "001", "002", "003"], "val": VAL},
        },
        "model": {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": [8, 16, 32]},
        "train": {
            "crop_size": 64,
            "batch_size": 8,
            "epochs": 6,
            "steps_per_epoch": 6,
            "val_tile": 48,
            "seed": 3,
            "optimizer": {"name": "adam", "lr": 0.02},
            "scheduler": {"name": "none"},
        },
    }
    folder = tmp_path_factory.mktemp("evaluate")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    result = train(load_config(path), folder / "run", progress=False)
    return path, result.best_checkpoint


def confusion_of_written_maps(maps_dir, config_path) -> np.ndarray:
    """Counted here with numpy from the class COGs and the masks, not with landseg's ConfusionMatrix."""
    config = load_config(config_path)
    schema = get_schema(config.data.schema_)
    matrix = np.zeros((schema.num_classes, schema.num_classes), dtype=np.int64)
    for sample in build_catalog(config.data).split("val"):
        with rasterio.open(maps_dir / f"{sample.name}_classes.tif") as written:
            predicted = written.read(1).astype(np.int64)
        truth = read_mask(sample.mask, schema).astype(np.int64)
        labelled = truth != IGNORE_INDEX
        matrix += np.bincount(
            truth[labelled] * schema.num_classes + predicted[labelled], minlength=schema.num_classes**2
        ).reshape(schema.num_classes, schema.num_classes)
    return matrix


@pytest.mark.parametrize(
    "options",
    [[], ["--tta", "flips", "--overlap", "0.25"], ["--min-area", "30"]],
    ids=["defaults", "tta-flips-overlap-0.25", "min-area-30"],
)
def test_evaluate_scores_exactly_the_maps_predict_writes(tmp_path, trained, synthetic_dataset, options):
    config, checkpoint = trained
    images = [str(synthetic_dataset / "images" / f"scene_{i}.tif") for i in VAL]
    predicted = runner.invoke(
        app, ["predict", "-c", str(checkpoint), *images, "--out", str(tmp_path / "maps"), *options]
    )
    assert predicted.exit_code == 0, predicted.output
    evaluated = runner.invoke(
        app, ["evaluate", "-c", str(checkpoint), "--config", str(config), "--out", str(tmp_path / "eval"), *options]
    )
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())

    from_maps = confusion_of_written_maps(tmp_path / "maps", config)
    # rows: truth, columns: prediction, as metrics.json stores it
    np.testing.assert_array_equal(np.array(metrics["confusion_matrix"]), from_maps)
    assert 0.0 < metrics["miou"] < 1.0 and len(np.flatnonzero(from_maps.sum(axis=0))) > 1
    recorded = metrics["prediction_options"]
    record = json.loads((tmp_path / "maps" / f"scene_{VAL[0]}_prediction.json").read_text())
    for key in ("tile", "overlap", "blend", "batch_size", "min_area", "bands", "nodata"):
        assert recorded[key] == record["options"][key], key
    assert metrics["tta"] == record["tta"] and metrics["engines"] == record["engines"]
