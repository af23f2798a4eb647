import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from landseg.checkpoint import ModelCard
from landseg.classes import get_schema
from landseg.errors import ConfigError
from landseg.normalization import Normalization
from landseg.predict.blocks import TileGrid, scene_grid
from landseg.predict.core import predict_array
from landseg.predict.ensemble import Ensemble
from landseg.predict.networks import Member
from landseg.predict.options import PredictOptions
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
        assert row >= 0 and row + tile <= padded_h
        assert col >= 0 and col + tile <= padded_w
        coverage[row : row + tile, col : col + tile] += 1
    assert (coverage >= 1).all()
    rows = sorted({r for r, _ in windows})
    cols = sorted({c for _, c in windows})
    assert rows[-1] == padded_h - tile and cols[-1] == padded_w - tile
    # No gaps and no tile more than the stride from its predecessor.
    assert all(0 < b - a <= stride for a, b in itertools.pairwise(rows))
    assert all(0 < b - a <= stride for a, b in itertools.pairwise(cols))


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


# -- blending, as the inference core does it ---------------------------------------------------------
SCHEMA = get_schema("synthetic")
K = SCHEMA.num_classes


def raw_ensemble(network: torch.nn.Module, bands: int) -> Ensemble:
    """``network`` fed the pixels as they are: identity normalization, every band in order."""
    card = ModelCard(
        model={},
        schema=SCHEMA.to_dict(),
        normalization=Normalization(mean=(0.0,) * bands, std=(1.0,) * bands).to_dict(),
        bands=list(range(1, bands + 1)),
        tile_size=16,
    )
    return Ensemble([Member(card, network, Path("net.ckpt"))])


class LogProbabilities(torch.nn.Module):
    """Logits whose softmax is the input itself: every tile reports the same field where tiles overlap."""

    def forward(self, x):
        return torch.log(x)


class TileMean(torch.nn.Module):
    """Logits from each pixel and from the mean of its tile: every tile predicts probabilities of its own."""

    def __init__(self, bands: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.pixel = torch.nn.Conv2d(bands, K, 1)
        self.context = torch.nn.Conv2d(bands, K, 1)
        with torch.no_grad():
            self.context.weight.mul_(20.0)  # tiles differ a lot, so a wrong weight shows

    def forward(self, x):
        return self.pixel(x) + self.context(x.mean(dim=(-2, -1), keepdim=True))


def mirrored(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    """The image reflected outwards over everything the grid's tiles cover; its origin is ``-grid.margin``."""
    m = grid.margin
    bottom = grid.rows[-1] + grid.tile - image.shape[1]
    right = grid.cols[-1] + grid.tile - image.shape[2]
    return np.pad(image, ((0, 0), (m, bottom), (m, right)), mode="reflect")


def tile_probabilities(network: torch.nn.Module, image: np.ndarray, grid: TileGrid) -> dict:
    """Each grid tile's own softmax, one forward pass per tile, keyed by its scene origin."""
    padded, m, t = mirrored(image, grid), grid.margin, grid.tile
    result = {}
    with torch.no_grad():
        for row in grid.rows:
            for col in grid.cols:
                window = padded[:, row + m : row + m + t, col + m : col + m + t]
                logits = network(torch.from_numpy(np.ascontiguousarray(window))[None])
                result[row, col] = torch.softmax(logits, dim=1)[0].double().numpy()
    return result


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(8, 60),
    width=st.integers(8, 60),
    tile=st.integers(2, 8),
    overlap=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
    kind=st.sampled_from(BLEND_KINDS),
    block_width=st.integers(1, 40),
    batch_size=st.integers(1, 9),
)
def test_accumulated_weights_normalize_to_one(height, width, tile, overlap, kind, block_width, batch_size):
    # Every tile reports the same field, so any weighted average must give it back unchanged.
    rng = np.random.default_rng(height * 1000 + width)
    field = rng.dirichlet(np.ones(K), size=(height, width)).transpose(2, 0, 1).astype(np.float32) + 1e-3
    field /= field.sum(axis=0)
    options = PredictOptions(tile=tile, overlap=overlap, blend=kind, block_width=block_width, batch_size=batch_size)
    result = predict_array(field, raw_ensemble(LogProbabilities(), K), options).probabilities
    np.testing.assert_allclose(result, field, rtol=1e-5)


def test_blended_value_is_the_weighted_mean_of_the_covering_tiles():
    height, width, tile = 10, 13, 6
    weights = blend_weights(tile, "hann")
    image = np.random.default_rng(0).normal(size=(3, height, width)).astype(np.float32)
    network = TileMean(3)
    options = PredictOptions(tile=tile, overlap=0.5, blend="hann", batch_size=4, block_width=5)
    blended = predict_array(image, raw_ensemble(network, 3), options).probabilities
    grid = scene_grid(height, width, tile, 0.5)
    tiles = tile_probabilities(network, image, grid)
    assert len(tiles) > 4 and grid.margin > 0
    for y in range(height):
        for x in range(width):
            numerator = np.zeros(K)
            denominator = 0.0
            for (row, col), values in tiles.items():
                if row <= y < row + tile and col <= x < col + tile:
                    w = float(weights[y - row, x - col])
                    numerator += w * values[:, y - row, x - col]
                    denominator += w
            np.testing.assert_allclose(blended[:, y, x], numerator / denominator, rtol=1e-5)
    # The tiles' answers differ enough that a pixel's blend depends on which tiles and weights it takes.
    first, *others = tiles.values()
    assert max(np.abs(first - other).max() for other in others) > 0.1


def test_predict_options_and_the_command_line_import_without_scipy_signal():
    """SciPy's signal package (only the blend windows need it) takes seconds to import: ``landseg --help``
    and building ``PredictOptions`` must not pay for it."""
    code = (
        "import sys, landseg.cli.main, landseg.predict.options, landseg.predict.blocks; "
        "assert 'scipy.signal' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
