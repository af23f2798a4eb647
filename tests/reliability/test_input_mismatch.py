"""Inputs in other units than a model's training pixels are refused with both ranges named and the factor
that converts them, not mapped as one class; quiet scenes in the same units (sea, haze, one pixel) predict."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from guard_measure import haze, open_sea
from rasterio.transform import from_origin
from reliability_helpers import save_tiny_checkpoint, write_geotiff
from typer.testing import CliRunner

from landseg.checkpoint import CARD_KEY
from landseg.classes import get_schema
from landseg.cli import app
from landseg.data.synthetic import generate_scene
from landseg.io.pixel_stats import pixel_stats

runner = CliRunner()
SCHEMA = get_schema("synthetic")


def scene_pixels(seed: int = 4, size: int = 160) -> np.ndarray:
    """A synthetic 8-bit RGB scene: fields, forest, water, roads and buildings with texture."""
    return generate_scene(size, seed=seed).image


def checkpoint_trained_on(path, pixels: np.ndarray, resolution_m: float = 0.5):
    """A tiny checkpoint whose card records ``pixels`` as its training data, as ``landseg train`` does."""
    save_tiny_checkpoint(path, bands=pixels.shape[0])
    raw = torch.load(path, weights_only=True)
    raw["hyper_parameters"][CARD_KEY]["input_stats"] = pixel_stats([pixels], str(pixels.dtype), resolution_m).to_dict()
    torch.save(raw, path)
    return path


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    return checkpoint_trained_on(tmp_path_factory.mktemp("model") / "rgb8.ckpt", scene_pixels())


def predict(model, image, out, *extra):
    return runner.invoke(
        app, ["predict", "-c", str(model), str(image), "--out", str(out), "--engine", "torch", "--no-preview", *extra]
    )


def test_uint16_reflectance_into_an_8_bit_model_is_refused_naming_both_ranges(tmp_path, rgb_model):
    reflectance = (scene_pixels(seed=9).astype(np.uint16) * 40).clip(0, 10200)
    image = write_geotiff(tmp_path / "sentinel_like.tif", reflectance)
    result = predict(rgb_model, image, tmp_path / "out")
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "sentinel_like.tif" in line and "more than the 0-255 of the model's 8-bit training pixels" in line
    assert "uint16" in line and "uint8" in line and "--allow-input-mismatch" in line
    assert "--input-scale-values (e.g. 0.0255)" in line  # 0-10000 to 0-255
    assert not (tmp_path / "out" / "sentinel_like_classes.tif").exists()
    # Rescaled to the 8-bit range, the same pixels are accepted.
    rescaled = predict(rgb_model, image, tmp_path / "scaled", "--input-scale-values", "0.025")
    assert rescaled.exit_code == 0, rescaled.output
    allowed = predict(rgb_model, image, tmp_path / "allowed", "--allow-input-mismatch")
    assert allowed.exit_code == 0, allowed.output


def test_float_reflectance_in_0_1_into_an_8_bit_model_is_refused(tmp_path, rgb_model):
    unit = (scene_pixels(seed=9) / 255.0).astype(np.float32)
    result = predict(rgb_model, write_geotiff(tmp_path / "unit.tif", unit), tmp_path / "out")
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "unit.tif" in line and "float32" in line and "uint8" in line and "like 0-1 fractions" in line
    assert "--input-scale-values (e.g. 255)" in line


def test_four_band_16_bit_into_a_three_band_8_bit_model_is_refused(tmp_path, rgb_model):
    pixels = scene_pixels(seed=2).astype(np.uint16) * 40
    four = np.concatenate([pixels, pixels[:1]])
    result = predict(rgb_model, write_geotiff(tmp_path / "four.tif", four), tmp_path / "out")
    assert result.exit_code == 1
    assert "more than the 0-255 of the model's 8-bit training pixels" in " ".join(result.output.split())


def test_the_same_kind_of_pixels_passes_and_another_resolution_warns(tmp_path, rgb_model):
    other_scene = scene_pixels(seed=21)
    assert predict(rgb_model, write_geotiff(tmp_path / "same.tif", other_scene), tmp_path / "out").exit_code == 0
    coarse = write_geotiff(tmp_path / "coarse.tif", other_scene, transform=from_origin(500000, 5200000, 10.0, 10.0))
    from landseg.predict import PredictOptions, load_ensemble, predict_scene
    from landseg.predict.core import InputResolutionWarning

    with pytest.warns(InputResolutionWarning, match=r"10 m pixels.*0.5 m pixels"):
        predict_scene(coarse, load_ensemble([rgb_model], engine="torch"), tmp_path / "coarse", PredictOptions())


def test_a_card_without_training_statistics_is_not_checked(tmp_path):
    old = save_tiny_checkpoint(tmp_path / "old.ckpt")
    reflectance = scene_pixels(seed=9).astype(np.uint16) * 40
    assert predict(old, write_geotiff(tmp_path / "s.tif", reflectance), tmp_path / "out").exit_code == 0


@pytest.mark.parametrize(
    "name, pixels",
    [
        ("open_sea", open_sea(side=256)),  # 20-44, refused before as "far from the training pixels"
        ("haze", haze(scene_pixels(seed=21))),  # 90-109
        ("one_pixel", np.array([[[96]], [[118]], [[71]]], dtype=np.uint8)),
        ("dark_water", open_sea(side=128, low=3, high=16)),  # like the refused Dubai sea tile, 3-16
    ],
)
def test_quiet_scenes_in_the_training_units_predict(tmp_path, rgb_model, name, pixels):
    image = write_geotiff(tmp_path / f"{name}.tif", pixels)
    result = predict(rgb_model, image, tmp_path / "out")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / f"{name}_classes.tif") as written:
        classes = written.read(1)
    assert classes.shape == pixels.shape[1:] and classes.max() < SCHEMA.num_classes


def test_a_narrow_uint16_image_given_to_a_16_bit_model_predicts_and_8_bit_pixels_are_refused(tmp_path):
    reflectance = scene_pixels(seed=4).astype(np.uint16) * 25
    model = checkpoint_trained_on(tmp_path / "s2.ckpt", reflectance)
    sea = write_geotiff(tmp_path / "sea16.tif", open_sea(side=128).astype(np.uint16) * 25)
    assert predict(model, sea, tmp_path / "out").exit_code == 0
    result = predict(model, write_geotiff(tmp_path / "bytes.tif", scene_pixels(seed=9)), tmp_path / "out")
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert "bytes.tif: is 8-bit" in line and "--input-scale-values (e.g. 39.2)" in line  # 0-255 to 0-10000
