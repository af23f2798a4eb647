"""Minimum mapping unit: block-wise result against a brute-force, whole-map reference."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from landseg.classes import IGNORE_INDEX
from landseg.errors import ConfigError
from landseg.maps.cleanup import remove_small_regions, remove_small_regions_raster

K = 4


def brute_force(index: np.ndarray, min_area: int) -> np.ndarray:
    """Round after round, every small region (all decided at once) takes the class most of its
    neighbouring pixels in large regions have, until nothing changes."""
    height, width = index.shape
    current = index.copy()
    while True:
        size = np.zeros(index.shape, dtype=int)
        labels = np.zeros(index.shape, dtype=int)
        count = 0
        for value in range(K):
            regions, n = ndimage.label(current == value)
            inside = regions > 0
            labels[inside] = regions[inside] + count
            size[inside] = np.bincount(regions.ravel())[regions[inside]]
            count += n
        result = current.copy()
        for region in range(1, count + 1):
            pixels = np.argwhere(labels == region)
            if len(pixels) >= min_area:
                continue
            votes = np.zeros(K, dtype=int)
            for r, c in pixels:
                for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    rr, cc = r + dr, c + dc
                    inside = 0 <= rr < height and 0 <= cc < width
                    if inside and labels[rr, cc] not in (0, region) and size[rr, cc] >= min_area:
                        votes[current[rr, cc]] += 1
            if votes.sum():
                result[labels == region] = votes.argmax()
        if (result == current).all():
            return result
        current = result


def blotchy_map(shape, seed: int, nodata: bool = True) -> np.ndarray:
    """Large smooth regions with speckle and thin lines, some of them crossing block borders."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, K, size=(shape[0] // 9 + 1, shape[1] // 9 + 1))
    index = coarse.repeat(9, 0).repeat(9, 1)[: shape[0], : shape[1]].astype(np.uint8)
    speckle = rng.random(shape) < 0.08
    index[speckle] = rng.integers(0, K, size=speckle.sum())
    index[shape[0] // 3, 5:-5] = 2  # a long thin line: large in area, one pixel wide
    index[5:-5, shape[1] // 2] = 3
    if nodata:
        index[-7:, :11] = IGNORE_INDEX
    return index


@pytest.mark.parametrize("min_area", [2, 5, 30])
@pytest.mark.parametrize("block", [7, 16, 1000])
def test_blockwise_equals_brute_force(min_area, block):
    index = blotchy_map((53, 61), seed=min_area)
    expected = brute_force(index, min_area)
    result = remove_small_regions(index, K, min_area, block=block)
    np.testing.assert_array_equal(result, expected)
    assert (result != index).any()


def test_only_small_regions_change_and_no_data_stays():
    index = blotchy_map((60, 70), seed=3)
    result = remove_small_regions(index, K, 12, block=16)
    assert ((result == IGNORE_INDEX) == (index == IGNORE_INDEX)).all()
    region_size = np.zeros(index.shape, dtype=int)
    for value in range(K):
        regions, _ = ndimage.label(index == value)
        sizes = np.bincount(regions.ravel())
        region_size[regions > 0] = sizes[regions[regions > 0]]
    changed = result != index
    assert changed.sum() > 50
    assert (region_size[changed] < 12).all()
    # Every region left is large, or touches no large region.
    for value in range(K):
        regions, _ = ndimage.label(result == value)
        assert np.bincount(regions.ravel())[1:].min() >= 12
    # The long one-pixel lines are large regions and survive though every block sees only a piece.
    np.testing.assert_array_equal(result[20, 5:-5], index[20, 5:-5])
    np.testing.assert_array_equal(result[5:-5, 35], index[5:-5, 35])


def test_a_region_with_no_valid_neighbour_keeps_its_class():
    index = np.full((9, 9), IGNORE_INDEX, dtype=np.uint8)
    index[3:5, 3:5] = 1
    np.testing.assert_array_equal(remove_small_regions(index, K, 100, block=4), index)


def test_file_to_file_matches_in_memory(tmp_path):
    index = blotchy_map((70, 90), seed=9)
    profile = dict(
        driver="GTiff",
        width=90,
        height=70,
        count=1,
        dtype="uint8",
        tiled=True,
        blockxsize=16,
        blockysize=16,
        crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 0.0, 0.0, -10.0, 700.0),
    )
    with rasterio.open(tmp_path / "in.tif", "w", **profile) as dst:
        dst.write(index, 1)
    with rasterio.open(tmp_path / "other.tif", "w", **profile):
        pass
    final = remove_small_regions_raster(tmp_path / "in.tif", tmp_path / "other.tif", K, 10, block=32)
    with rasterio.open(final) as src:
        result = src.read(1)
    expected = brute_force(index, 10)
    np.testing.assert_array_equal(result, expected)
    assert (expected != index).any()


def test_bad_minimum_area_is_refused():
    with pytest.raises(ConfigError):
        remove_small_regions(np.zeros((3, 3), dtype=np.uint8), K, 0)
