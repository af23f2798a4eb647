"""Dynamic World end to end (issue 17): ``landseg predict --model`` on real Sentinel-2 L1C chips, as a
stacked GeoTIFF, a ``.SAFE`` folder, its ``.zip`` and a STAC item; ensembles, export, Dask, serve
settings, ``landseg models``; and the one-line refusals of inputs the model must not map.

The reference is the SavedModel's own logits on the whole 256 x 256 chip. Tiles of 256 px with no
overlap make the one tile the whole chip (the grid's mirrored margin is half the overlap, so 0), which is
the only layout in which the map must equal the reference's argmax on every pixel: with overlapping
tiles the network sees mirrored context at the edges and blended neighbours, which changes logits there.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from scipy import ndimage
from tests.zoo.sentinel2_products import write_safe, write_stac_item, write_synthetic_chip, zip_safe
from typer.testing import CliRunner

from landseg.cli.main import app
from landseg.errors import ConfigError
from landseg.predict.models import model_references

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
# A winter chip of seven classes; the fall chip beside it is one class (bare ground) in every pixel.
CHIP = SHARED / "datasets" / "samples" / "sen12ms" / "ROIs2017_winter_s2_27_p36.tif"
REFERENCE = SHARED / "models" / "dynamic_world" / "reference" / "ROIs2017_winter_s2_27_p36_dw_logits.npy"
WHOLE_CHIP = ["--tile", "256", "--overlap", "0"]
# Measured on this chip: 20 m bands averaged from the chip then resampled back bilinearly change 3.8 %
# of the classes against the reference; 5 % bounds it.
RESAMPLED_AGREEMENT = 0.95

needs_shared = pytest.mark.skipif(not REFERENCE.is_file(), reason="../shared (real Sentinel-2 chips) not present")


@pytest.fixture(scope="module")
def synthetic_chip(tmp_path_factory) -> Path:
    """A seeded 13-band L1C-like chip, for the tests of how products are read and refused (no real data)."""
    return write_synthetic_chip(tmp_path_factory.mktemp("chip") / "synthetic_l1c.tif")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LANDSEG_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def predict(*args: str) -> CliRunner:
    """``landseg predict --model dynamic-world`` without a cloud mask (unless ``args`` ask for one): these
    tests compare the port's maps with the SavedModel's, pixel for pixel."""
    result = CliRunner().invoke(app, ["predict", "--model", "dynamic-world", "--cloud-mask", "none", *args])
    return result


def class_map(folder: Path, stem: str) -> np.ndarray:
    with rasterio.open(folder / f"{stem}_classes.tif") as written:
        return written.read(1)


def reference_classes() -> np.ndarray:
    return np.load(REFERENCE).argmax(-1)


def flips_mean_classes(chip: Path) -> np.ndarray:
    """Classes of the mean probabilities over the chip's four flips, each predicted alone and flipped back."""
    from landseg.predict.core import predict_array
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.options import PredictOptions
    from landseg.zoo import get_zoo_model

    ensemble = load_ensemble(model_references([], ["dynamic-world"]), engine="torch")
    with rasterio.open(chip) as source:
        pixels = source.read()
    options = PredictOptions(tile=256, overlap=0, bands=tuple(get_zoo_model("dynamic-world").bands), cloud_mask="none")
    total = 0
    for axes in [(), (2,), (1,), (1, 2)]:
        flipped = np.ascontiguousarray(np.flip(pixels, axes)) if axes else pixels
        probabilities = predict_array(flipped, ensemble, options).probabilities
        total = total + (np.flip(probabilities, axes) if axes else probabilities)
    return total.argmax(axis=0)


def smallest_region(classes: np.ndarray) -> int:
    """Pixels in the smallest 4-connected region of one class."""
    sizes = [np.bincount(ndimage.label(classes == k)[0].ravel())[1:] for k in np.unique(classes)]
    return int(min(size.min() for size in sizes))


@needs_shared
@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_predict_writes_the_reference_class_map_with_every_output(tmp_path, engine):
    result = predict(
        str(CHIP),
        "--out",
        str(tmp_path),
        "--engine",
        engine,
        *WHOLE_CHIP,
        "--probabilities",
        "--confidence",
        "--polygons",
        "gpkg",
    )
    assert result.exit_code == 0, result.output
    stem = CHIP.stem
    assert (class_map(tmp_path, stem) == reference_classes()).all()
    with rasterio.open(tmp_path / f"{stem}_classes.tif") as written:
        assert written.colormap(1)[0][:3] == (0x41, 0x9B, 0xDF) and written.colormap(1)[6][:3] == (0xC4, 0x28, 0x1B)
        assert written.crs is not None and written.overviews(1) is not None
    with rasterio.open(tmp_path / f"{stem}_probabilities.tif") as probabilities:
        assert probabilities.count == 9
    areas = json.loads((tmp_path / f"{stem}_areas.json").read_text())
    assert "Water" in json.dumps(areas) and (tmp_path / f"{stem}_polygons.gpkg").stat().st_size > 0
    record = json.loads((tmp_path / f"{stem}_prediction.json").read_text())
    assert record["engines"] == [engine]


@needs_shared
def test_flips_are_averaged_and_a_minimum_area_removes_small_regions(tmp_path):
    result = predict(
        str(CHIP), "--out", str(tmp_path), "--engine", "torch", *WHOLE_CHIP, "--tta", "flips", "--min-area", "4"
    )
    assert result.exit_code == 0, result.output
    predicted, reference = class_map(tmp_path, CHIP.stem), reference_classes()
    # Dynamic World is not flip-invariant: on this chip the four flips' mean moves 12 % of the classes
    # (measured), and the minimum area a further 0.1 %.
    flips = flips_mean_classes(CHIP)
    assert (flips == reference).mean() < 0.95
    assert (predicted == flips).mean() > 0.99
    assert smallest_region(reference) < 4 <= smallest_region(predicted)
    record = json.loads((tmp_path / f"{CHIP.stem}_prediction.json").read_text())
    assert record["tta"] == "flips" and record["options"]["min_area"] == 4


@needs_shared
@pytest.mark.parametrize("form", ["safe", "zip", "stac"])
def test_sentinel2_products_predict_like_the_stacked_chip(tmp_path, form):
    products = tmp_path / "products"
    products.mkdir()
    source = {
        "safe": lambda: write_safe(CHIP, products),
        "zip": lambda: zip_safe(write_safe(CHIP, products)),
        "stac": lambda: write_stac_item(CHIP, products / "stac"),
    }[form]()
    result = predict(str(source), "--out", str(tmp_path / "out"), "--engine", "torch", *WHOLE_CHIP)
    assert result.exit_code == 0, result.output
    predicted = class_map(tmp_path / "out", source.stem)
    assert predicted.shape == (256, 256)
    assert (predicted == reference_classes()).mean() >= RESAMPLED_AGREEMENT


def test_a_safe_folder_inside_a_folder_is_one_scene(tmp_path, synthetic_chip):
    from landseg.predict.inputs import find_inputs

    safe = write_safe(synthetic_chip, tmp_path)
    assert find_inputs([tmp_path]) == [safe]


def test_the_10m_bands_of_a_product_are_the_chip_pixels(tmp_path, synthetic_chip):
    from landseg.io.raster import open_raster

    with open_raster(write_safe(synthetic_chip, tmp_path)) as product, rasterio.open(synthetic_chip) as chip:
        assert product.descriptions[1] == "B2" and product.tags()["PROCESSING_LEVEL"] == "L1C"
        assert (product.read(2) == chip.read(2)).all() and (product.read(8) == chip.read(8)).all()


def test_an_l2a_product_is_refused_with_what_to_pass(tmp_path, synthetic_chip):
    stac = write_stac_item(synthetic_chip, tmp_path / "stac", level="L2A")
    result = predict(str(stac), "--out", str(tmp_path / "out"), "--engine", "torch")
    assert result.exit_code != 0
    assert "Sentinel-2 L2A product" in result.output and "pass the L1C product" in result.output


@pytest.mark.parametrize("form", ["safe", "zip"])
def test_an_l2a_safe_product_is_refused_in_one_line(tmp_path, synthetic_chip, form):
    # The L2A layout: IMG_DATA/R10m, R20m, R60m with _10m ... suffixes, no B10; GDAL names it SENTINEL2_L2A.
    safe = write_safe(synthetic_chip, tmp_path, level="L2A")
    source = zip_safe(safe) if form == "zip" else safe
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict(str(source), "--out", str(tmp_path / "out"), "--engine", "torch")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {source}: is a Sentinel-2 L2A product")
    assert "dynamic-world reads L1C (top-of-atmosphere) reflectance: pass the L1C product" in errors[0]
    # No rasterio warning printed around the one line (the product's metadata file has no grid of its own).
    assert [str(w.message) for w in caught if issubclass(w.category, NotGeoreferencedWarning)] == []
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_missing_band_is_named(tmp_path, synthetic_chip):
    safe = write_safe(synthetic_chip, tmp_path, skip=("B11",))
    result = predict(str(safe), "--out", str(tmp_path / "out"), "--engine", "torch")
    assert result.exit_code != 0 and "lacks band B11" in result.output


def test_a_band_at_another_resolution_is_refused(tmp_path, synthetic_chip):
    stac = write_stac_item(synthetic_chip, tmp_path / "stac", resolutions={"B2": 20})
    result = predict(str(stac), "--out", str(tmp_path / "out"), "--engine", "torch")
    assert result.exit_code != 0 and "band B2 has 20 m pixels" in result.output


def test_an_rgb_picture_is_not_sentinel2(tmp_path):
    picture = tmp_path / "photo.tif"
    pixels = np.random.default_rng(0).integers(0, 256, (13, 64, 64), dtype=np.uint8)
    with rasterio.open(picture, "w", driver="GTiff", width=64, height=64, count=13, dtype="uint8") as target:
        target.write(pixels)
    result = predict(str(picture), "--out", str(tmp_path / "out"), "--engine", "torch")
    assert result.exit_code != 0 and "does not look like Sentinel-2" in result.output
    rgb = tmp_path / "rgb.tif"
    with rasterio.open(rgb, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as target:
        target.write(pixels[:3])
    result = predict(str(rgb), "--out", str(tmp_path / "out"), "--engine", "torch")
    assert result.exit_code != 0 and "has 3 bands" in result.output


@needs_shared
def test_named_bands_in_another_order_and_bands_option(tmp_path):
    with rasterio.open(CHIP) as chip:
        stack, profile = chip.read(), chip.profile
    order = list(range(12, -1, -1))  # B12 ... B1
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    shuffled = tmp_path / "shuffled.tif"
    with rasterio.open(shuffled, "w", **profile) as target:
        target.write(stack[order])
        target.descriptions = tuple(names[i] for i in order)
    result = predict(str(shuffled), "--out", str(tmp_path / "a"), "--engine", "torch", *WHOLE_CHIP)
    assert result.exit_code == 0, result.output
    assert (class_map(tmp_path / "a", "shuffled") == reference_classes()).all()
    nine = tmp_path / "nine.tif"
    with rasterio.open(nine, "w", **{**profile, "count": 9}) as target:
        target.write(stack[[1, 2, 3, 4, 5, 6, 7, 11, 12]])
    result = predict(
        str(nine), "--out", str(tmp_path / "b"), "--engine", "torch", *WHOLE_CHIP, "--bands", "1,2,3,4,5,6,7,8,9"
    )
    assert result.exit_code == 0, result.output
    assert (class_map(tmp_path / "b", "nine") == reference_classes()).all()


@needs_shared
def test_dask_workers_load_zoo_members(tmp_path):
    result = predict(
        str(CHIP),
        "--out",
        str(tmp_path),
        "--engine",
        "torch",
        *WHOLE_CHIP,
        "--workers",
        "1",
        "--threads",
        "1",
        "--cloud-mask",
        "auto",
    )
    assert result.exit_code == 0, result.output
    # The scene is assembled with its cloud mask as in one process: the unmasked pixels keep their classes.
    classes = class_map(tmp_path, CHIP.stem)
    mask = json.loads((tmp_path / f"{CHIP.stem}_prediction.json").read_text())["cloud_mask"]
    assert mask["method"] == "model" and (classes == 255).sum() == mask["cloud_pixels"] + mask["shadow_pixels"]
    assert (classes == reference_classes())[classes != 255].all()


def test_export_writes_an_onnx_model_that_predicts(tmp_path):
    from landseg.predict.ensemble import load_ensemble

    target = tmp_path / "dw.onnx"
    result = CliRunner().invoke(app, ["export", "--model", "dynamic-world", "--onnx", str(target), "--tile", "64"])
    assert result.exit_code == 0, result.output
    ensemble = load_ensemble([target, *model_references([], ["dynamic-world"])], engine="torch")
    assert [m.engine for m in ensemble.members] == ["onnxruntime", "torch"]
    raw = np.random.default_rng(1).integers(500, 4000, (2, 9, 64, 64)).astype(np.uint16)
    plan = ensemble.plan(9, [None] * 9, "x", bands=list(range(1, 10)))
    assert ensemble.predict(raw, plan).shape == (2, 9, 64, 64)


def test_model_references_and_their_errors():
    assert model_references(["a.ckpt"], ["Dynamic_World"]) == ["a.ckpt", "zoo:dynamic-world"]
    with pytest.raises(ConfigError, match="unknown zoo model"):
        model_references([], ["landcover-9000"])
    result = CliRunner().invoke(app, ["predict", "x.tif"])
    assert result.exit_code != 0 and "--model NAME" in result.output


def test_serve_settings_take_a_zoo_model(tmp_path):
    from landseg.serve.model_info import describe_model
    from landseg.serve.settings import ServeSettings
    from landseg.zoo import load_zoo_model

    settings = ServeSettings.from_options(model="dynamic-world")
    assert settings.model_reference == "zoo:dynamic-world"
    with pytest.raises(ConfigError, match="exactly one model"):
        ServeSettings.from_options()
    info = describe_model(load_zoo_model("dynamic-world"))
    assert info["checkpoint"] == "dynamic-world" and info["classes"][0]["name"] == "Water"


def test_models_command_lists_dynamic_world():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "dynamic-world" in result.output and "Snow and ice" in result.output and "Apache-2.0" in result.output
