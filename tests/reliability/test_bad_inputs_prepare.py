"""Bad inputs to ``landseg prepare all``: an unusable scene is quarantined and the others are prepared
(every stage runs), each quarantined file gets a line naming it, and the exit code is 1. A scene that
loses every chip to the filters is reported, never fatal; a run that keeps no chip at all is an error."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from reliability_helpers import assert_one_line_error, truncate, visible_files, write_geotiff, write_yaml
from typer.testing import CliRunner

from landseg.cli import app
from landseg.data.synthetic import generate_scene

runner = CliRunner()
UTM = "EPSG:32632"
ORIGIN = (500000.0, 5200000.0)
PIXEL = 10.0


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Two 64 x 64 px scenes at 10 m in UTM 32N with labels on their grid (synthetic schema codes)."""
    folder = tmp_path_factory.mktemp("raw")
    for i in range(2):
        scene = generate_scene(64, seed=20 + i)
        transform = from_origin(ORIGIN[0] + i * 640, ORIGIN[1], PIXEL, PIXEL)
        write_geotiff(folder / f"scene{i}.tif", scene.image, transform=transform, crs=UTM, nodata=0)
        write_geotiff(folder / f"label{i}.tif", scene.labels, transform=transform, crs=UTM, nodata=255)
    return folder


def prepare(tmp_path, scenes, **sections):
    config = {
        "out": str(tmp_path / "prepared"),
        "schema": "synthetic",
        "input": {"scenes": [{"image": str(i), "label": str(m)} for i, m in scenes]},
        "tiling": {"size": 32},
        "split": {"ratios": {"train": 0.5, "val": 0.5}},
    }
    config.update(sections)
    path = write_yaml(tmp_path / "prepare.yaml", config)
    return runner.invoke(app, ["prepare", "all", str(path)])


def good(raw, i=0):
    return raw / f"scene{i}.tif", raw / f"label{i}.tif"


def zero_byte_image(raw, folder):
    (folder / "bad.tif").write_bytes(b"")
    return folder / "bad.tif", raw / "label1.tif"


def text_named_tif(raw, folder):
    (folder / "bad.tif").write_text("GeoTIFF coming soon\n")
    return folder / "bad.tif", raw / "label1.tif"


def truncated_label(raw, folder):
    return raw / "scene1.tif", truncate(Path(shutil.copy(raw / "label1.tif", folder / "bad.tif")), 0.3)


def label_elsewhere(raw, folder):
    """A label 100 km east of its image: readable, georeferenced, and useless."""
    with rasterio.open(raw / "label1.tif") as src:
        labels = src.read(1)
    write_geotiff(
        folder / "bad.tif",
        labels,
        transform=from_origin(ORIGIN[0] + 100_000, ORIGIN[1], PIXEL, PIXEL),
        crs=UTM,
        nodata=255,
    )
    return raw / "scene1.tif", folder / "bad.tif"


def two_band_label(raw, folder):
    with rasterio.open(raw / "label1.tif") as src:
        labels, transform = src.read(1), src.transform
    write_geotiff(
        folder / "bad.tif",
        np.stack([labels, labels]),
        transform=from_origin(transform.c, transform.f, PIXEL / 2, PIXEL / 2),
        crs=UTM,
        nodata=255,
    )
    return raw / "scene1.tif", folder / "bad.tif"


UNUSABLE_SCENES = {
    "zero_byte_image": (zero_byte_image, "file is empty (0 bytes)"),
    "text_file_named_tif": (text_named_tif, "not a readable raster image"),
    "truncated_label": (truncated_label, "cannot read window"),  # the header survives: per chip
    "label_does_not_overlap_image": (label_elsewhere, "does not overlap scene1.tif"),
    "label_with_two_bands": (two_band_label, "label raster has 2 bands"),
}


@pytest.mark.parametrize("case", UNUSABLE_SCENES)
def test_unusable_scene_is_quarantined_and_the_others_are_prepared(tmp_path, raw, case):
    make, problem = UNUSABLE_SCENES[case]
    bad_image, bad_label = make(raw, tmp_path)
    result = prepare(tmp_path, [good(raw), (bad_image, bad_label)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("quarantined ")]
    assert lines and all("bad.tif" in line and problem in line for line in lines), result.output
    out = tmp_path / "prepared"
    report = json.loads((out / "filters.json").read_text())
    assert report["quarantined"]["count"] == len(lines) and report["kept"] == 4  # scene0's four chips
    assert (out / "stats.json").exists() and (out / "splits" / "train.txt").exists()  # every stage ran


def test_label_in_another_crs_is_reprojected_onto_the_image_grid(tmp_path, raw):
    """Not an error: the label is warped onto the image grid (by majority of the covered label pixels)."""
    with rasterio.open(raw / "label0.tif") as src:
        labels, transform = src.read(1), src.transform
    bounds = transform_bounds(UTM, "EPSG:4326", *window_bounds(Window(0, 0, 64, 64), transform))
    step = (bounds[2] - bounds[0]) / 128
    geographic = from_origin(bounds[0], bounds[3], step, (bounds[3] - bounds[1]) / 128)
    warped = np.full((128, 128), 255, np.uint8)
    reproject(
        labels,
        warped,
        src_transform=transform,
        src_crs=UTM,
        dst_transform=geographic,
        dst_crs="EPSG:4326",
        resampling=Resampling.nearest,
        src_nodata=255,
        dst_nodata=255,
    )
    write_geotiff(tmp_path / "label_wgs84.tif", warped, transform=geographic, crs="EPSG:4326", nodata=255)
    result = prepare(tmp_path, [good(raw, 1), (raw / "scene0.tif", tmp_path / "label_wgs84.tif")])
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "prepared" / "aligned" / "scene0_label.tif") as aligned:
        assert aligned.crs == UTM and aligned.transform == transform
        back = aligned.read(1)
    labelled = back != 255
    assert labelled.mean() > 0.95 and (back[labelled] == labels[labelled]).mean() > 0.9


def test_scene_that_loses_every_chip_is_reported_not_fatal(tmp_path, raw):
    """An all-black image with a full label (seed 000 found 11 of them): every chip is dropped as blank."""
    with rasterio.open(raw / "scene1.tif") as src:
        transform = src.transform
    write_geotiff(tmp_path / "black.tif", np.zeros((3, 64, 64), np.uint8), transform=transform, crs=UTM)
    result = prepare(tmp_path, [good(raw), (tmp_path / "black.tif", raw / "label1.tif")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("no chips kept")]
    assert len(lines) == 1 and "black.tif" in lines[0] and "blank_image: 4" in lines[0]
    report = json.loads((tmp_path / "prepared" / "filters.json").read_text())
    assert report["scenes_without_chips"] == [
        {"scene": "black", "image": str(tmp_path / "black.tif"), "chips": {"blank_image": 4}}
    ]
    assert report["kept"] == 4


def test_no_chip_kept_at_all_is_one_line(tmp_path, raw):
    result = prepare(
        tmp_path, [good(raw)], filters={"min_valid_fraction": 1.0, "max_class_fraction": {"max_fraction": 0.01}}
    )
    assert_one_line_error(result, "filters.json", "no chips were kept")
    assert not (tmp_path / "prepared" / "splits").exists()


def test_label_codes_outside_the_schema_stop_the_run(tmp_path, raw):
    """A schema problem, not a bad file: it would hit every scene, so the run stops at once."""
    with rasterio.open(raw / "label1.tif") as src:
        labels, transform = src.read(1), src.transform
    labels[:4, :5] = 42
    write_geotiff(tmp_path / "label.tif", labels, transform=transform, crs=UTM, nodata=255)
    result = prepare(tmp_path, [(raw / "scene1.tif", tmp_path / "label.tif")])
    assert_one_line_error(result, "label.tif", "42 (20 px)")


def test_misspelled_key_suggests_the_right_one(tmp_path, raw):
    result = prepare(tmp_path, [good(raw)], tiling={"size": 32, "overlapp": 0.5})
    assert_one_line_error(result, "prepare.yaml", "did you mean 'overlap'")
    assert visible_files(tmp_path / "prepared") == []


def test_two_scenes_of_one_name_are_refused(tmp_path, raw):
    (tmp_path / "copy").mkdir()
    shutil.copy(raw / "scene1.tif", tmp_path / "copy" / "scene0.tif")
    result = prepare(tmp_path, [good(raw), (tmp_path / "copy" / "scene0.tif", raw / "label1.tif")])
    assert_one_line_error(result, "scene names repeat", str(raw / "scene0.tif"), str(tmp_path / "copy" / "scene0.tif"))
    assert visible_files(tmp_path / "prepared") == []
