"""End to end through the CLI: train a few steps, evaluate, predict, on tiny synthetic scenes."""

import json

import numpy as np
import pytest
import rasterio
import yaml
from typer.testing import CliRunner

from landseg.classes import get_schema
from landseg.cli import app
from landseg.io.raster import read_mask

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
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == 2 * 96 * 96  # every validation pixel is labelled in these scenes
    # The scores are those of the maps evaluate wrote, read back and compared with the masks.
    from_maps = np.zeros((5, 5), dtype=np.int64)
    for scene in ("scene_004", "scene_005"):
        with rasterio.open(out / "maps" / f"{scene}_classes.tif") as written:
            predicted = written.read(1).ravel()
        truth = read_mask(synthetic_dataset / "masks" / f"{scene}.tif", get_schema("synthetic")).ravel()
        np.add.at(from_maps, (truth, predicted), 1)
    np.testing.assert_array_equal(matrix, from_maps)
    hits = np.diag(from_maps)
    with np.errstate(invalid="ignore"):
        iou = hits / (from_maps.sum(0) + from_maps.sum(1) - hits)
    assert metrics["miou"] == pytest.approx(np.nanmean(iou))
    assert [metrics["per_class"][name]["iou"] for name in ("Field", "Forest")] == pytest.approx(iou[:2])
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


def test_every_command_lives_in_its_own_cli_module():
    """cli/main.py only registers commands: each one's function is in a module of its own under cli/, and no
    Typer option or app is declared outside cli/ (docs/ARCHITECTURE.md, "A command")."""
    from pathlib import Path

    import typer.main

    import landseg

    def modules(command) -> set[str]:
        if hasattr(command, "commands"):  # a sub-app (landseg prepare)
            return {m for sub in command.commands.values() for m in modules(sub)}
        return {command.callback.__module__}

    by_command = {name: modules(command) for name, command in typer.main.get_command(app).commands.items()}
    assert {"train", "demo", "datasets", "models", "export", "serve", "predict"} <= set(by_command)
    for name, found in by_command.items():
        assert all(m.startswith("landseg.cli.") and m != "landseg.cli.main" for m in found), (name, found)
    assert by_command["serve"] == {"landseg.cli.serve"} and by_command["export"] == {"landseg.cli.export"}
    package = Path(landseg.__file__).parent
    declaring = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.parent.name != "cli"
        and any(f"typer.{kind}(" in path.read_text() for kind in ("Typer", "Option", "Argument"))
    ]
    assert declaring == []
