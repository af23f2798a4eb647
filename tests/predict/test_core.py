"""The inference core (``predict_array``, and ``predict_scene`` on written files) against hand-computed and
brute-force references: the card applied exactly, no-data, bands, input scale, sliding-window blending, batch
size, TTA, coarse networks and refused options."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from tests.helpers import write_geotiff

from landseg.checkpoint import ModelCard
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.errors import CheckpointError, ConfigError, DataError, LandsegError
from landseg.io.pixel_stats import pixel_stats
from landseg.normalization import Normalization
from landseg.predict import core, engine
from landseg.predict.blocks import TileGrid, scene_grid
from landseg.predict.core import ArrayPrediction, predict_array
from landseg.predict.engine import predict_scene
from landseg.predict.ensemble import Ensemble
from landseg.predict.networks import Member, TorchNetwork
from landseg.predict.options import PredictOptions
from landseg.predict.tta import tta_transforms

SCHEMA = get_schema("synthetic")
K = SCHEMA.num_classes
NORMALIZATION = Normalization(mean=(100.0, 50.0), std=(50.0, 25.0))
BANDS = [3, 1]  # model input order differs from file order on purpose
BAND_NAMES = ["nir", "blue"]
GRID = Affine(2.0, 0.0, 500_000.0, 0.0, -2.0, 5_000_000.0)


# -- the card: bands, normalization, classes ---------------------------------------------------------
def pointwise_card(input_scale: float = 1.0, tile_size: int = 16, input_stats: dict | None = None) -> ModelCard:
    return ModelCard(
        model={"architecture": "test-pointwise"},
        schema=SCHEMA.to_dict(),
        normalization=NORMALIZATION.to_dict(),
        bands=BANDS,
        band_names=BAND_NAMES,
        input_scale=input_scale,
        tile_size=tile_size,
        input_stats=input_stats,
    )


def pointwise_conv() -> torch.nn.Conv2d:
    torch.manual_seed(0)
    return torch.nn.Conv2d(len(BANDS), K, kernel_size=1).eval()


def pointwise_ensemble(network: torch.nn.Module | None = None, **card_options) -> Ensemble:
    network = network if network is not None else pointwise_conv()
    member = Member(
        pointwise_card(**card_options), TorchNetwork(network, channels_last=False), Path("runs/pointwise.ckpt")
    )
    return Ensemble([member])


def conv_of(ensemble: Ensemble) -> torch.nn.Conv2d:
    network = ensemble.members[0].network.network
    return network.network if isinstance(network, ShapeRecorder) else network


def expected_classes(conv: torch.nn.Conv2d, data: np.ndarray) -> np.ndarray:
    """Hand-computed: pick the card's bands, normalize, apply the 1x1 convolution, argmax."""
    selected = data[[b - 1 for b in BANDS]].astype(np.float64)
    mean = np.array(NORMALIZATION.mean)[:, None, None]
    std = np.array(NORMALIZATION.std)[:, None, None]
    normalized = (selected - mean) / std
    weight = conv.weight.detach().double().numpy()[:, :, 0, 0]
    bias = conv.bias.detach().double().numpy()
    logits = np.einsum("kc,chw->khw", weight, normalized) + bias[:, None, None]
    return logits.argmax(axis=0)


def random_scene(height: int = 37, width: int = 29, bands: int = 4, seed: int = 7) -> np.ndarray:
    # From 1, so that no pixel is 0 in every band by chance: 0 is the no-data value below.
    return np.random.default_rng(seed).integers(1, 200, size=(bands, height, width)).astype(np.uint16)


def write_tif(path: Path, data: np.ndarray, nodata=None, descriptions=None) -> Path:
    return write_geotiff(path, data, transform=GRID, nodata=nodata, descriptions=descriptions)


def test_predicts_what_the_card_describes():
    ensemble = pointwise_ensemble()
    data = random_scene()
    prediction = predict_array(data, ensemble, PredictOptions(overlap=0.5))
    assert isinstance(prediction, ArrayPrediction) and prediction.valid is None
    assert prediction.probabilities.dtype == np.float32 and prediction.probabilities.shape == (K, 37, 29)
    classes = prediction.probabilities.argmax(axis=0)
    np.testing.assert_array_equal(classes, expected_classes(conv_of(ensemble), data))
    assert len(np.unique(classes)) > 1
    np.testing.assert_allclose(prediction.probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_bands_are_matched_by_name_else_by_index_and_options_override_both():
    ensemble = pointwise_ensemble()
    data = random_scene()
    expected = expected_classes(conv_of(ensemble), data)
    # The card's nir (band 3 of ``data``) and blue (band 1) now sit at bands 4 and 2.
    shuffled = np.ascontiguousarray(data[[1, 0, 3, 2]])
    by_name = predict_array(shuffled, ensemble, descriptions=("red", " Blue", "green", "NIR"))
    np.testing.assert_array_equal(by_name.probabilities.argmax(0), expected)
    by_index = predict_array(shuffled, ensemble)  # no names: the card's indices 3 and 1, the wrong bands here
    assert (by_index.probabilities.argmax(0) != expected).any()
    chosen = predict_array(shuffled, ensemble, PredictOptions(bands=(4, 2)), descriptions=("a", "b", "c", "d"))
    np.testing.assert_array_equal(chosen.probabilities.argmax(0), expected)


def test_no_data_value_marks_pixels_invalid():
    ensemble = pointwise_ensemble()
    data = random_scene()
    data[:, :5, :] = 0
    data[:, 20, 3] = 0
    data[0, 30, 10] = 0  # one band only: still a valid pixel
    valid = np.ones(data.shape[1:], dtype=bool)
    valid[:5, :] = False
    valid[20, 3] = False
    expected = expected_classes(conv_of(ensemble), data)
    for prediction in (
        predict_array(data, ensemble, nodata=0),
        predict_array(data, ensemble, PredictOptions(nodata=0)),
    ):
        np.testing.assert_array_equal(prediction.valid, valid)
        np.testing.assert_array_equal(prediction.probabilities.argmax(0)[valid], expected[valid])
        np.testing.assert_allclose(prediction.probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert predict_array(data, ensemble).valid is None  # without a no-data value 0 is a pixel like any other


def test_nan_and_inf_in_float_input_mark_pixels_invalid():
    ensemble = pointwise_ensemble()
    data = random_scene().astype(np.float32)
    data[2, 4, 5] = np.nan  # one of the model's bands
    data[:, 30:, 20:] = np.nan
    data[0, 0, 0] = np.inf
    valid = np.isfinite(data).all(axis=0)
    prediction = predict_array(data, ensemble)
    np.testing.assert_array_equal(prediction.valid, valid)
    # NaN does not spread: every probability is finite and valid pixels keep their hand-computed class.
    assert np.isfinite(prediction.probabilities).all()
    np.testing.assert_array_equal(
        prediction.probabilities.argmax(0)[valid], expected_classes(conv_of(ensemble), data)[valid]
    )


def test_too_few_bands_names_the_file_the_counts_and_the_model(tmp_path):
    ensemble = pointwise_ensemble()
    with pytest.raises(DataError) as caught:
        predict_array(random_scene(bands=2), ensemble, source="/data/tiny_rgb.tif")
    message = str(caught.value)
    assert isinstance(caught.value, LandsegError) and caught.value.path == "/data/tiny_rgb.tif"
    assert "has 2 bands" in message and "3 bands expected" in message and "pointwise.ckpt" in message
    path = write_tif(tmp_path / "tiny_rgb.tif", random_scene(bands=2))
    with pytest.raises(DataError) as caught:
        predict_scene(path, ensemble, tmp_path / "out")
    assert caught.value.path == str(path) and "has 2 bands" in str(caught.value)
    assert not (tmp_path / "out" / "tiny_rgb_classes.tif").exists()


def test_predict_scene_reads_the_file_its_band_names_and_its_no_data(tmp_path):
    ensemble = pointwise_ensemble()
    data = random_scene(height=20, width=24)
    data[:, :3, :7] = 0
    valid = ~(data == 0).all(axis=0)
    expected = expected_classes(conv_of(ensemble), data)
    path = write_tif(tmp_path / "scene.tif", data[[1, 0, 3, 2]], nodata=0, descriptions=["red", "blue", "g", "nir"])
    result = predict_scene(path, ensemble, tmp_path / "out", PredictOptions(confidence=True, preview=False))
    with rasterio.open(result.paths["classes"]) as src:
        classes = src.read(1)
    np.testing.assert_array_equal(classes[valid], expected[valid])
    assert (classes[~valid] == IGNORE_INDEX).all()
    with rasterio.open(result.paths["confidence"]) as src:
        confidence = src.read(1)
        assert (confidence[~valid] == src.nodata).all()
        assert (confidence[valid] * src.scales[0] > 1 / K).all()


class ShapeRecorder(torch.nn.Module):
    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.inputs: list[tuple[int, ...]] = []

    def forward(self, x):
        self.inputs.append(tuple(x.shape))
        return self.network(x)


def test_input_scale_resamples_tile_by_tile():
    recorder = ShapeRecorder(pointwise_conv())
    ensemble = pointwise_ensemble(recorder, input_scale=0.5, tile_size=8)
    # Blocks of constant values: halving and restoring keeps each block's class away from its edges.
    blocks = np.random.default_rng(3).integers(0, 200, size=(4, 3, 4)).astype(np.uint16)
    data = blocks.repeat(16, axis=1).repeat(16, axis=2)[:, :47, :]  # 47 x 64: odd height on purpose
    prediction = predict_array(data, ensemble, PredictOptions(overlap=0.5, batch_size=100))
    assert prediction.probabilities.shape == (K, 47, 64)
    # 16 px tiles of the scene, each seen by the network at 8 px: the card's tile at the card's scale.
    assert {shape[1:] for shape in recorder.inputs} == {(2, 8, 8)}
    assert sum(shape[0] for shape in recorder.inputs) == scene_grid(47, 64, 16, 0.5).tile_count
    block_interiors = np.zeros((47, 64), dtype=bool)
    for r in range(3):
        for c in range(4):
            block_interiors[r * 16 + 4 : r * 16 + 12, c * 16 + 4 : c * 16 + 12] = True
    classes = prediction.probabilities.argmax(0)
    expected = expected_classes(recorder.network, data)
    np.testing.assert_array_equal(classes[block_interiors], expected[block_interiors])
    assert len(np.unique(expected[block_interiors])) > 1


# -- the sliding window ------------------------------------------------------------------------------
C = 3  # bands of the sliding-window tests, taken as they are (identity normalization)


def conv_net(kernel_size: int, seed: int = 0, symmetry: str | None = None, out: int = K) -> torch.nn.Module:
    """A single convolution: translation-equivariant; ``symmetry`` makes it flip- or D4-equivariant."""
    torch.manual_seed(seed)
    net = torch.nn.Conv2d(C, out, kernel_size, padding=kernel_size // 2)
    with torch.no_grad():
        weight = net.weight
        if symmetry in ("flips", "d4"):
            weight.copy_((weight + weight.flip(-1) + weight.flip(-2) + weight.flip(-2, -1)) / 4)
        if symmetry == "d4":
            weight.copy_((weight + weight.transpose(-2, -1)) / 2)
        weight.mul_(3.0)  # sharper softmax, so a wrong blend shows
    return net.eval()


def identity(bands: int) -> Normalization:
    return Normalization(mean=(0.0,) * bands, std=(1.0,) * bands)


def identity_ensemble(net: torch.nn.Module, bands: int = C, tta=None, device: str = "cpu") -> Ensemble:
    card = ModelCard(
        model={},
        schema=SCHEMA.to_dict(),
        normalization=identity(bands).to_dict(),
        bands=list(range(1, bands + 1)),
        tile_size=16,
    )
    return Ensemble(
        [Member(card, TorchNetwork(net, device, channels_last=False), Path("net.ckpt"), torch.device(device))], tta
    )


def sliding(net: torch.nn.Module, image: np.ndarray, tta=None, **options) -> np.ndarray:
    options = {"tile": 16, **options}
    return predict_array(image, identity_ensemble(net, image.shape[0], tta), PredictOptions(**options)).probabilities


def full_forward_mirrored(net: torch.nn.Module, image: np.ndarray, reach: int) -> np.ndarray:
    """Softmax of one forward pass over the whole image mirrored by ``reach``: what the tiles see."""
    padded = np.pad(image, ((0, 0), (reach, reach), (reach, reach)), mode="reflect")
    with torch.no_grad():
        probabilities = torch.softmax(net(torch.from_numpy(padded)[None]), dim=1)[0].numpy()
    return probabilities[:, reach : reach + image.shape[1], reach : reach + image.shape[2]]


def seen_with_full_context(grid: TileGrid, reach: int) -> np.ndarray:
    """Pixels that every tile covering them sees at least ``reach`` from its border.

    The grid's tiles read the mirrored scene, so a tile border that lies outside the image (in the margin)
    hides nothing; only borders that fall on image pixels replace neighbours with the network's zero padding.
    """
    rows, cols = np.arange(grid.height)[:, None], np.arange(grid.width)[None, :]
    ok = np.ones((grid.height, grid.width), dtype=bool)
    for r in grid.rows:
        for c in grid.cols:
            inside = (rows >= r) & (rows < r + grid.tile) & (cols >= c) & (cols < c + grid.tile)
            far = (
                (rows - r >= reach)
                & (r + grid.tile - 1 - rows >= reach)
                & (cols - c >= reach)
                & (c + grid.tile - 1 - cols >= reach)
            )
            ok &= ~inside | far
    return ok


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(42).normal(size=(C, 45, 38)).astype(np.float32)


@pytest.mark.parametrize("blend", ["uniform", "hann", "gaussian"])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_sliding_window_equals_full_forward_away_from_tile_seams(image, blend, overlap):
    net = conv_net(3)
    result = sliding(net, image, overlap=overlap, blend=blend, batch_size=3)
    expected = full_forward_mirrored(net, image, reach=1)
    grid = scene_grid(*image.shape[1:], 16, overlap)
    interior = seen_with_full_context(grid, reach=1)
    assert interior.mean() > 0.3
    np.testing.assert_allclose(result[:, interior], expected[:, interior], atol=1e-5)
    # With overlap the margin puts the image's edges inside tiles, mirrored, so most edge pixels are checked
    # too (not all: an inner tile may still end flush with the image); without overlap all lie on tile borders.
    edges = np.concatenate([interior[0], interior[-1], interior[:, 0], interior[:, -1]])
    assert edges.mean() > 0.3 if grid.margin >= 1 else not edges.any()
    # Where a tile's zero padding replaced real neighbours the blend differs: the test can see seams.
    assert not np.allclose(result, expected, atol=1e-3)


@pytest.mark.parametrize("shape", [(45, 38), (5, 9), (1, 1), (16, 3)])
def test_pointwise_network_is_reproduced_everywhere_including_images_smaller_than_a_tile(shape):
    net = conv_net(1)
    image = np.random.default_rng(1).normal(size=(C, *shape)).astype(np.float32)
    result = sliding(net, image, overlap=0.5)
    assert result.shape == (K, *shape) and result.dtype == np.float32
    np.testing.assert_allclose(result, full_forward_mirrored(net, image, reach=0), atol=1e-5)
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)


def test_batch_size_and_block_width_do_not_change_the_result(image):
    net = conv_net(3)
    one = sliding(net, image, batch_size=1)
    np.testing.assert_allclose(sliding(net, image, batch_size=7), one, atol=1e-6)
    np.testing.assert_allclose(sliding(net, image, batch_size=5, block_width=10), one, atol=1e-6)


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_tta_is_a_no_op_for_an_equivariant_network_only(image, mode):
    equivariant = conv_net(3, seed=3, symmetry=mode)
    np.testing.assert_allclose(sliding(equivariant, image, tta=mode), sliding(equivariant, image), atol=1e-5)
    plain = conv_net(3, seed=3)
    assert not np.allclose(sliding(plain, image, tta=mode), sliding(plain, image), atol=1e-3)


@pytest.mark.parametrize("mode, count", [("flips", 4), ("d4", 8)])
def test_tta_averages_softmax_over_transformed_inputs(mode, count):
    net = conv_net(3, seed=5)
    square = np.random.default_rng(2).normal(size=(C, 16, 16)).astype(np.float32)
    # Brute force: every transform of the square image, forward, transformed back by hand.
    x = torch.from_numpy(square)
    views = [(x, lambda p: p)]
    views += [(x.flip(dims), lambda p, dims=dims: p.flip(dims)) for dims in [(-1,), (-2,), (-2, -1)]]
    if mode == "d4":
        views = [(x.rot90(k, (-2, -1)), lambda p, k=k: p.rot90(-k, (-2, -1))) for k in range(4)]
        transposed = x.transpose(-2, -1)
        views += [
            (transposed.rot90(k, (-2, -1)), lambda p, k=k: p.rot90(-k, (-2, -1)).transpose(-2, -1)) for k in range(4)
        ]
    assert len(views) == count
    with torch.no_grad():
        expected = sum(undo(torch.softmax(net(view[None]), dim=1)[0]) for view, undo in views) / count
    # Without overlap there is no margin: one tile, the image itself.
    result = sliding(net, square, tta=mode, overlap=0.0)
    np.testing.assert_allclose(result, expected.numpy(), atol=1e-5)
    assert not np.allclose(result, sliding(net, square, overlap=0.0), atol=1e-3)


@pytest.mark.parametrize("mode", [None, "flips", "d4"])
def test_every_tta_inverse_undoes_its_transform(mode):
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5)
    transforms = tta_transforms(mode)
    outputs = {tuple(forward(x).flatten().tolist()) for forward, _ in transforms}
    assert len(outputs) == len(transforms)  # all distinct
    for forward, inverse in transforms:
        torch.testing.assert_close(inverse(forward(x)), x)


class Coarse(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 4)


@pytest.mark.parametrize("tta", [None, "d4"])
def test_coarse_logits_are_upsampled_to_the_tile(tta):
    image = np.random.default_rng(3).normal(size=(K, 32, 32)).astype(np.float32)
    result = sliding(Coarse(), image, tta=tta)
    assert result.shape == (K, 32, 32)
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)
    # One tile without overlap: the bilinear upsampling of the 4 x 4 logits, then the softmax.
    with torch.no_grad():
        x = torch.from_numpy(image[:, :16, :16])[None]
        logits = torch.nn.functional.interpolate(Coarse()(x), size=(16, 16), mode="bilinear", align_corners=False)
        expected = torch.softmax(logits, dim=1)[0].numpy()
    np.testing.assert_allclose(sliding(Coarse(), image[:, :16, :16], overlap=0.0), expected, atol=1e-5)


@pytest.mark.parametrize("tta", [None, "flips"])
def test_network_with_the_wrong_class_count_is_reported(image, tta):
    with pytest.raises(CheckpointError, match=f"{K} classes"):
        sliding(conv_net(1, out=K - 1), image, tta=tta)


BAD_OPTIONS = [{"overlap": 1.0}, {"overlap": 1.5}, {"blend": "cosine"}, {"batch_size": 0}, {"tile": 0}]
bad_options = pytest.mark.parametrize("option", BAD_OPTIONS, ids=lambda o: "{}={}".format(*next(iter(o.items()))))


def no_read(*args, **kwargs):
    raise AssertionError("pixels were read before the options were checked")


@pytest.fixture
def sampling_ensemble(image) -> Ensemble:
    """A card that records its training pixels, so that the core samples the input before predicting."""
    stats = pixel_stats([image], str(image.dtype)).to_dict()
    card = ModelCard(
        model={},
        schema=SCHEMA.to_dict(),
        normalization=identity(C).to_dict(),
        bands=[1, 2, 3],
        tile_size=16,
        input_stats=stats,
    )
    ensemble = Ensemble([Member(card, conv_net(1), Path("net.ckpt"))])
    predict_array(image, ensemble)  # the options are the only thing wrong in the tests below
    return ensemble


@bad_options
def test_bad_options_are_refused_by_their_check(option):
    with pytest.raises(ConfigError):
        PredictOptions(**option).check()


@bad_options
def test_bad_options_fail_before_any_pixel_of_an_array_is_read(monkeypatch, sampling_ensemble, image, option):
    monkeypatch.setattr(core.ArrayRaster, "read", no_read)
    with pytest.raises(ConfigError):
        predict_array(image, sampling_ensemble, PredictOptions(**option))


@bad_options
def test_bad_options_fail_before_a_file_is_opened(monkeypatch, sampling_ensemble, tmp_path, option):
    monkeypatch.setattr(engine, "open_raster", no_read)
    with pytest.raises(ConfigError):
        predict_scene(tmp_path / "never_opened.tif", sampling_ensemble, tmp_path / "out", PredictOptions(**option))


def test_unknown_tta_is_refused_when_the_ensemble_is_built():
    with pytest.raises(ConfigError, match="d4"):
        identity_ensemble(conv_net(1), tta="rotations")


def test_progress_reports_every_predicted_tile(tmp_path):
    data = random_scene(height=40, width=50)
    path = write_tif(tmp_path / "scene.tif", data)
    started, done = [], []
    options = PredictOptions(block_width=16, batch_size=3, preview=False, areas=False)
    result = predict_scene(
        path, pointwise_ensemble(), tmp_path / "out", options, on_start=started.append, on_tiles=done.append
    )
    # Tiles straddling a block border are predicted once per block, and counted so.
    assert started == [result.tiles] and sum(done) == result.tiles
    assert result.tiles > scene_grid(40, 50, 16, 0.5).tile_count


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(image):
    net = conv_net(3)
    options = PredictOptions(tile=16)
    on_cpu = predict_array(image, identity_ensemble(net, tta="d4"), options).probabilities
    on_gpu = predict_array(image, identity_ensemble(conv_net(3), tta="d4", device="cuda"), options).probabilities
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
