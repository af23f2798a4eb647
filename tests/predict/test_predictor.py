from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from affine import Affine

from landseg.checkpoint import LoadedModel, ModelCard
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.errors import ConfigError, DataError, LandsegError
from landseg.io.raster import RasterImage
from landseg.normalization import Normalization
from landseg.predict import Prediction, Predictor, tile_windows

SCHEMA = get_schema("synthetic")
NORMALIZATION = Normalization(mean=(100.0, 50.0), std=(50.0, 25.0))
BANDS = [3, 1]  # model input order differs from file order on purpose


def pointwise_model(input_scale: float = 1.0, tile_size: int = 16) -> LoadedModel:
    torch.manual_seed(0)
    network = torch.nn.Conv2d(len(BANDS), SCHEMA.num_classes, kernel_size=1)
    card = ModelCard(
        model={"architecture": "test-pointwise"},
        schema=SCHEMA.to_dict(),
        normalization=NORMALIZATION.to_dict(),
        bands=BANDS,
        band_names=["nir", "blue"],
        input_scale=input_scale,
        tile_size=tile_size,
    )
    return LoadedModel(card=card, network=network, path=Path("runs/pointwise.ckpt"))


def expected_classes(model: LoadedModel, data: np.ndarray) -> np.ndarray:
    """Hand-computed: pick bands, normalize, apply the 1x1 convolution, argmax."""
    selected = data[[b - 1 for b in BANDS]].astype(np.float64)
    mean = np.array(NORMALIZATION.mean)[:, None, None]
    std = np.array(NORMALIZATION.std)[:, None, None]
    normalized = (selected - mean) / std
    weight = model.network.weight.detach().double().numpy()[:, :, 0, 0]
    bias = model.network.bias.detach().double().numpy()
    logits = np.einsum("kc,chw->khw", weight, normalized) + bias[:, None, None]
    return logits.argmax(axis=0).astype(np.uint8)


def raster(data: np.ndarray, valid: np.ndarray | None = None, path: str = "scene.tif") -> RasterImage:
    return RasterImage(
        data=data,
        path=Path(path),
        crs=CRS.from_epsg(32632),
        transform=Affine(2.0, 0.0, 500_000.0, 0.0, -2.0, 5_000_000.0),
        nodata=None,
        valid=valid,
    )


def random_scene(height: int = 37, width: int = 29, bands: int = 4, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, size=(bands, height, width)).astype(np.uint16)


def test_predicts_what_the_card_describes():
    model = pointwise_model()
    data = random_scene()
    prediction = Predictor(model, overlap=0.5, keep_probabilities=True).predict_image(raster(data))
    assert isinstance(prediction, Prediction)
    assert prediction.index.dtype == np.uint8 and prediction.index.shape == (37, 29)
    np.testing.assert_array_equal(prediction.index, expected_classes(model, data))
    assert len(np.unique(prediction.index)) > 1
    assert prediction.confidence.dtype == np.float32
    np.testing.assert_allclose(prediction.confidence, prediction.probabilities.max(axis=0))
    np.testing.assert_allclose(prediction.probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_probabilities_are_dropped_unless_asked_for():
    prediction = Predictor(pointwise_model()).predict_image(raster(random_scene()))
    assert prediction.probabilities is None


def test_no_data_pixels_become_ignore():
    data = random_scene()
    valid = np.ones(data.shape[1:], dtype=bool)
    valid[:5, :] = False
    valid[20, 3] = False
    prediction = Predictor(pointwise_model()).predict_image(raster(data, valid))
    assert (prediction.index[~valid] == IGNORE_INDEX).all()
    assert (prediction.confidence[~valid] == 0).all()
    assert (prediction.index[valid] < SCHEMA.num_classes).all()
    assert (prediction.confidence[valid] > 1 / SCHEMA.num_classes).all()


def test_too_few_bands_names_the_file_and_the_counts():
    predictor = Predictor(pointwise_model())
    with pytest.raises(DataError) as caught:
        predictor.predict_image(raster(random_scene(bands=2), path="/data/tiny_rgb.tif"))
    message = str(caught.value)
    assert isinstance(caught.value, LandsegError)
    assert caught.value.path == "/data/tiny_rgb.tif"
    assert "has 2 bands" in message and "3 bands expected" in message and "pointwise.ckpt" in message


class ShapeRecorder(torch.nn.Module):
    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.inputs: list[tuple[int, ...]] = []

    def forward(self, x):
        self.inputs.append(tuple(x.shape))
        return self.network(x)


def test_input_scale_resamples_in_and_back_out():
    model = pointwise_model(input_scale=0.5, tile_size=8)
    # Blocks of constant values: halving and restoring keeps each block's class away from its edges.
    blocks = np.random.default_rng(3).integers(0, 200, size=(4, 3, 4)).astype(np.uint16)
    data = blocks.repeat(16, axis=1).repeat(16, axis=2)[:, :47, :]  # 47 x 64: odd height on purpose
    expected = expected_classes(model, data)
    recorder = ShapeRecorder(model.network)
    model.network = recorder
    prediction = Predictor(model, overlap=0.5, batch_size=100).predict_image(raster(data))
    assert prediction.index.shape == (47, 64)
    tiles = sum(shape[0] for shape in recorder.inputs)
    assert tiles == len(tile_windows(24, 32, 8, 0.5))  # the network saw the half-size image
    block_interiors = np.zeros((47, 64), dtype=bool)
    for r in range(3):
        for c in range(4):
            block_interiors[r * 16 + 4 : r * 16 + 12, c * 16 + 4 : c * 16 + 12] = True
    np.testing.assert_array_equal(prediction.index[block_interiors], expected[block_interiors])


def test_predict_path_reads_the_file(tmp_path):
    data = random_scene(height=20, width=24)
    path = tmp_path / "scene.tif"
    profile = dict(driver="GTiff", width=24, height=20, count=4, dtype="uint16", crs="EPSG:32632",
                   transform=Affine(2.0, 0.0, 500_000.0, 0.0, -2.0, 5_000_000.0))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    model = pointwise_model()
    prediction = Predictor(model).predict_path(path)
    np.testing.assert_array_equal(prediction.index, expected_classes(model, data))


@pytest.mark.parametrize("option", [{"overlap": 1.5}, {"blend": "cosine"}, {"tta": "rot"}, {"tile": 0}])
def test_bad_options_fail_before_any_image_is_read(option):
    with pytest.raises(ConfigError):
        Predictor(pointwise_model(), **option)
