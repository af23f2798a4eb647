"""The streamed engine against brute-force references: tile cover, blend weights, equality, seams."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from landseg.checkpoint import ModelCard
from landseg.classes import get_schema
from landseg.normalization import Normalization
from landseg.predict.blocks import column_blocks, read_reflected, reflect_indices, scene_grid
from landseg.predict.ensemble import Ensemble, Member, TorchNetwork
from landseg.predict.streaming import Chunk, RollingBlend, most_likely_class, stream_probabilities
from landseg.predict.tiling import blend_weights

SCHEMA = get_schema("synthetic")
K = SCHEMA.num_classes
NORMALIZATION = Normalization(mean=(120.0, 100.0, 80.0), std=(40.0, 50.0, 30.0))


def conv_net(layers: int = 1, seed: int = 0) -> torch.nn.Module:
    """``layers`` 3x3 convolutions: each pixel sees ``layers`` pixels around it."""
    torch.manual_seed(seed)
    modules, channels = [], 3
    for i in range(layers):
        out = K if i == layers - 1 else 8
        modules += [torch.nn.Conv2d(channels, out, 3, padding=1)] + ([torch.nn.ReLU()] if i < layers - 1 else [])
        channels = out
    net = torch.nn.Sequential(*modules)
    with torch.no_grad():
        net[-1].weight.mul_(4.0)  # confident predictions, so a wrong blend shows
    return net.eval()


def ensemble_of(net: torch.nn.Module, tile: int) -> Ensemble:
    card = ModelCard(
        model={}, schema=SCHEMA.to_dict(), normalization=NORMALIZATION.to_dict(), bands=[1, 2, 3], tile_size=tile
    )
    return Ensemble([Member(card, TorchNetwork(net, precision="fp32", channels_last=False), Path("net.ckpt"))])


def write_raster(path: Path, data: np.ndarray, nodata=None) -> Path:
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs="EPSG:32632",
        transform=Affine(2.0, 0.0, 400_000.0, 0.0, -2.0, 5_000_000.0),
        nodata=nodata,
        tiled=True,
        blockxsize=16,
        blockysize=16,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(11)
    coarse = rng.integers(0, 256, size=(3, 12, 14))
    data = np.clip(coarse.repeat(8, 1).repeat(8, 2)[:, :91, :107] + rng.normal(0, 20, (3, 91, 107)), 0, 255)
    data = data.astype(np.uint8)
    return write_raster(tmp_path_factory.mktemp("scene") / "scene.tif", data), data


def streamed(path: Path, ensemble: Ensemble, tile: int, overlap: float, blend: str, batch: int, block: int):
    with rasterio.open(path) as dataset:
        plan = ensemble.plan(dataset.count, dataset.descriptions, path)
        grid = scene_grid(dataset.height, dataset.width, tile, overlap)
        result = np.full((K, dataset.height, dataset.width), np.nan, dtype=np.float32)
        for chunk in stream_probabilities(dataset, ensemble, plan, grid, blend_weights(tile, blend), batch, block):
            (r0, r1), (c0, c1) = chunk.rows, chunk.cols
            assert np.isnan(result[:, r0:r1, c0:c1]).all(), "a pixel was written twice"
            result[:, r0:r1, c0:c1] = chunk.probabilities
    assert not np.isnan(result).any(), "a pixel was never written"
    return result


def padded_reference(net, data: np.ndarray, tile: int, overlap: float, blend: str) -> np.ndarray:
    """One whole-scene computation: the scene normalized and mirrored by the grid's margin in memory, every
    tile of the grid run through ``net`` and added with its weights to one canvas, divided by the weight sums."""
    grid = scene_grid(data.shape[1], data.shape[2], tile, overlap)
    m = grid.margin
    bottom, right = grid.rows[-1] + tile - data.shape[1], grid.cols[-1] + tile - data.shape[2]
    padded = np.pad(NORMALIZATION.apply(data), ((0, 0), (m, bottom), (m, right)), mode="reflect")
    weights = blend_weights(tile, blend).astype(np.float64)
    sums = np.zeros((K, *padded.shape[1:]))
    weight_sums = np.zeros(padded.shape[1:])
    with torch.no_grad():
        for row in grid.rows:
            for col in grid.cols:
                r, c = row + m, col + m
                window = torch.from_numpy(np.ascontiguousarray(padded[None, :, r : r + tile, c : c + tile]))
                sums[:, r : r + tile, c : c + tile] += weights * torch.softmax(net(window), 1)[0].double().numpy()
                weight_sums[r : r + tile, c : c + tile] += weights
    return (sums / weight_sums)[:, m : m + data.shape[1], m : m + data.shape[2]]


@pytest.mark.parametrize(
    "blend, overlap, tile, block, batch",
    [
        ("hann", 0.5, 16, 40, 3),
        ("gaussian", 0.75, 32, 50, 16),
        ("uniform", 0.0, 16, 16, 4),
        ("hann", 0.5, 16, 10_000, 1),
        ("uniform", 0.5, 16, 30, 7),
        ("gaussian", 0.25, 16, 50, 2),
    ],
)
def test_streamed_blocks_equal_the_whole_scene_in_memory(scene, blend, overlap, tile, block, batch):
    path, data = scene
    net = conv_net(layers=2)
    result = streamed(path, ensemble_of(net, tile), tile, overlap, blend, batch, block)
    np.testing.assert_allclose(result, padded_reference(net, data, tile, overlap, blend), atol=2e-5)
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)


def test_blocks_streamed_separately_add_up_to_the_whole_scene(scene):
    path, _data = scene
    net = conv_net(layers=2)
    ensemble = ensemble_of(net, 16)
    whole = streamed(path, ensemble, 16, 0.5, "hann", 3, 40)
    with rasterio.open(path) as dataset:
        plan = ensemble.plan(dataset.count, dataset.descriptions, path)
        grid = scene_grid(dataset.height, dataset.width, 16, 0.5)
        pieces = np.full_like(whole, np.nan)
        for block in column_blocks(grid, 40)[::-1]:  # any order, one block at a time
            for chunk in stream_probabilities(
                dataset, ensemble, plan, grid, blend_weights(16, "hann"), 3, blocks=[block]
            ):
                (r0, r1), (c0, c1) = chunk.rows, chunk.cols
                pieces[:, r0:r1, c0:c1] = chunk.probabilities
    np.testing.assert_array_equal(pieces, whole)


@pytest.mark.parametrize(
    "height, width, tile, overlap",
    [(91, 107, 16, 0.5), (5, 300, 32, 0.25), (1, 1, 8, 0.5), (40, 33, 40, 0.0), (64, 64, 16, 0.75)],
)
def test_tiles_cover_the_padded_scene_exactly(height, width, tile, overlap):
    grid = scene_grid(height, width, tile, overlap)
    m = grid.margin
    for origins, length in ((grid.rows, height), (grid.cols, width)):
        extent = max(length + 2 * m, tile)
        assert origins[0] == -m and origins[-1] + tile == -m + extent  # flush with both padded edges
        assert all(0 < b - a <= grid.stride for a, b in itertools.pairwise(origins))  # no gaps, no repeats
    covered = np.zeros((height, width), dtype=int)
    for block in column_blocks(grid, block_width=3 * grid.stride):
        for row in grid.rows:
            for col in block.tile_cols:
                top, left = max(row, 0), max(col, block.start)
                covered[top : row + tile, left : min(col + tile, block.stop)] += 1
    assert covered.min() >= 1
    blocks = column_blocks(grid, block_width=3 * grid.stride)
    assert blocks[0].start == 0 and blocks[-1].stop == width
    assert all(a.stop == b.start for a, b in itertools.pairwise(blocks))
    for block in blocks:  # a block lists exactly the tile columns that reach its columns
        assert set(block.tile_cols) == {c for c in grid.cols if c < block.stop and c + tile > block.start}


@pytest.mark.parametrize("blend", ["uniform", "hann", "gaussian"])
def test_blend_weights_of_all_tiles_sum_to_one_everywhere(blend):
    tile, height, width = 12, 30, 41
    grid = scene_grid(height, width, tile, 0.5)
    tiles = [(r, c) for r in grid.rows for c in grid.cols]
    weights = blend_weights(tile, blend)
    # Each tile "predicts" its own id with certainty: the blend then returns every tile's share of a pixel.
    accumulator = RollingBlend(len(tiles), weights, grid.rows[0], grid.cols[0], grid.cols[-1] + tile - grid.cols[0])
    shares = []
    for i, row in enumerate(grid.rows):
        for j, col in enumerate(grid.cols):
            one_hot = np.zeros((len(tiles), tile, tile), dtype=np.float32)
            one_hot[i * len(grid.cols) + j] = 1.0
            accumulator.add(row, col, one_hot)
        shares.append(accumulator.release(grid.rows[i + 1] if i + 1 < len(grid.rows) else row + tile))
    shares = np.concatenate(shares, axis=1)
    np.testing.assert_allclose(shares.sum(axis=0), 1.0, atol=1e-6)
    # Brute force: a tile's share of a pixel is its weight there over all covering tiles' weights.
    total = np.zeros(shares.shape[1:])
    placed = np.zeros_like(shares)
    for t, (row, col) in enumerate(tiles):
        r, c = row - grid.rows[0], col - grid.cols[0]
        placed[t, r : r + tile, c : c + tile] = weights
        total[r : r + tile, c : c + tile] += weights
    np.testing.assert_allclose(shares, placed / total, atol=1e-6)


@pytest.mark.parametrize("length", [1, 2, 3, 7])
def test_reflected_reads_match_numpy_reflect_padding(tmp_path, length):
    data = np.arange(3 * length * 5, dtype=np.uint16).reshape(3, length, 5)
    path = write_raster(tmp_path / "small.tif", data)
    pad = 9
    expected = np.pad(data, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    np.testing.assert_array_equal(
        reflect_indices(np.arange(-pad, length + pad), length), np.pad(np.arange(length), pad, mode="reflect")
    )
    with rasterio.open(path) as dataset:
        for rows, cols in [((-pad, length + pad), (-pad, 5 + pad)), ((0, length), (1, 4)), ((-2, 1), (3, 5 + 4))]:
            window = read_reflected(dataset, [1, 2, 3], rows, cols)
            wanted = expected[:, rows[0] + pad : rows[1] + pad, cols[0] + pad : cols[1] + pad]
            np.testing.assert_array_equal(window, wanted)


def dilated_net(seed: int = 2) -> torch.nn.Module:
    """Four 3x3 convolutions dilated 1, 2, 4, 1: each pixel depends on the 8 pixels around it."""
    torch.manual_seed(seed)
    layers = []
    for i, (dilation, out) in enumerate([(1, 8), (2, 8), (4, 8), (1, K)]):
        layers.append(torch.nn.Conv2d(3 if i == 0 else 8, out, 3, padding=dilation, dilation=dilation))
        if out != K:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def distance_to_tile_borders(grid, height: int, width: int) -> np.ndarray:
    """Per pixel, the distance to the nearest border of any tile covering it."""
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    result = np.full((height, width), np.inf)
    for r in grid.rows:
        for c in grid.cols:
            inside = (rows >= r) & (rows < r + grid.tile) & (cols >= c) & (cols < c + grid.tile)
            to_rows = np.minimum(rows - r, r + grid.tile - 1 - rows)
            distance = np.minimum(to_rows, np.minimum(cols - c, c + grid.tile - 1 - cols))
            result = np.where(inside, np.minimum(result, distance), result)
    return result


def test_streamed_prediction_matches_one_pass_and_has_no_seams(tmp_path):
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, (3, 20, 24)).repeat(8, 1).repeat(8, 2)
    data = np.clip(blocks + rng.normal(0, 25, (3, 160, 192)), 0, 255).astype(np.uint8)
    path = write_raster(tmp_path / "scene.tif", data)
    # The pixels a prediction depends on reach 8 % of the tile, about as far as a U-Net's border effects.
    net, reach, tile = dilated_net(), 8, 96
    with torch.no_grad():
        one_pass = torch.softmax(net(torch.from_numpy(NORMALIZATION.apply(data))[None]), 1)[0].numpy()
    height, width = data.shape[1:]
    # Near the image edge the one pass sees zero padding and the tiles see the mirrored scene.
    away_from_edges = np.zeros((height, width), dtype=bool)
    away_from_edges[reach:-reach, reach:-reach] = True

    def seam_and_interior_rates(overlap: float, blend: str) -> tuple[float, float, np.ndarray, object]:
        result = streamed(path, ensemble_of(net, tile), tile, overlap, blend, batch=4, block=70)
        disagree = result.argmax(0) != one_pass.argmax(0)
        grid = scene_grid(height, width, tile, overlap)
        near_border = distance_to_tile_borders(grid, height, width) < grid.stride / 4
        return (
            disagree[near_border & away_from_edges].mean(),
            disagree[~near_border & away_from_edges].mean(),
            result,
            grid,
        )

    for blend in ("gaussian", "hann"):
        seam_rate, interior_rate, result, grid = seam_and_interior_rates(0.5, blend)
        assert seam_rate <= interior_rate + 0.002
    # Where every tile covering a pixel sees all the pixel depends on, the probabilities are the one-pass ones.
    full_context = (distance_to_tile_borders(grid, height, width) >= reach) & away_from_edges
    assert full_context.mean() > 0.05
    np.testing.assert_allclose(result[:, full_context], one_pass[:, full_context], atol=1e-5)
    assert (result.argmax(0) == one_pass.argmax(0))[away_from_edges].mean() > 0.99
    # Tiles that do not overlap do leave seams, and the same measure sees them: the test can fail.
    seam_rate, interior_rate, _, _ = seam_and_interior_rates(0.0, "uniform")
    assert seam_rate > interior_rate + 0.01
    seam_rate, interior_rate, _, _ = seam_and_interior_rates(0.5, "uniform")
    assert seam_rate > interior_rate + 0.01


def test_most_likely_class_is_argmax_with_ties_to_the_lower_class():
    rng = np.random.default_rng(3)
    # Probabilities on a coarse grid, so many pixels tie between two or more classes.
    probabilities = rng.integers(0, 4, size=(6, 40, 50)).astype(np.float32) / 4
    index = most_likely_class(probabilities)
    assert index.dtype == np.uint8
    np.testing.assert_array_equal(index, probabilities.argmax(axis=0))
    assert (probabilities.max(axis=0) == np.sort(probabilities, axis=0)[-2]).any()  # ties were there


def test_chunk_classes_mark_no_data():
    probabilities = np.zeros((3, 2, 2), dtype=np.float32)
    probabilities[2] = 1.0
    valid = np.array([[True, False], [True, True]])
    chunk = Chunk((0, 2), (0, 2), probabilities, valid)
    np.testing.assert_array_equal(chunk.classes(255), [[2, 255], [2, 2]])
