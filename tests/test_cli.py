"""End to end through the CLI: train a few steps, evaluate, predict, on tiny synthetic scenes."""

import json

import numpy as np
import pytest
import rasterio
import yaml
from typer.testing import CliRunner

from landseg.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, synthetic_dataset):
    config = {
        "name": "tiny",
        "data": {
            "root": str(synthetic_dataset),
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "masks": "masks/scene_{id}.tif",
            "split": {"field": "id", "train": ["000", "001", "002", "003"], "val": ["004", "005"]},
        },
        "model": {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": [8, 16, 32]},
        "train": {"crop_size": 64, "batch_size": 4, "epochs": 2, "steps_per_epoch": 3, "val_tile": 64},
    }
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "evaluate", "predict", "demo", "datasets"):
        assert command in result.output


def test_datasets_lists_builtin_schemas():
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    for name in ("dubai", "deepglobe", "landcoverai", "alpine", "catalonia", "s2_korea"):
        assert name in result.output


def test_train_evaluate_predict(tmp_path, tiny_config, synthetic_dataset):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tiny_config), "--out", str(run), "--set", "train.seed=1"])
    assert result.exit_code == 0, result.output
    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    assert best.exists() and last.exists()
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch") and len(history) == 3  # header + 2 validated epochs
    assert (run / "training_curves.png").exists()
    assert any((run / "tensorboard").iterdir())

    again = runner.invoke(app, ["train", str(tiny_config), "--out", str(run)])
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = runner.invoke(app, ["train", str(tiny_config), "--out", str(run), "--resume", "--set", "train.epochs=3"])
    assert resumed.exit_code == 0, resumed.output
    assert len((run / "history.csv").read_text().splitlines()) == 4

    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["evaluate", "--checkpoint", str(best), "--config", str(tiny_config), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"Field", "Forest", "Water", "Road", "Building"}
    assert 0 <= metrics["miou"] <= 1
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == 2 * 96 * 96  # every validation pixel is labelled in these scenes
    assert (out / "confusion_matrix.png").exists() and (out / "report.html").exists()
    assert "mIoU" in result.output or "miou" in result.output.lower()

    predictions = tmp_path / "pred"
    scene = synthetic_dataset / "images" / "scene_005.tif"
    result = runner.invoke(app, ["predict", "--checkpoint", str(last), str(scene), "--out", str(predictions)])
    assert result.exit_code == 0, result.output
    with rasterio.open(predictions / "scene_005_classes.tif") as src, rasterio.open(scene) as ref:
        assert src.crs == ref.crs and src.transform == ref.transform
        assert src.colormap(1)[0][:3] == (0xE6, 0xC8, 0x4F)
        assert src.read(1).max() < 5
    assert (predictions / "scene_005_color.png").exists()
    areas = (predictions / "scene_005_areas.csv").read_text().splitlines()
    assert areas[0].startswith("class") and len(areas) == 6


def test_bad_inputs_give_one_line_errors(tmp_path, tiny_config, synthetic_dataset):
    result = runner.invoke(app, ["train", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "missing.yaml: cannot read config" in result.output
    assert "Traceback" not in result.output

    bad_ckpt = tmp_path / "broken.ckpt"
    bad_ckpt.write_bytes(b"not a checkpoint")
    result = runner.invoke(
        app, ["predict", "--checkpoint", str(bad_ckpt), str(synthetic_dataset / "images"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "broken.ckpt" in result.output

    result = runner.invoke(
        app, ["train", str(tiny_config), "--set", "train.batch_sise=2", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "did you mean 'batch_size'" in result.output
