"""``run_predict`` and the typer commands: many inputs, resume, overwrite, ensembles, failures."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import typer
from affine import Affine
from typer.testing import CliRunner

from landseg.checkpoint import CARD_KEY, STATE_PREFIX, ModelCard
from landseg.classes import get_schema
from landseg.cli.export import export_command
from landseg.cli.predict import predict_command
from landseg.errors import ConfigError, DataError
from landseg.models import ModelSpec, build_model
from landseg.normalization import Normalization
from landseg.predict.engine import PredictOptions
from landseg.predict.inputs import find_inputs
from landseg.predict.run import run_predict

SCHEMA = get_schema("synthetic")


def write_checkpoint(path: Path, seed: int, widths=(4, 8)) -> Path:
    torch.manual_seed(seed)
    spec = ModelSpec(arch="classic_unet", num_classes=SCHEMA.num_classes, encoder=None, widths=list(widths))
    network = build_model(spec)
    card = ModelCard(
        model=spec.to_dict(),
        schema=SCHEMA.to_dict(),
        normalization=Normalization.symmetric(3).to_dict(),
        bands=[1, 2, 3],
        band_names=["red", "green", "blue"],
        tile_size=32,
    )
    state = {STATE_PREFIX + k: v for k, v in network.state_dict().items()}
    torch.save({"hyper_parameters": {CARD_KEY: card.to_dict()}, "state_dict": state}, path)
    return path


def write_scene(path: Path, seed: int, size=(40, 52), bands: int = 3) -> Path:
    data = np.random.default_rng(seed).integers(1, 255, size=(bands, *size), dtype=np.uint8)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size[1],
        height=size[0],
        count=bands,
        dtype="uint8",
        crs="EPSG:32631",
        transform=Affine(5.0, 0, 400_000.0, 0, -5.0, 4_000_000.0),
    ) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    return [write_checkpoint(folder / "a.ckpt", 0), write_checkpoint(folder / "b.ckpt", 1, widths=(6, 12))]


@pytest.fixture
def scenes(tmp_path) -> Path:
    folder = tmp_path / "scenes"
    (folder / "more").mkdir(parents=True)
    write_scene(folder / "one.tif", 1)
    write_scene(folder / "more" / "two.tif", 2)
    return folder


def modification_times(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_folder_run_then_rerun_skips_and_overwrite_redoes(scenes, checkpoints, tmp_path):
    out = scenes / "predicted"  # inside the input folder on purpose: its files are never taken as inputs
    options = PredictOptions(preview=False)
    first = run_predict([scenes], checkpoints[:1], out, options)
    assert sorted(r.source.name for r in first.done) == ["one.tif", "two.tif"] and not first.skipped
    assert (out / "one_classes.tif").exists() and (out / "two_prediction.json").exists()
    before = modification_times(out)

    again = run_predict([scenes], checkpoints[:1], out, options)
    assert not again.done and sorted(p.name for p in again.skipped) == ["one.tif", "two.tif"]
    assert modification_times(out) == before

    (out / "two_areas.csv").unlink()  # an incomplete scene is done again, the finished one is not
    partial = run_predict([scenes], checkpoints[:1], out, options)
    assert [r.source.name for r in partial.done] == ["two.tif"] and [p.name for p in partial.skipped] == ["one.tif"]
    assert (out / "one_classes.tif").stat().st_mtime_ns == before["one_classes.tif"]

    redone = run_predict([scenes], checkpoints[:1], out, options, overwrite=True)
    assert len(redone.done) == 2
    assert (out / "one_classes.tif").stat().st_mtime_ns != before["one_classes.tif"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_one_bad_input_among_many_is_reported_and_the_rest_done(scenes, checkpoints, tmp_path):
    write_scene(scenes / "gray.tif", 3, bands=1)
    summary = run_predict([scenes], checkpoints[:1], tmp_path / "out", PredictOptions(preview=False, areas=False))
    assert sorted(r.source.name for r in summary.done) == ["one.tif", "two.tif"]
    assert len(summary.failed) == 1 and "gray.tif" in str(summary.failed[0]) and "has 1 band" in str(summary.failed[0])
    with pytest.raises(DataError, match="has 1 band"):
        run_predict([scenes / "gray.tif"], checkpoints[:1], tmp_path / "out2", PredictOptions())


def test_inputs_from_globs_and_files_without_repeats(scenes, tmp_path):
    found = find_inputs([str(scenes / "*.tif"), scenes / "one.tif", str(scenes / "**" / "two.tif")])
    assert [p.name for p in found] == ["one.tif", "two.tif"]
    with pytest.raises(DataError, match="no file matches"):
        find_inputs([str(tmp_path / "nothing*.tif")])
    write_scene(scenes / "two.tif", 4)
    with pytest.raises(ConfigError, match="same outputs"):
        find_inputs([scenes])


def test_typer_command_with_an_ensemble_and_extras(scenes, checkpoints, tmp_path):
    app = typer.Typer()
    app.command("predict")(predict_command)
    app.command("export")(export_command)
    out = tmp_path / "out"
    args = [
        "predict",
        str(scenes / "one.tif"),
        "-c",
        str(checkpoints[0]),
        "-c",
        str(checkpoints[1]),
        "--out",
        str(out),
        "--probabilities",
        "--min-area",
        "20",
        "--polygons",
        "geojson",
        "--overlap",
        "0.25",
        "--tta",
        "flips",
        "--precision",
        "fp32",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "one_prediction.json").read_text())
    assert [Path(m).name for m in record["models"]] == ["a.ckpt", "b.ckpt"]
    assert record["options"]["min_area"] == 20 and record["options"]["overlap"] == 0.25
    expected = {
        "one_classes.tif",
        "one_probabilities.tif",
        "one_color.png",
        "one_areas.csv",
        "one_areas.json",
        "one_polygons.geojson",
        "one_prediction.json",
    }
    assert set(os.listdir(out)) == expected
    with rasterio.open(out / "one_probabilities.tif") as src:
        assert src.count == SCHEMA.num_classes


def test_bad_options_fail_before_any_model_is_loaded(scenes, tmp_path):
    for options in (
        PredictOptions(overlap=1.0),
        PredictOptions(blend="cosine"),
        PredictOptions(polygons="shp"),
        PredictOptions(min_area=-1),
    ):
        with pytest.raises(ConfigError):
            run_predict([scenes], [tmp_path / "missing.ckpt"], tmp_path / "out", options)


@pytest.mark.parametrize(
    ("flag", "value"), [("--blend", "cosine"), ("--tta", "none"), ("--engine", "tensorrt"), ("--precision", "fp16")]
)
def test_a_value_outside_a_flags_choices_is_refused_by_the_command_line(scenes, tmp_path, flag, value):
    app = typer.Typer()
    app.command("predict")(predict_command)
    out = tmp_path / "out"
    args = ["predict", str(scenes / "one.tif"), "-c", str(tmp_path / "never_loaded.ckpt"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, flag, value])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output and repr(value) in result.output
    assert not out.exists()
