"""landseg's procedural land-cover scenes: determinism, class make-up, realism cues, GeoTIFF output."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from landseg.classes import get_schema
from landseg.data.synthetic import (
    BUILDING,
    FIELD,
    FOREST,
    NODATA_LABEL,
    NODATA_VALUE,
    ROAD,
    WATER,
    generate_scene,
    write_scene,
)
from landseg.errors import ConfigError

SCHEMA = get_schema("synthetic")
# The shares the generator promises, per class code.
SHARE_RANGES = {
    FIELD: (0.40, 0.55),
    FOREST: (0.20, 0.30),
    WATER: (0.08, 0.15),
    ROAD: (0.03, 0.08),
    BUILDING: (0.03, 0.08),
}


def test_class_constants_are_the_synthetic_schema_codes():
    assert [SCHEMA.classes[i].code for i in range(5)] == [FIELD, FOREST, WATER, ROAD, BUILDING]
    assert SCHEMA.names == ["Field", "Forest", "Water", "Road", "Building"]


def test_same_seed_gives_the_same_scene_and_another_seed_another():
    first, again, other = generate_scene(96, seed=7), generate_scene(96, seed=7), generate_scene(96, seed=8)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert (first.labels != other.labels).mean() > 0.2
    assert np.abs(first.image.astype(int) - other.image.astype(int)).mean() > 10


def test_scene_arrays_have_the_promised_types_and_shapes():
    scene = generate_scene((80, 120), seed=1)
    assert scene.image.shape == (3, 80, 120) and scene.image.dtype == np.uint8
    assert scene.labels.shape == (80, 120) and scene.labels.dtype == np.uint8
    assert set(np.unique(scene.labels)) <= {FIELD, FOREST, WATER, ROAD, BUILDING}
    assert scene.image.min() >= 1  # 0 is kept for no-data
    assert scene.band_names == ("red", "green", "blue")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("size", [96, 256])
def test_class_shares_are_in_the_stated_ranges(size, seed):
    scene = generate_scene(size, seed)
    shares = np.bincount(scene.labels.ravel(), minlength=5) / scene.labels.size
    for code, (low, high) in SHARE_RANGES.items():
        assert low <= shares[code] <= high, f"{SCHEMA.names[code]}: {shares[code]:.3f} not in [{low}, {high}]"
    np.testing.assert_allclose(scene.class_shares(), shares)


def test_a_512_scene_has_every_class_in_plausible_shapes():
    labels = generate_scene(512, seed=0).labels
    assert set(np.unique(labels)) == {FIELD, FOREST, WATER, ROAD, BUILDING}

    # Buildings are separate compact rectangles, most of them near a road.
    houses, count = ndimage.label(labels == BUILDING)
    assert count >= 20
    boxes = ndimage.find_objects(houses)
    fill = [np.mean(houses[box] == i + 1) for i, box in enumerate(boxes)]
    assert np.median(fill) > 0.6
    to_road = ndimage.distance_transform_edt(labels != ROAD)
    assert np.median(to_road[labels == BUILDING]) < 0.5 * np.median(to_road[labels == FIELD])

    # Roads are long and thin: a road pixel is seldom more than a few pixels from the road's edge.
    road_depth = ndimage.distance_transform_edt(labels == ROAD)
    assert 1 <= road_depth.max() <= 20
    # Forest and water come in sizeable blobs, not salt-and-pepper.
    for code in (FOREST, WATER):
        blobs, _ = ndimage.label(labels == code)
        assert np.bincount(blobs.ravel())[1:].max() > 0.02 * labels.size


def test_colour_alone_separates_the_classes_only_partly():
    """A per-pixel nearest-class-mean colour classifier, fitted on one scene and tried on another, is far
    better than guessing but far from perfect: the classes need texture and shape as well."""
    train, test = generate_scene(256, seed=0), generate_scene(256, seed=1)
    pixels = train.image.reshape(3, -1).T.astype(float)
    means = np.stack([pixels[train.labels.ravel() == code].mean(axis=0) for code in range(5)])
    test_pixels, truth = test.image.reshape(3, -1).T.astype(float), test.labels.ravel()
    predicted = ((test_pixels[:, None, :] - means[None]) ** 2).sum(axis=-1).argmin(axis=1)

    accuracy = np.mean(predicted == truth)
    recall = [np.mean(predicted[truth == code] == code) for code in range(5)]
    majority_share = np.bincount(truth).max() / truth.size
    assert accuracy < 0.85
    assert accuracy > majority_share + 0.05
    assert np.mean(recall) > 0.45  # chance: 0.2


def test_vegetation_is_bright_and_water_dark_in_the_nir_band():
    rgb, more = generate_scene(128, seed=4, bands=3), generate_scene(128, seed=4, bands=6)
    assert more.image.shape == (6, 128, 128)
    assert more.band_names == ("red", "green", "blue", "nir", "swir", "ir_blend_0")
    np.testing.assert_array_equal(more.image[:3], rgb.image)  # extra bands leave RGB as it was
    np.testing.assert_array_equal(more.labels, rgb.labels)
    nir = more.image[3].astype(float)
    vegetation, water = np.isin(more.labels, [FIELD, FOREST]), more.labels == WATER
    assert nir[vegetation].mean() > nir[water].mean() + 60
    assert nir[vegetation].mean() > more.image[0][vegetation].mean()  # red-edge step of green plants


def test_nodata_cuts_out_part_of_the_same_scene():
    full, cut = generate_scene(96, seed=5), generate_scene(96, seed=5, nodata_fraction=0.25)
    missing = cut.labels == NODATA_LABEL
    assert missing.mean() == pytest.approx(0.25, abs=0.01)
    assert np.all(cut.image[:, missing] == NODATA_VALUE)
    np.testing.assert_array_equal(cut.image[:, ~missing], full.image[:, ~missing])
    np.testing.assert_array_equal(cut.labels[~missing], full.labels[~missing])
    assert cut.class_shares().sum() == pytest.approx(1.0)


@pytest.mark.parametrize("bands", [3, 5])
def test_written_geotiffs_read_back_with_their_georeference(tmp_path, bands):
    scene = generate_scene((64, 80), seed=2, bands=bands, nodata_fraction=0.1)
    image_path, mask_path = write_scene(
        scene,
        tmp_path / "img" / "a.tif",
        tmp_path / "mask" / "a.tif",
        crs="EPSG:32633",
        origin=(350000.0, 5600000.0),
        resolution=2.0,
    )
    expected_transform = from_origin(350000.0, 5600000.0, 2.0, 2.0)
    with rasterio.open(image_path) as src:
        assert (src.count, src.width, src.height, src.dtypes[0]) == (bands, 80, 64, "uint8")
        assert src.crs.to_epsg() == 32633 and src.transform == expected_transform
        assert src.nodata == NODATA_VALUE
        assert src.profile["tiled"] and src.compression.name == "deflate"
        assert src.descriptions == scene.band_names
        np.testing.assert_array_equal(src.read(), scene.image)
    with rasterio.open(mask_path) as src:
        assert (src.count, src.dtypes[0], src.nodata) == (1, "uint8", NODATA_LABEL)
        assert src.crs.to_epsg() == 32633 and src.transform == expected_transform
        assert src.colormap(1)[BUILDING][:3] == tuple(SCHEMA.palette[BUILDING])
        mask = src.read(1)
    np.testing.assert_array_equal(mask, scene.labels)
    np.testing.assert_array_equal(SCHEMA.decode(mask, unknown="error"), scene.labels)
    # Written under temporary names and renamed: nothing else is left behind.
    assert [p.name for p in (tmp_path / "img").iterdir()] == ["a.tif"]
    assert [p.name for p in (tmp_path / "mask").iterdir()] == ["a.tif"]


def test_dataset_scenes_are_neighbouring_tiles_of_one_region(synthetic_dataset):
    images = sorted((synthetic_dataset / "images").glob("*.tif"))
    masks = sorted((synthetic_dataset / "masks").glob("*.tif"))
    assert [p.name for p in images] == [f"scene_{i:03d}.tif" for i in range(6)] == [p.name for p in masks]
    assert "synthetic" in (synthetic_dataset / "README.txt").read_text()
    bounds, pictures = [], []
    for image, mask in zip(images, masks, strict=False):
        with rasterio.open(image) as src, rasterio.open(mask) as msrc:
            assert src.bounds == msrc.bounds and src.crs == msrc.crs
            assert (src.width, src.height) == (96, 96)
            bounds.append(src.bounds)
            pictures.append(src.read())
    assert len(set(bounds)) == 6
    assert bounds[1].left == bounds[0].right and bounds[1].top == bounds[0].top  # side by side
    assert not np.array_equal(pictures[0], pictures[1])


def test_fixture_scene_is_a_128_pixel_rgb_scene(synthetic_scene):
    assert synthetic_scene.image.shape == (3, 128, 128)
    assert synthetic_scene.labels.shape == (128, 128)


@pytest.mark.parametrize(
    "arguments", [dict(size=16, seed=0), dict(size=64, seed=0, bands=2), dict(size=64, seed=0, nodata_fraction=1.0)]
)
def test_impossible_requests_raise_config_errors(arguments):
    with pytest.raises(ConfigError):
        generate_scene(**arguments)
