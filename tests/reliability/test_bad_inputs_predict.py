"""Bad inputs to ``landseg predict`` and ``landseg evaluate``: unreadable images, checkpoints that do not
fit, colliding outputs. A single bad input is one line and exit code 1 with no output; in a batch the
bad item is reported, the others are predicted, and the exit code is 1."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from reliability_helpers import (
    assert_one_line_error,
    experiment,
    save_tiny_checkpoint,
    truncate,
    visible_files,
    write_geotiff,
    write_yaml,
)
from typer.testing import CliRunner

from landseg.cli import app

runner = CliRunner()


def predict(checkpoint, inputs, out):
    return runner.invoke(app, ["predict", "--checkpoint", str(checkpoint), *map(str, inputs), "--out", str(out)])


def photo(path, bands=3, size=48, seed=0):
    rng = np.random.default_rng(seed)
    shape = (size, size, bands) if bands > 1 else (size, size)
    Image.fromarray(rng.integers(1, 256, shape, dtype=np.uint8)).save(path)
    return path


def tiles_cut_off(path, clean):
    """A tiled GeoTIFF whose header and first tiles survive but whose last tiles are gone."""
    with rasterio.open(clean) as src:
        data, transform = src.read(), src.transform
    write_geotiff(path, data, transform=transform, tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    return truncate(path, 0.6)


def empty_file(folder, clean):
    (folder / "empty.tif").write_bytes(b"")
    return folder / "empty.tif"


def text_named_tif(folder, clean):
    (folder / "notes.tif").write_text("not an image\n")
    return folder / "notes.tif"


def truncated_copy(folder, clean):
    return truncate(Path(shutil.copy(clean, folder / "half.tif")), 0.3)


BROKEN_IMAGES = {
    "zero_byte": (empty_file, "file is empty (0 bytes)"),
    "text_named_tif": (text_named_tif, "not a readable raster image"),
    "truncated_tiff_header": (truncated_copy, "truncated or corrupt|not a readable raster image"),
    "truncated_tiff_tiles": (lambda folder, clean: tiles_cut_off(folder / "cut.tif", clean), "truncated or corrupt"),
    "truncated_jpeg": (lambda folder, clean: truncate(photo(folder / "photo.jpg"), 0.4), "truncated or corrupt"),
    "truncated_png": (lambda folder, clean: truncate(photo(folder / "photo.png"), 0.5), "truncated or corrupt"),
    "one_band_for_three_band_model": (lambda folder, clean: photo(folder / "grey.png", bands=1), "band"),
}


@pytest.mark.parametrize("case", BROKEN_IMAGES)
def test_single_bad_image_is_one_line_and_writes_nothing(tmp_path, clean_scenes, tiny_checkpoint, case):
    make, problem = BROKEN_IMAGES[case]
    (tmp_path / "in").mkdir()
    image = make(tmp_path / "in", clean_scenes / "images" / "scene_000.tif")
    result = predict(tiny_checkpoint, [image], tmp_path / "out")
    line = assert_one_line_error(result, image.name)
    assert any(alternative in line for alternative in problem.split("|")), line
    assert "See previous exception" not in line
    assert visible_files(tmp_path / "out") == []


def test_a_bad_image_in_a_batch_is_reported_and_the_others_are_predicted(tmp_path, clean_scenes, tiny_checkpoint):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("scene_000", "scene_002"):
        shutil.copy(clean_scenes / "images" / f"{name}.tif", folder / f"{name}.tif")
    (folder / "scene_001.tif").write_bytes(b"")
    result = predict(tiny_checkpoint, [folder], tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    reported = [line for line in result.output.splitlines() if "scene_001.tif" in line]
    assert len(reported) == 1 and "file is empty (0 bytes)" in reported[0]
    assert "1 of 3 inputs failed" in result.output
    written = visible_files(tmp_path / "out")
    assert "scene_000_classes.tif" in written and "scene_002_classes.tif" in written
    assert not any(name.startswith("scene_001") for name in written)


def test_nan_and_inf_pixels_become_no_data_in_the_map(tmp_path, clean_scenes, tiny_checkpoint):
    with rasterio.open(clean_scenes / "images" / "scene_000.tif") as src:
        data, transform = src.read().astype(np.float32), src.transform
    data[:, 8:20, 8:20] = np.nan
    data[:, 40, 41] = np.inf
    image = write_geotiff(tmp_path / "float.tif", data, transform=transform)
    result = predict(tiny_checkpoint, [image], tmp_path / "out")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / "float_classes.tif") as src:
        classes = src.read(1)
    assert (classes[8:20, 8:20] == 255).all() and classes[40, 41] == 255
    valid = np.ones_like(classes, dtype=bool)
    valid[8:20, 8:20] = False
    valid[40, 41] = False
    assert (classes[valid] < 5).all()


def test_all_nodata_scene_gives_an_all_nodata_map(tmp_path, tiny_checkpoint):
    image = write_geotiff(tmp_path / "blank.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    result = predict(tiny_checkpoint, [image], tmp_path / "out")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / "blank_classes.tif") as src:
        assert (src.read(1) == 255).all()
    with open(tmp_path / "out" / "blank_areas.csv") as handle:
        rows = handle.read().splitlines()[1:]
    assert rows and all(row.split(",")[1] in ("0", "0.0") for row in rows)


def test_duplicate_stems_are_refused_before_any_work(tmp_path, clean_scenes, tiny_checkpoint):
    for folder, scene in (("a", "scene_000"), ("b", "scene_001")):
        (tmp_path / folder).mkdir()
        shutil.copy(clean_scenes / "images" / f"{scene}.tif", tmp_path / folder / "tile.tif")
    result = predict(tiny_checkpoint, [tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert_one_line_error(result, str(tmp_path / "a" / "tile.tif"), str(tmp_path / "b" / "tile.tif"), "same outputs")
    assert visible_files(tmp_path / "out") == []


def test_empty_input_folder(tmp_path, tiny_checkpoint):
    (tmp_path / "empty").mkdir()
    result = predict(tiny_checkpoint, [tmp_path / "empty"], tmp_path / "out")
    assert_one_line_error(result, str(tmp_path / "empty"), "folder holds no images")


def plain_state_dict(path, good):
    torch.save({"weight": torch.zeros(3)}, path)
    return path


def zero_bytes(path, good):
    path.write_bytes(b"")
    return path


def random_bytes(path, good):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


BROKEN_CHECKPOINTS = {
    "truncated": (lambda path, good: truncate(Path(shutil.copy(good, path)), 0.5), "truncated or corrupt"),
    "zero_byte": (zero_bytes, "checkpoint is empty (0 bytes)"),
    "random_bytes": (random_bytes, "truncated or corrupt"),
    "not_landseg": (plain_state_dict, "not a landseg checkpoint"),
}


@pytest.mark.parametrize("case", BROKEN_CHECKPOINTS)
def test_broken_checkpoint_is_one_line(tmp_path, clean_scenes, tiny_checkpoint, case):
    make, problem = BROKEN_CHECKPOINTS[case]
    checkpoint = make(tmp_path / "model.ckpt", tiny_checkpoint)
    result = predict(checkpoint, [clean_scenes / "images" / "scene_000.tif"], tmp_path / "out")
    assert_one_line_error(result, "model.ckpt", problem)
    assert visible_files(tmp_path / "out") == []


def test_checkpoint_for_other_bands_than_the_image(tmp_path, clean_scenes):
    four_band = save_tiny_checkpoint(tmp_path / "four.ckpt", bands=4)
    result = predict(four_band, [clean_scenes / "images" / "scene_000.tif"], tmp_path / "out")
    assert_one_line_error(result, "scene_000.tif", "band")


def evaluation_config(tmp_path, root, **data):
    config = experiment(root, train_ids=("000",), val_ids=("001", "002"))
    config["data"].update(data)
    return write_yaml(tmp_path / "evaluate.yaml", config)


def evaluate(checkpoint, config, out):
    return runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--config", str(config), "--out", str(out)])


def test_evaluate_with_a_checkpoint_of_another_class_count(tmp_path, clean_scenes, tiny_checkpoint):
    config = evaluation_config(tmp_path, clean_scenes, schema="landcoverai")
    result = evaluate(tiny_checkpoint, config, tmp_path / "eval")
    assert_one_line_error(
        result, "tiny.ckpt", "model predicts classes ['Field', 'Forest', 'Water', 'Road', 'Building']"
    )
    assert visible_files(tmp_path / "eval") == []


def test_evaluate_leaves_out_a_corrupt_image_and_says_so(tmp_path, clean_scenes, tiny_checkpoint):
    root = tmp_path / "scenes"
    shutil.copytree(clean_scenes, root)
    truncate(root / "images" / "scene_002.tif", 0.4)
    result = evaluate(tiny_checkpoint, evaluation_config(tmp_path, root), tmp_path / "eval")
    assert result.exit_code == 1 and "Traceback" not in result.output
    left_out = [line for line in result.output.splitlines() if line.startswith("left out")]
    assert len(left_out) == 1 and "scene_002.tif" in left_out[0]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 1
    assert metrics["quarantined"][0]["file"].endswith("scene_002.tif")
    assert np.array(metrics["confusion_matrix"]).sum() == 64 * 64  # scene_001 alone, every pixel labelled
