import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landseg.errors import ConfigError
from landseg.predict.sliding import BlendAccumulator
from landseg.predict.tiling import (
    BLEND_KINDS,
    MIN_BLEND_WEIGHT,
    blend_weights,
    tile_origins,
    tile_stride,
    tile_windows,
)


@pytest.mark.parametrize(
    "length, tile, stride, expected",
    [
        (10, 4, 3, [0, 3, 6]),  # 6 + 4 == 10: the regular grid already ends flush
        (11, 4, 3, [0, 3, 6, 7]),  # one extra tile pulled back to the edge
        (4, 4, 2, [0]),
        (3, 4, 2, [0]),  # smaller than a tile: one tile, padded by the caller
        (1000, 512, 256, [0, 256, 488]),
        (9, 1, 4, [0, 4, 8]),
    ],
)
def test_tile_origins_hand_computed(length, tile, stride, expected):
    assert tile_origins(length, tile, stride) == expected


def test_stride_is_rounded_tile_times_one_minus_overlap():
    assert tile_stride(512, 0.5) == 256
    assert tile_stride(512, 0.0) == 512
    assert tile_stride(100, 0.25) == 75
    assert tile_stride(10, 0.99) == 1  # never a zero step
    with pytest.raises(ConfigError, match="overlap"):
        tile_stride(512, 1.0)
    with pytest.raises(ConfigError, match="overlap"):
        tile_stride(512, -0.1)
    with pytest.raises(ConfigError, match="tile size"):
        tile_stride(0, 0.5)


@settings(max_examples=150, deadline=None)
@given(
    height=st.integers(1, 120),
    width=st.integers(1, 120),
    tile=st.integers(1, 48),
    overlap=st.floats(0.0, 0.9),
)
def test_tiles_cover_the_image_exactly(height, width, tile, overlap):
    windows = tile_windows(height, width, tile, overlap)
    stride = tile_stride(tile, overlap)
    assert len(set(windows)) == len(windows)
    padded_h, padded_w = max(height, tile), max(width, tile)
    coverage = np.zeros((padded_h, padded_w), dtype=int)
    for row, col in windows:
        assert 0 <= row and row + tile <= padded_h
        assert 0 <= col and col + tile <= padded_w
        coverage[row : row + tile, col : col + tile] += 1
    assert (coverage >= 1).all()
    rows = sorted({r for r, _ in windows})
    cols = sorted({c for _, c in windows})
    assert rows[-1] == padded_h - tile and cols[-1] == padded_w - tile
    # No gaps and no tile more than the stride from its predecessor.
    assert all(0 < b - a <= stride for a, b in zip(rows, rows[1:]))
    assert all(0 < b - a <= stride for a, b in zip(cols, cols[1:]))


def test_image_smaller_than_tile_gets_one_window():
    assert tile_windows(5, 300, 512, 0.5) == [(0, 0)]
    assert tile_windows(600, 100, 512, 0.5) == [(0, 0), (88, 0)]


@pytest.mark.parametrize("kind", BLEND_KINDS)
@pytest.mark.parametrize("tile", [1, 2, 7, 64])
def test_blend_weights_are_positive_symmetric_and_peak_in_the_centre(kind, tile):
    weights = blend_weights(tile, kind)
    assert weights.shape == (tile, tile) and weights.dtype == np.float32
    assert weights.min() >= MIN_BLEND_WEIGHT and weights.max() == pytest.approx(1.0)
    np.testing.assert_allclose(weights, weights.T)
    np.testing.assert_allclose(weights, weights[::-1, ::-1])
    centre = tile // 2
    assert weights[centre, centre] == pytest.approx(weights.max())


@pytest.mark.parametrize("kind", ["hann", "gaussian"])
def test_smooth_blends_fall_towards_the_border(kind):
    weights = blend_weights(32, kind)
    middle_row = weights[16]
    assert (np.diff(middle_row[:17]) >= 0).all() and (np.diff(middle_row[16:]) <= 0).all()
    assert weights[0, 0] < 0.01 * weights[16, 16]


def test_unknown_blend_is_refused():
    with pytest.raises(ConfigError, match="hann"):
        blend_weights(8, "cosine")


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(8, 60),
    width=st.integers(8, 60),
    tile=st.integers(2, 8),
    overlap=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
    kind=st.sampled_from(BLEND_KINDS),
)
def test_accumulated_weights_normalize_to_one(height, width, tile, overlap, kind):
    # Every tile reports the same field, so any weighted average must give it back unchanged.
    field = np.random.default_rng(height * 1000 + width).random((3, height, width), dtype=np.float32)
    accumulator = BlendAccumulator(3, height, width, blend_weights(tile, kind))
    for row, col in tile_windows(height, width, tile, overlap):
        accumulator.add(row, col, field[:, row : row + tile, col : col + tile])
    np.testing.assert_allclose(accumulator.result(), field, rtol=1e-5)


def test_blended_value_is_the_weighted_mean_of_the_covering_tiles():
    height, width, tile = 10, 13, 6
    weights = blend_weights(tile, "hann")
    windows = tile_windows(height, width, tile, 0.5)
    rng = np.random.default_rng(0)
    tiles = [rng.random((2, tile, tile), dtype=np.float32) for _ in windows]
    accumulator = BlendAccumulator(2, height, width, weights)
    for (row, col), values in zip(windows, tiles):
        accumulator.add(row, col, values)
    blended = accumulator.result()
    for y in range(height):
        for x in range(width):
            numerator = np.zeros(2)
            denominator = 0.0
            for (row, col), values in zip(windows, tiles):
                if row <= y < row + tile and col <= x < col + tile:
                    w = float(weights[y - row, x - col])
                    numerator += w * values[:, y - row, x - col]
                    denominator += w
            np.testing.assert_allclose(blended[:, y, x], numerator / denominator, rtol=1e-5)
