"""Bad training inputs: each gives one line naming the file and the problem, exit code 1, no traceback,
and no run folder (training reads and checks every pair before it writes anything)."""

import csv
import json
import shutil

import numpy as np
import pytest
import rasterio
import yaml
from PIL import Image
from rasterio.transform import from_origin
from reliability_helpers import (
    assert_one_line_error,
    copy_dataset,
    experiment,
    truncate,
    write_geotiff,
    write_yaml,
)
from tests.helpers import SCHEMA
from typer.testing import CliRunner

from landseg.checkpoint import load_checkpoint
from landseg.classes import IGNORE_INDEX
from landseg.cli import app
from landseg.config import parse_config
from landseg.data.catalog import build_catalog, load_pair
from landseg.errors import DataError

runner = CliRunner()


def train(config: dict, tmp_path, *extra: str):
    path = write_yaml(tmp_path / "experiment.yaml", config)
    return runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), *extra])


def rewrite_band(path, change):
    """Apply ``change`` to the first band of a GeoTIFF in place."""
    with rasterio.open(path, "r+") as dataset:
        band = dataset.read(1)
        change(band)
        dataset.write(band, 1)


@pytest.fixture
def scenes(tmp_path, clean_scenes):
    return copy_dataset(clean_scenes, tmp_path / "scenes")


def test_zero_byte_image(tmp_path, scenes):
    (scenes / "images" / "scene_001.tif").write_bytes(b"")
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, "scene_001.tif", "file is empty (0 bytes)")
    assert not (tmp_path / "run").exists()


def test_truncated_tiff_image(tmp_path, scenes):
    truncate(scenes / "images" / "scene_000.tif")
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, "scene_000.tif", "not a readable raster image")
    assert not (tmp_path / "run").exists()


def test_text_file_named_tif(tmp_path, scenes):
    (scenes / "images" / "scene_002.tif").write_text("id,class\n1,forest\n")
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, "scene_002.tif", "not a readable raster image")


def photo_pairs(root, count=2, size=48):
    """JPEG images with paletted-free RGB PNG colour masks, the Dubai layout (no georeferencing)."""
    rng = np.random.default_rng(0)
    colours = np.array([[0x3C, 0x10, 0x98], [0x84, 0x29, 0xF6], [0x6E, 0xC1, 0xE4]], dtype=np.uint8)
    for i in range(count):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"p{i}.jpg")
        Image.fromarray(colours[rng.integers(0, 3, (size, size))]).save(root / "masks" / f"p{i}.png")
    return {
        "data": {
            "root": str(root),
            "schema": "dubai",
            "images": "images/{name}.jpg",
            "masks": "masks/{name}.png",
            "split": {"ratios": {"train": 1.0}},
        },
        "model": {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": [8, 16]},
        "train": {"crop_size": 32, "batch_size": 1, "epochs": 1, "steps_per_epoch": 1},
    }


def test_truncated_jpeg_image(tmp_path):
    config = photo_pairs(tmp_path / "photos")
    truncate(tmp_path / "photos" / "images" / "p1.jpg", 0.4)
    result = train(config, tmp_path)
    line = assert_one_line_error(result, "p1.jpg", "truncated or corrupt")
    assert "See previous exception" not in line  # GDAL's own reason, not rasterio's pointer to it


def test_truncated_png_mask(tmp_path):
    config = photo_pairs(tmp_path / "photos")
    truncate(tmp_path / "photos" / "masks" / "p0.png", 0.6)
    result = train(config, tmp_path)
    assert_one_line_error(result, "p0.png", "PNG is truncated or corrupt")


def test_unknown_mask_colours_are_listed_with_pixel_counts(tmp_path):
    """Dubai's classes.json lists colours its masks do not use: the error names the colours found."""
    config = photo_pairs(tmp_path / "photos")
    mask = np.array(Image.open(tmp_path / "photos" / "masks" / "p1.png"))
    mask[:3, :4] = (0xE2, 0xA9, 0x2A)  # one off from Water's #E2A929
    Image.fromarray(mask).save(tmp_path / "photos" / "masks" / "p1.png")
    result = train(config, tmp_path)
    assert_one_line_error(result, "p1.png", "#E2A92A (12 px)", "data.unknown_labels: ignore")


def test_out_of_range_codes_are_listed_with_pixel_counts(tmp_path, scenes):
    rewrite_band(scenes / "masks" / "scene_001.tif", lambda band: band.__setitem__((slice(0, 2), slice(0, 3)), 17))
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, "scene_001.tif", "codes that schema 'synthetic' does not define: 17 (6 px)")


def test_size_mismatch_beyond_tolerance(tmp_path, scenes):
    with rasterio.open(scenes / "masks" / "scene_000.tif") as src:
        labels, transform = src.read(1), src.transform
    write_geotiff(scenes / "masks" / "scene_000.tif", labels[:60, :59], transform=transform, nodata=255)
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(
        result, "masks/scene_000.tif", "mask is 59x60 but its image scene_000.tif is 64x64", "tolerance 2 px"
    )


def test_missing_masks_are_listed(tmp_path, scenes):
    (scenes / "masks" / "scene_001.tif").unlink()
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, str(scenes), "1 images have no mask", "images/scene_001.tif")


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    result = train(experiment(tmp_path / "empty"), tmp_path)
    assert_one_line_error(result, str(tmp_path / "empty"), "no images match 'images/scene_{id}.tif'")


def test_all_nodata_training_images(tmp_path, scenes):
    for name in ("scene_000", "scene_001"):
        with rasterio.open(scenes / "images" / f"{name}.tif", "r+") as dataset:
            dataset.write(np.zeros((3, 64, 64), np.uint8))  # 0 is the scenes' no-data value
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, str(scenes), "no training image has a single labelled pixel")


def test_mask_in_another_crs(tmp_path, scenes):
    with rasterio.open(scenes / "masks" / "scene_001.tif") as src:
        labels = src.read(1)
    write_geotiff(
        scenes / "masks" / "scene_001.tif",
        labels,
        transform=from_origin(9.0, 46.95, 5e-6, 5e-6),
        crs="EPSG:4326",
        nodata=255,
    )
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, "masks/scene_001.tif", "mask is in EPSG:4326", "landseg prepare align")


def test_mask_that_does_not_overlap_its_image(tmp_path, scenes):
    with rasterio.open(scenes / "masks" / "scene_000.tif") as src:
        labels = src.read(1)
    write_geotiff(
        scenes / "masks" / "scene_000.tif", labels, transform=from_origin(600000, 5300000, 0.5, 0.5), nodata=255
    )
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, "masks/scene_000.tif", "mask does not overlap its image scene_000.tif")


def test_mask_shifted_by_pixels(tmp_path, scenes):
    with rasterio.open(scenes / "masks" / "scene_000.tif") as src:
        labels, transform = src.read(1), src.transform
    shifted = from_origin(transform.c + 5 * 0.5, transform.f, 0.5, 0.5)
    write_geotiff(scenes / "masks" / "scene_000.tif", labels, transform=shifted, nodata=255)
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, "masks/scene_000.tif", "shifted +5.0, +0.0 pixels")


def test_half_pixel_offset_is_accepted(tmp_path, scenes):
    """Pixel-is-point and pixel-is-area GeoTIFFs of one grid differ by half a pixel: not an error, and the
    mask is taken pixel for pixel, neither shifted nor resampled."""
    with rasterio.open(scenes / "masks" / "scene_000.tif") as src:
        labels, transform = src.read(1), src.transform
    write_geotiff(
        scenes / "masks" / "scene_000.tif",
        labels,
        nodata=255,
        transform=from_origin(transform.c - 0.25, transform.f + 0.25, 0.5, 0.5),
    )
    config = experiment(scenes)
    result = train(config, tmp_path)
    assert result.exit_code == 0, result.output
    first = build_catalog(parse_config(config).data).split("train")[0]
    assert first.mask.name == "scene_000.tif"
    np.testing.assert_array_equal(load_pair(first, SCHEMA)[1], SCHEMA.decode(labels))


def test_bands_beyond_the_image(tmp_path, scenes):
    config = experiment(scenes)
    config["data"]["bands"] = [1, 2, 5]
    result = train(config, tmp_path)
    assert_one_line_error(result, "scene_000.tif", "has 3 bands; bands [5] were asked for")


def test_nan_and_inf_in_float_images_are_no_data(tmp_path, scenes):
    """Non-finite pixels are no-data: their labels are ignored and the network sees 0 there, so the
    loss stays finite and training completes."""
    for name in ("scene_000", "scene_001", "scene_002"):
        path = scenes / "images" / f"{name}.tif"
        with rasterio.open(path) as src:
            data, transform = src.read().astype(np.float32), src.transform
        data[:, :24, :24] = np.nan
        data[1, 40, 40] = np.inf
        write_geotiff(path, data, transform=transform)
    config = experiment(scenes, data={"normalization": {"mode": "stats"}})
    result = train(config, tmp_path)
    assert result.exit_code == 0, result.output
    with open(tmp_path / "run" / "history.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert np.isfinite(float(row["train_loss"])) and np.isfinite(float(row["val_loss"]))
    # The training images' statistics and class counts are those of their finite pixels alone.
    finite, labelled = [], np.zeros(SCHEMA.num_classes, dtype=np.int64)
    for name in config["data"]["split"]["train"]:
        with rasterio.open(scenes / "images" / f"scene_{name}.tif") as src:
            data = src.read()
        valid = np.isfinite(data).all(axis=0)
        finite.append(data[:, valid])
        with rasterio.open(scenes / "masks" / f"scene_{name}.tif") as src:
            labels = SCHEMA.decode(src.read(1))
        labelled += np.bincount(labels[valid & (labels != IGNORE_INDEX)], minlength=SCHEMA.num_classes)
    card = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt").card
    expected_mean = np.concatenate(finite, axis=1).astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(card.normalization["mean"], expected_mean, rtol=1e-5)
    counts = json.loads((tmp_path / "run" / "class_statistics.json").read_text())
    assert [counts[name]["pixels"] for name in SCHEMA.names] == labelled.tolist()


@pytest.mark.parametrize(
    "typo, hint",
    [
        ("train.batch_sise=2", "did you mean 'batch_size'"),
        ("train.optimizer.weight_decy=0.1", "did you mean 'weight_decay'"),
        ("data.nodta=0", "did you mean 'nodata'"),
    ],
)
def test_misspelled_config_keys_suggest_the_right_one(tmp_path, scenes, typo, hint):
    result = train(experiment(scenes), tmp_path, "--set", typo)
    assert_one_line_error(result, "experiment.yaml", hint)


def test_debug_shows_the_traceback(tmp_path, scenes):
    (scenes / "images" / "scene_001.tif").write_bytes(b"")
    path = write_yaml(tmp_path / "experiment.yaml", experiment(scenes))
    result = runner.invoke(app, ["--debug", "train", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and isinstance(result.exception, DataError)


def test_enormous_declared_image_is_refused_before_allocating(tmp_path, scenes):
    """A valid GeoTIFF declaring 60000 x 60000 x 3 pixels but holding no data blocks (a small file):
    refused from its header, not by running out of memory."""
    with rasterio.open(
        scenes / "images" / "scene_001.tif",
        "w",
        driver="GTiff",
        width=60_000,
        height=60_000,
        count=3,
        dtype="uint8",
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        sparse_ok=True,
        compress="deflate",
        crs="EPSG:32632",
        transform=from_origin(500000, 5200000, 0.5, 0.5),
    ):
        pass
    assert (scenes / "images" / "scene_001.tif").stat().st_size < 2_000_000
    result = train(experiment(scenes), tmp_path)
    assert_one_line_error(result, "scene_001.tif", "declares 60000x60000x3 pixels, too many to read at once")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, clean_scenes):
    """A one-epoch run folder (read-only: copy it) and its config."""
    folder = tmp_path_factory.mktemp("finished_run")
    config = write_yaml(folder / "experiment.yaml", experiment(clean_scenes))
    result = runner.invoke(app, ["train", str(config), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder / "run", config


def resume(run, config, *extra):
    return runner.invoke(app, ["train", str(config), "--out", str(run), "--resume", "--set", "train.epochs=2", *extra])


def test_resume_from_a_truncated_checkpoint(tmp_path, finished_run):
    run, config = finished_run
    shutil.copytree(run, tmp_path / "run")
    truncate(tmp_path / "run" / "checkpoints" / "last.ckpt", 0.5)
    result = resume(tmp_path / "run", config)
    assert_one_line_error(result, "checkpoints/last.ckpt", "checkpoint is truncated or corrupt")


def test_resume_with_another_class_count(tmp_path, finished_run):
    run, config = finished_run
    shutil.copytree(run, tmp_path / "run")
    six_classes = {"name": "six", "classes": [{"name": f"c{i}", "color": f"#0000{i:02X}", "code": i} for i in range(6)]}
    other = experiment(tmp_path, data={"schema": six_classes})
    other["data"]["root"] = yaml.safe_load(config.read_text())["data"]["root"]
    other_config = write_yaml(tmp_path / "six.yaml", other)
    result = resume(tmp_path / "run", other_config)
    assert_one_line_error(result, "checkpoints/last.ckpt", "cannot resume: trained for 5 classes", "has 6")


def test_resume_with_another_network(tmp_path, finished_run):
    run, config = finished_run
    shutil.copytree(run, tmp_path / "run")
    result = resume(tmp_path / "run", config, "--set", "model.widths=[8, 16, 32]")
    assert_one_line_error(result, "checkpoints/last.ckpt", "another network (widths [8, 16] -> [8, 16, 32])")


def test_resume_without_a_checkpoint_and_restart_over_a_run(tmp_path, finished_run):
    run, config = finished_run
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "new"), "--resume"])
    assert_one_line_error(result, "new", "no checkpoints/last.ckpt to resume from")
    shutil.copytree(run, tmp_path / "run")
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run")])
    assert_one_line_error(result, "run", "already holds a training run; use --resume")
