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


def test_evaluate_measures_the_calibration_of_the_probabilities_it_writes(tmp_path, trained):
    """ECE, Brier score and the reliability bins in metrics.json, recomputed here with numpy from the
    probability COGs evaluate wrote and the masks; the reliability diagram is in the report."""
    config, checkpoint = trained
    evaluated = runner.invoke(app, ["evaluate", "-c", str(checkpoint), "--config", str(config), "--out", str(tmp_path)])
    assert evaluated.exit_code == 0, evaluated.output
    from landseg.checkpoint import load_checkpoint

    calibration = json.loads((tmp_path / "metrics.json").read_text())["calibration"]
    schema = get_schema(load_config(config).data.schema_)
    confidence, correct, squared = [], [], []
    for sample in build_catalog(load_config(config).data).split("val"):
        with rasterio.open(tmp_path / "maps" / f"{sample.name}_probabilities.tif") as written:
            probabilities = written.read().astype(np.float64) / 254
        with rasterio.open(tmp_path / "maps" / f"{sample.name}_classes.tif") as written:
            shown = written.read(1).astype(np.int64)
        truth = read_mask(sample.mask, schema).astype(np.int64)
        rows, cols = np.nonzero(truth != IGNORE_INDEX)
        confidence.append(probabilities[shown[rows, cols], rows, cols])
        correct.append(shown[rows, cols] == truth[rows, cols])
        one_hot = np.eye(schema.num_classes)[truth[rows, cols]].T
        squared.append(((probabilities[:, rows, cols] - one_hot) ** 2).sum(axis=0))
    confidence, correct = np.concatenate(confidence), np.concatenate(correct)
    bins = np.minimum((confidence * 15).astype(int), 14)
    ece = sum(abs(correct[bins == b].sum() - confidence[bins == b].sum()) for b in range(15)) / confidence.size
    assert calibration["pixels"] == confidence.size
    assert calibration["ece"] == pytest.approx(ece, abs=1e-9) and 0 < calibration["ece"] < 1
    assert calibration["brier"] == pytest.approx(np.concatenate(squared).mean(), abs=1e-9)
    assert [row["pixels"] for row in calibration["reliability"]] == np.bincount(bins, minlength=15).tolist()
    assert set(calibration["classwise_ece"]) == set(schema.names)
    card = load_checkpoint(checkpoint).card
    assert calibration["temperatures"] == [card.temperature] and card.temperature != 1.0
    assert (tmp_path / "reliability.png").stat().st_size > 0
    assert "ECE" in (tmp_path / "report.html").read_text()


def test_training_stores_a_fitted_temperature_that_lowers_the_validation_loss(trained):
    """train.calibrate (the default): best.ckpt's card carries the temperature fitted on the validation
    images, with the negative log-likelihood before and after on those pixels (after never higher)."""
    from landseg.checkpoint import load_checkpoint

    _, checkpoint = trained
    calibration = load_checkpoint(checkpoint).card.calibration
    assert calibration is not None and calibration["method"] == "temperature scaling"
    assert 0.05 <= calibration["temperature"] <= 20 and calibration["fitted_on"]["pixels"] > 1000
    assert calibration["nll"]["after"] <= calibration["nll"]["before"]
    assert set(calibration["ece"]) == {"before", "after"}


def test_calibrate_refits_a_stripped_card_and_evaluate_reports_before_and_after(tmp_path, trained):
    """`landseg calibrate` on a copy whose card lost its temperature fits the one training fitted (same
    validation images, same core); evaluating the calibrated model reports, as ``before``, exactly the
    calibration the uncalibrated copy's written maps have."""
    import torch

    from landseg.checkpoint import CARD_KEY, load_checkpoint, read_checkpoint

    config, checkpoint = trained
    raw = read_checkpoint(checkpoint)
    raw["hyper_parameters"][CARD_KEY]["calibration"] = None
    stripped = tmp_path / "stripped.ckpt"
    torch.save(raw, stripped)
    scored = {}
    for name, model in (("calibrated", checkpoint), ("stripped", stripped)):
        out = tmp_path / name
        # fp32 for both: the copy has no int8 model beside it, which --precision auto could run for the original.
        arguments = ["evaluate", "-c", str(model), "--config", str(config), "--out", str(out), "--precision", "fp32"]
        result = runner.invoke(app, arguments)
        assert result.exit_code == 0, result.output
        scored[name] = json.loads((out / "metrics.json").read_text())["calibration"]
    assert scored["stripped"]["before"] is None and scored["stripped"]["temperatures"] == [1.0]
    before = scored["calibrated"]["before"]
    for key in ("pixels", "ece", "brier", "mean_classwise_ece"):
        assert before[key] == pytest.approx(scored["stripped"][key], rel=1e-9, abs=1e-12), key
    assert before["ece"] != pytest.approx(scored["calibrated"]["ece"], abs=1e-6)

    fitted = runner.invoke(app, ["calibrate", str(stripped), "--config", str(config), "--split", "val"])
    assert fitted.exit_code == 0, fitted.output
    card = load_checkpoint(stripped).card
    assert card.calibration["fitted_on"] == {**load_checkpoint(checkpoint).card.calibration["fitted_on"]}
    assert card.temperature == pytest.approx(load_checkpoint(checkpoint).card.temperature, rel=1e-6)
    refused = runner.invoke(app, ["calibrate", str(stripped), "--config", str(config), "--split", "test"])
    assert refused.exit_code != 0 and "no 'test' images" in refused.output
