"""Several dates into one map: clouds painted onto copies of a real Sentinel-2 chip, masked date by date,
and the clear pixels combined."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from tests.helpers import write_geotiff
from tests.zoo.sentinel2_products import (
    STACK_CRS,
    STACK_GRID,
    sentinel2_like_pixels,
    write_sentinel2_like_stack,
    write_stac_item,
    write_synthetic_chip,
)
from typer.testing import CliRunner

from landseg.cli import app
from landseg.data.synthetic import paint_cloud
from landseg.errors import ConfigError, DataError
from landseg.predict.composite import combine_window, run_composite
from landseg.predict.engine import predict_scene
from landseg.predict.ensemble import load_ensemble
from landseg.predict.options import PredictOptions

FLOODS = "sen1floods11/Spain_7370579_S2Hand.tif"


@pytest.fixture(scope="module")
def cloudy_dates(shared_datasets, tmp_path_factory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("dates")
    with rasterio.open(shared_datasets / "samples" / FLOODS) as chip:
        image, profile = chip.read(), chip.profile
    paths = []
    for i, centre in enumerate([(80, 90), (300, 330), (120, 380)]):
        path = folder / f"date{i}.tif"
        with rasterio.open(path, "w", **profile) as target:
            target.write(paint_cloud(image, centre, 45, seed=i))
        paths.append(path)
    return shared_datasets / "samples" / FLOODS, paths


@pytest.mark.shared_data
@pytest.mark.slow
def test_the_mode_composite_of_cloudy_dates_is_the_clear_chips_map(cloudy_dates, tmp_path):
    clear, dates = cloudy_dates
    ensemble = load_ensemble(["zoo:dynamic-world"])
    reference = predict_scene(clear, ensemble, tmp_path / "clear", PredictOptions())
    with rasterio.open(reference.paths["classes"]) as classes:
        clear_map = classes.read(1)
    result = run_composite(dates, ["zoo:dynamic-world"], tmp_path / "composite", "mode")
    with rasterio.open(result.paths["classes"]) as classes, rasterio.open(result.paths["count"]) as count:
        composite, clear_count = classes.read(1), count.read(1)
    both = (composite != 255) & (clear_map != 255)
    agreement = float((composite[both] == clear_map[both]).mean())
    print(
        f"mode composite: {agreement:.4f} of {both.mean():.4f} of the pixels; all pixels "
        f"{(composite == clear_map).mean():.4f}; seen clear {result.clear_fraction:.4f}"
    )
    assert agreement >= 0.99
    # The chip's own shadows are masked on every date; painted clouds are filled in from the other dates.
    assert (composite != 255).mean() >= (clear_map != 255).mean() - 0.01
    assert np.array_equal(composite == 255, clear_count == 0)
    assert set(np.unique(clear_count).tolist()) <= {0, 1, 2, 3} and (clear_count == 2).any()
    for date in dates:
        with rasterio.open(tmp_path / "composite" / "dates" / f"{date.stem}_classes.tif") as classes:
            single = classes.read(1)
        assert (single == clear_map).mean() < 0.99
        date_record = json.loads((tmp_path / "composite" / "dates" / f"{date.stem}_prediction.json").read_text())
        assert date_record["cloud_mask"]["cloud_fraction"] > 0.01
    record = json.loads(result.paths["record"].read_text())["composite"]
    assert record["method"] == "mode" and len(record["dates"]) == 3


def test_mode_and_mean_probability_combine_only_clear_observations():
    steps = 254
    # Three dates, two classes, one row of four pixels; 255 marks a date's cloud. At pixel 1 two dates lean
    # to class 1 while the third is sure of class 0: the mode takes the votes, the mean the probabilities.
    p = np.array(
        [
            [[254, 114, 255, 100], [0, 140, 255, 154]],
            [[254, 114, 255, 100], [0, 140, 255, 154]],
            [[0, 254, 254, 255], [254, 0, 0, 255]],
        ],
        dtype=np.uint8,
    )[:, :, None, :]
    classes, confidence, count = combine_window(p, "mode")
    assert classes[0].tolist() == [0, 1, 0, 1]
    assert count[0].tolist() == [3, 3, 1, 2]
    assert confidence[0].tolist() == [round(2 / 3 * steps)] * 2 + [steps, steps]
    classes, confidence, _ = combine_window(p, "mean-probability")
    assert classes[0].tolist() == [0, 0, 0, 1]
    assert confidence[0, 1] == round((114 + 114 + 254) / 3)
    cloudy = np.full((2, 2, 1, 3), 255, dtype=np.uint8)
    classes, confidence, count = combine_window(cloudy, "mode")
    assert (classes == 255).all() and (confidence == 255).all() and (count == 0).all()


def test_dates_that_cannot_be_combined_are_one_line_errors(tmp_path):
    chip = write_synthetic_chip(tmp_path / "chip.tif", size=60, seed=2)
    l1c = write_stac_item(chip, tmp_path / "l1c")
    l2a = write_stac_item(chip, tmp_path / "l2a", level="L2A")
    with pytest.raises(ConfigError, match=r"mix product levels: .* is L1C, .* is L2A"):
        run_composite([l1c, l2a], ["zoo:dynamic-world"], tmp_path / "out", "mode")
    pixels, _ = sentinel2_like_pixels(60, seed=2)
    here = write_sentinel2_like_stack(tmp_path / "here.tif", pixels)
    far_grid = Affine(10.0, 0, STACK_GRID.c + 50_000, 0, -10.0, STACK_GRID.f)
    there = write_geotiff(tmp_path / "there.tif", pixels, far_grid, STACK_CRS, descriptions=None)
    with pytest.raises(DataError, match=r"there.tif: does not overlap the composite's grid"):
        run_composite([here, there], ["zoo:dynamic-world"], tmp_path / "out", "mode")
    with pytest.raises(ConfigError, match="several dates"):
        run_composite([here], ["zoo:dynamic-world"], tmp_path / "out", "mode")


def test_the_command_writes_a_composite_of_two_dates(tmp_path):
    first, _ = sentinel2_like_pixels(96, seed=4)
    dates = [
        write_sentinel2_like_stack(tmp_path / "june.tif", first),
        write_sentinel2_like_stack(tmp_path / "july.tif", (first * 1.05).astype(np.uint16)),
    ]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["predict", "--model", "dynamic-world", "--composite", "mean-probability", *map(str, dates), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "mean-probability composite of 2 dates" in result.output
    for name in (
        "composite_classes.tif",
        "composite_confidence.tif",
        "composite_clear_count.tif",
        "composite_color.png",
    ):
        assert (out / name).is_file(), name
    with rasterio.open(out / "composite_clear_count.tif") as count, rasterio.open(out / "composite_classes.tif") as cls:
        assert count.crs == cls.crs and count.transform == STACK_GRID
        assert np.array_equal(cls.read(1) == 255, count.read(1) == 0)
