"""Both normalization kinds: their dicts, numpy ``apply`` and the batch ``apply_torch`` agree.

Mean/std dicts keep the format checkpoints had before kinds existed (no ``kind`` key); the Dynamic
World kind reproduces the published formula ``log``, scaling, ``exp`` and ``x / (x + 1)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landseg.errors import ConfigError
from landseg.normalization import DynamicWorldNormalization, Normalization, normalization_from_dict
from landseg.zoo.registry import DYNAMIC_WORLD_CENTER, DYNAMIC_WORLD_SPREAD

MEAN_STD = Normalization((100.0, 200.0, 300.0), (10.0, 20.0, 50.0))
DW = DynamicWorldNormalization(DYNAMIC_WORLD_CENTER, DYNAMIC_WORLD_SPREAD)


def published_dynamic_world(raw: np.ndarray) -> np.ndarray:
    """Dynamic World's formula as its README writes it, in float64."""
    center = np.asarray(DYNAMIC_WORLD_CENTER)[:, None, None]
    spread = np.asarray(DYNAMIC_WORLD_SPREAD)[:, None, None]
    x = np.log(raw.astype(np.float64) * 0.005 + 1)
    x = np.exp(5 * ((x - center) / spread) - 1)
    return x / (x + 1)


def raw_image(bands: int, dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 12000, size=(bands, 6, 7)).astype(dtype)


def test_mean_std_dict_keeps_its_format_and_reads_with_or_without_a_kind():
    assert MEAN_STD.to_dict() == {"mean": [100.0, 200.0, 300.0], "std": [10.0, 20.0, 50.0]}
    assert Normalization.from_dict(MEAN_STD.to_dict()) == MEAN_STD
    assert normalization_from_dict({**MEAN_STD.to_dict(), "kind": "mean_std"}) == MEAN_STD


def test_dynamic_world_dict_names_its_kind_and_round_trips():
    data = DW.to_dict()
    assert data["kind"] == "dynamic_world"
    assert Normalization.from_dict(data) == DW  # what ModelCard.input_normalization calls
    assert normalization_from_dict(data) == DW
    assert not hasattr(DW, "mean")  # code that reads .mean/.std cannot mistake it for mean/std


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kind": "percentile"}, "unknown normalization kind 'percentile'"),
        ({"kind": "dynamic_world", "center": [1.0]}, "needs lists 'center' and 'spread'"),
        ({"mean": [1.0]}, "needs lists 'mean' and 'std'"),
        ({"kind": "dynamic_world", "center": [1.0], "spread": [0.0]}, "spreads must be positive"),
    ],
)
def test_bad_dicts_are_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        normalization_from_dict(data)


def test_dynamic_world_apply_is_the_published_formula():
    raw = raw_image(9)
    out = DW.apply(raw)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, published_dynamic_world(raw), rtol=0, atol=2e-7)
    assert ((out > 0) & (out < 1)).all()


@pytest.mark.parametrize("normalization, bands", [(MEAN_STD, 3), (DW, 9)])
@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32])
def test_apply_torch_equals_apply_on_every_image_of_a_batch(normalization, bands, dtype):
    batch = np.stack([raw_image(bands, dtype), raw_image(bands, dtype)[:, ::-1, :].copy()])
    tensor = torch.from_numpy(batch)
    out = normalization.apply_torch(tensor)
    assert out.dtype == torch.float32 and out.shape == batch.shape
    for image, normalized in zip(batch, out.numpy(), strict=False):
        np.testing.assert_allclose(normalized, normalization.apply(image), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(tensor.numpy(), batch)  # the input is not changed in place


@pytest.mark.parametrize("normalization, bands", [(MEAN_STD, 3), (DW, 9)])
def test_no_data_becomes_zero(normalization, bands):
    image = raw_image(bands, np.float32)
    image[0, 0, 0], image[1, 1, 1], image[-1, 2, 2] = np.nan, np.inf, -1e6  # -1e6: log undefined for DW
    expected = normalization.apply(image)
    assert expected[0, 0, 0] == 0 and expected[1, 1, 1] == 0 and np.isfinite(expected).all()
    out = normalization.apply_torch(torch.from_numpy(image)[None])[0].numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)
    if normalization is DW:
        assert expected[-1, 2, 2] == 0


@pytest.mark.parametrize("normalization, bands", [(MEAN_STD, 3), (DW, 9)])
def test_wrong_band_counts_are_config_errors(normalization, bands):
    with pytest.raises(ConfigError, match="bands"):
        normalization.apply(np.zeros((bands + 1, 4, 4), np.float32))
    with pytest.raises(ConfigError, match=f"\\(B, {bands}, H, W\\)"):
        normalization.apply_torch(torch.zeros(1, bands + 1, 4, 4))
    with pytest.raises(ConfigError):
        normalization.apply_torch(torch.zeros(bands, 4, 4))
