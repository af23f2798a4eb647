"""Cloud and shadow masks in prediction: ukis-csmask's network through the inference core, an L2A product's
SCL band, and what a mask does to a scene's outputs and run record."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from tests.helpers import save_tiny_checkpoint, write_geotiff
from tests.zoo.sentinel2_products import STACK_CRS, STACK_GRID, write_stac_item, write_synthetic_chip
from typer.testing import CliRunner
from ukis_csmask.mask import CSmask

from landseg.cli import app
from landseg.errors import DataError
from landseg.normalization import Normalization
from landseg.predict.clouds import scl_classes
from landseg.predict.core import predict_array
from landseg.predict.engine import predict_scene
from landseg.predict.ensemble import load_ensemble
from landseg.predict.options import PredictOptions

UKIS_BANDS = ["blue", "green", "red", "nir", "swir16", "swir22"]
STACK_INDICES = [1, 2, 3, 7, 11, 12]
"""B2, B3, B4, B8, B11, B12 in the 13-band L1C stack, 0-based."""
SAMPLES = ("sen12ms/ROIs1970_fall_s2_4_p30.tif", "sen12ms/ROIs2017_winter_s2_27_p36.tif")
FLOODS = "sen1floods11/Spain_7370579_S2Hand.tif"


def csmask_at_30m(image: np.ndarray, pad: int = 0) -> np.ndarray:
    """ukis-csmask's own ``CSmask`` classes of a 10 m stack resampled to 30 m as the inference core resamples
    its tiles (antialiased bilinear); ``pad`` mirrored pixels of extra context around the image."""
    small = F.interpolate(
        torch.from_numpy(image[STACK_INDICES])[None],
        size=(image.shape[1] // 3, image.shape[2] // 3),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0].numpy()
    reflectance = np.moveaxis(small / 10000, 0, -1).astype(np.float32)
    if pad:
        reflectance = np.pad(reflectance, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    with pytest.warns(UserWarning) if min(reflectance.shape[:2]) < 256 else nullcontext():
        classes = CSmask(reflectance, UKIS_BANDS, "l1c").csm[..., 0]
    return classes[pad : classes.shape[0] - pad, pad : classes.shape[1] - pad] if pad else classes


@pytest.mark.shared_data
@pytest.mark.parametrize("sample", [*SAMPLES, FLOODS])
def test_cloud_model_through_landseg_agrees_with_csmask(shared_datasets, sample):
    with rasterio.open(shared_datasets / "samples" / sample) as dataset:
        image = dataset.read().astype(np.float32)
    side = (min(image.shape[1:]) // 3) * 3  # whole 30 m pixels, so both resample the same pixels
    image = image[:, :side, :side]
    ensemble = load_ensemble(["zoo:cloud-shadow"])
    # At the centre of each 3 x 3 block, bilinear upsampling returns the 30 m pixel's own probabilities.
    landseg = predict_array(image, ensemble).probabilities.argmax(axis=0)[1::3, 1::3]
    theirs = csmask_at_30m(image)
    agreement = float((landseg == theirs).mean())
    # The chips are smaller than one 256 px network tile at 30 m, so both tools pad them, differently: how
    # much the network's own answer moves with 8 more mirrored pixels of context bounds what can agree.
    own = float((csmask_at_30m(image, pad=8) == theirs).mean())
    fractions = np.bincount(landseg.ravel(), minlength=3) / landseg.size
    print(
        f"{sample}: agreement {agreement:.4f}, csmask with itself {own:.4f}, cloud {fractions[1]:.4f}, "
        f"shadow {fractions[2]:.4f}"
    )
    assert agreement >= min(0.99, own - 0.01)


def _l2a_item(tmp_path: Path, scl: np.ndarray) -> Path:
    chip = write_synthetic_chip(tmp_path / "chip.tif", size=120, seed=3)
    return write_stac_item(chip, tmp_path / "item", level="L2A", scl=scl)


def _rgb_checkpoint(tmp_path: Path) -> Path:
    return save_tiny_checkpoint(
        tmp_path / "rgb.ckpt",
        bands=3,
        band_names=["B4", "B3", "B2"],
        normalization=Normalization.symmetric(3, 10000.0).to_dict(),
    )


def test_an_l2a_products_scl_band_masks_clouds_and_shadows_but_not_snow(tmp_path):
    scl = np.full((60, 60), 4, dtype=np.uint8)  # vegetation, on the 20 m grid
    scl[5:20, 5:25] = 9  # cloud, high probability
    scl[30:40, 10:20] = 3  # cloud shadow
    scl[40:50, 40:55] = 11  # snow: land cover, kept
    scl[50:55, 0:10] = 10  # thin cirrus
    item = _l2a_item(tmp_path, scl)
    ensemble = load_ensemble([_rgb_checkpoint(tmp_path)])
    result = predict_scene(item, ensemble, tmp_path / "out", PredictOptions(cloud_output=True))
    expected = np.isin(scl, (3, 9, 10)).repeat(2, axis=0).repeat(2, axis=1)  # nearest onto the 10 m grid
    with rasterio.open(result.paths["classes"]) as classes, rasterio.open(result.paths["cloud"]) as mask:
        assert np.array_equal(classes.read(1) == 255, expected)
        assert np.array_equal(mask.read(1), scl_classes(scl).repeat(2, axis=0).repeat(2, axis=1))
    record = json.loads(result.paths["record"].read_text())["cloud_mask"]
    assert record["method"] == "scl"
    assert record["cloud_pixels"] == 4 * int(np.isin(scl, (9, 10)).sum())
    assert record["shadow_pixels"] == 4 * int((scl == 3).sum())
    assert record["masked_fraction"] == pytest.approx(expected.mean(), abs=1e-6)
    areas = (tmp_path / "out" / f"{item.stem}_areas.csv").read_text().splitlines()[1:]
    assert sum(int(line.split(",")[1]) for line in areas) == int((~expected).sum())


def test_a_fully_clouded_scene_and_a_missing_scl_band_are_one_line_errors(tmp_path):
    checkpoint = _rgb_checkpoint(tmp_path)
    ensemble = load_ensemble([checkpoint])
    item = _l2a_item(tmp_path / "cloudy", np.full((60, 60), 9, dtype=np.uint8))
    with pytest.raises(DataError, match=r"every pixel is under cloud or shadow .* --cloud-mask none"):
        predict_scene(item, ensemble, tmp_path / "out", PredictOptions())
    assert not list((tmp_path / "out").glob(f"{item.stem}_classes.tif"))
    chip = write_synthetic_chip(tmp_path / "plain" / "chip.tif", size=60, seed=1)
    l1c = write_stac_item(chip, tmp_path / "plain" / "item")
    with pytest.raises(DataError, match="has no SCL band"):
        predict_scene(l1c, ensemble, tmp_path / "out", PredictOptions(cloud_mask="scl"))


def test_the_cloud_model_names_the_bands_an_input_lacks(tmp_path):
    pixels = np.random.default_rng(0).integers(500, 3000, (4, 64, 64), dtype=np.uint16)
    stack = write_geotiff(tmp_path / "rgbn.tif", pixels, STACK_GRID, STACK_CRS, descriptions=["B2", "B3", "B4", "B5"])
    ensemble = load_ensemble([_rgb_checkpoint(tmp_path)])
    with pytest.raises(DataError, match="lacks band B8 that the cloud model reads"):
        predict_scene(stack, ensemble, tmp_path / "out", PredictOptions(cloud_mask="model"))


def test_auto_masks_nothing_on_inputs_that_are_not_sentinel2(tmp_path, synthetic_scene):
    image = write_geotiff(tmp_path / "photo.tif", synthetic_scene.image.copy())
    ensemble = load_ensemble([save_tiny_checkpoint(tmp_path / "tiny.ckpt")])
    result = predict_scene(image, ensemble, tmp_path / "out", PredictOptions())
    assert result.clouds is None
    assert json.loads(result.paths["record"].read_text())["cloud_mask"] is None
    with pytest.raises(DataError, match="gets no cloud mask"):
        predict_scene(image, ensemble, tmp_path / "out2", PredictOptions(cloud_output=True))


@pytest.mark.shared_data
def test_the_cloud_model_predicts_like_any_zoo_model_from_the_command_line(shared_datasets, tmp_path):
    listing = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert "cloud-shadow" in listing.output and "ukis-csmask" in listing.output
    chip = shared_datasets / "samples" / FLOODS
    result = CliRunner().invoke(
        app, ["predict", "--model", "cloud-shadow", str(chip), "--out", str(tmp_path), "--cloud-mask", "none"]
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / f"{chip.stem}_classes.tif") as classes:
        values = set(np.unique(classes.read(1)).tolist())
    assert values <= {0, 1, 2} and 0 in values and len(values) >= 2
    areas = (tmp_path / f"{chip.stem}_areas.csv").read_text()
    assert "Clear" in areas and "Cloud shadow" in areas
