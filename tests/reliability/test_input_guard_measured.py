"""The input guard measured both ways (issue 29): no refusal of any image or 512 x 512 window of a data set
by a model trained on it, open sea, haze and a single pixel included; every window rescaled the wrong way
refused in one line with the factor that undoes it. Over generated data always, over ``../shared`` real
data where it is present."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from guard_measure import WINDOW, false_refusals, haze, open_sea, true_refusals, windows
from rasterio.errors import NotGeoreferencedWarning

from landseg.data.synthetic import generate_scene

REFLECTANCE_PER_BYTE = 25
"""Generated 16-bit scenes: byte x 25, 0-6375, where Sentinel-2 reflectance x 10000 usually lies."""


@pytest.fixture(scope="module")
def generated() -> dict[str, list[np.ndarray]]:
    """Training scenes, and the images a user then predicts: another scene (512 x 1024: two windows),
    open sea, haze, and a single pixel of field."""
    training = [generate_scene(128, seed=seed).image for seed in (0, 1, 2)]
    scene = generate_scene((512, 1024), seed=7).image
    images = [scene, open_sea(), haze(scene[:, :, :512]), np.array([[[96]], [[118]], [[71]]], dtype=np.uint8)]
    return {"training": training, "images": images}


def as_reflectance(images: list[np.ndarray]) -> list[np.ndarray]:
    return [image.astype(np.uint16) * REFLECTANCE_PER_BYTE for image in images]


def test_generated_8_bit_scenes_sea_haze_and_one_pixel_are_never_refused(generated):
    measured = false_refusals("generated", generated["training"], generated["images"], None)
    assert measured.checked == 4 + 2 + 1 + 1 + 1  # each image, and its windows (the pixel is its own)
    assert measured.wrong == []


def test_generated_16_bit_scenes_sea_haze_and_one_pixel_are_never_refused(generated):
    measured = false_refusals(
        "generated16", as_reflectance(generated["training"]), as_reflectance(generated["images"]), None
    )
    assert measured.wrong == []


@pytest.mark.parametrize("native", ["byte", "reflectance"])
def test_generated_windows_rescaled_the_wrong_way_are_all_refused_with_the_factor(generated, native):
    convert = (lambda images: images) if native == "byte" else as_reflectance
    measured = true_refusals(
        f"generated-{native}", convert(generated["training"]), convert(generated["images"]), native, None
    )
    assert measured.checked == 4 * (2 + 1 + 1 + 1)  # four mistakes, each window (a small image is its own)
    assert measured.wrong == []


# -- real data -----------------------------------------------------------------------------------------
REAL_DATA_SETS = {
    # name: (image files under ../shared/datasets, how they are stored; None: no wrong scale is defined)
    "dubai": ("dubai/tile_*/images/*.jpg", "byte"),
    "s2_korea": ("s2_korea/images/*.tif", "byte"),
    "loveda": ("samples/loveda/img_dir/*.png", "byte"),
    "potsdam": ("samples/potsdam/img_dir/*.png", "byte"),
    "vaihingen": ("samples/vaihingen/img_dir/*.png", "byte"),
    "naip": ("samples/chesapeake/*_naip-*.tif", "byte"),
    "landsat": ("samples/chesapeake/*_landsat-*.tif", "reflectance"),
    "sen12ms_s2": ("samples/sen12ms/*_s2_*.tif", "reflectance"),
    "sen1floods11_s2": ("samples/sen1floods11/*_S2Hand.tif", "reflectance"),
    "sen1floods11_s1": ("samples/sen1floods11/*_S1Hand.tif", None),  # backscatter in dB
}
real_data_sets = pytest.mark.parametrize("name", list(REAL_DATA_SETS))


@functools.cache
def read_data_set(root: Path, name: str) -> tuple[list[np.ndarray], float | None]:
    """The data set's images (read once for both measurements) and their no-data value."""
    files = sorted(root.glob(REAL_DATA_SETS[name][0]))
    assert files, f"{name}: no files match {REAL_DATA_SETS[name][0]}"
    images, nodata = [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # photos (JPEG, PNG) have no grid
        for path in files:
            with rasterio.open(path) as dataset:
                images.append(dataset.read())
                nodata = dataset.nodata
    return images, nodata


@pytest.mark.shared_data
@real_data_sets
def test_real_images_and_windows_are_never_refused_by_a_model_of_their_data_set(shared_datasets, name):
    images, nodata = read_data_set(shared_datasets, name)
    measured = false_refusals(name, images, images, nodata)
    if name == "dubai":  # the 189 whole windows, 2 of them refused before
        assert sum(window.shape[1:] == (WINDOW, WINDOW) for image in images for window in windows(image)) == 189
    assert measured.wrong == []


@pytest.mark.shared_data
@real_data_sets
def test_real_windows_rescaled_the_wrong_way_are_all_refused_with_the_factor(shared_datasets, name):
    native = REAL_DATA_SETS[name][1]
    if native is None:
        pytest.skip(f"{name} holds backscatter in dB: no wrong scale of it is defined")
    images, nodata = read_data_set(shared_datasets, name)
    measured = true_refusals(name, images, images, native, nodata)
    assert measured.wrong == []
