"""Band matching, ensembles of differing members, precision choice."""

from pathlib import Path

import numpy as np
import pytest
import torch

from landseg.checkpoint import ModelCard
from landseg.classes import get_schema
from landseg.errors import CheckpointError, ConfigError, DataError
from landseg.normalization import Normalization
from landseg.predict.bands import match_bands
from landseg.predict.ensemble import Ensemble
from landseg.predict.networks import Member, TorchNetwork, check_precision, resolve_engine

SCHEMA = get_schema("synthetic")
K = SCHEMA.num_classes


def card(bands, names=None, normalization=None, scale=1.0, schema=SCHEMA, tile=8) -> ModelCard:
    normalization = normalization or Normalization.symmetric(len(bands))
    return ModelCard(
        model={},
        schema=schema.to_dict(),
        normalization=normalization.to_dict(),
        bands=list(bands),
        band_names=names,
        input_scale=scale,
        tile_size=tile,
    )


def pointwise(in_channels: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv2d(in_channels, K, 1).eval()


def member(model_card: ModelCard, network: torch.nn.Module, name: str) -> Member:
    return Member(model_card, TorchNetwork(network, precision="fp32", channels_last=False), Path(name))


def by_hand(network: torch.nn.Module, raw: np.ndarray, model_card: ModelCard) -> np.ndarray:
    normalization = model_card.input_normalization()
    x = torch.from_numpy(np.stack([normalization.apply(t) for t in raw]))
    with torch.no_grad():
        return torch.softmax(network(x), 1).numpy()


class TestMatchBands:
    def test_card_indices_when_names_do_not_help(self):
        assert match_bands(card([3, 1]), 4, (None,) * 4, "a.tif", "m.ckpt") == [3, 1]

    def test_names_reorder_bands(self):
        model_card = card([1, 2, 3], names=["red", "green", "nir"])
        descriptions = ("NIR", "blue", "green", "Red")
        assert match_bands(model_card, 4, descriptions, "a.tif", "m.ckpt") == [4, 3, 1]

    def test_override_wins_and_is_checked(self):
        model_card = card([1, 2, 3])
        assert match_bands(model_card, 5, (None,) * 5, "a.tif", "m.ckpt", override=[5, 4, 3]) == [5, 4, 3]
        with pytest.raises(ConfigError, match="lists 2 bands"):
            match_bands(model_card, 5, (None,) * 5, "a.tif", "m.ckpt", override=[1, 2])
        with pytest.raises(DataError, match=r"\[6\]"):
            match_bands(model_card, 5, (None,) * 5, "a.tif", "m.ckpt", override=[1, 2, 6])

    def test_too_few_bands_is_a_clear_error(self):
        model_card = card([1, 2, 3, 4], names=["red", "green", "blue", "nir"])
        with pytest.raises(DataError) as caught:
            match_bands(model_card, 3, ("red", "green", "blue"), "/data/rgb.tif", "s2.ckpt")
        message = str(caught.value)
        assert caught.value.path == "/data/rgb.tif"
        assert "lacks band nir that model s2.ckpt reads" in message
        assert "named red, green, blue" in message and "--bands" in message
        with pytest.raises(DataError, match="at least 4 bands expected"):  # unnamed bands: counted instead
            match_bands(model_card, 3, (None, None, None), "/data/rgb.tif", "s2.ckpt")


def test_ensemble_averages_members_with_their_own_bands_and_normalization():
    first_card = card([1, 2, 3], normalization=Normalization((100.0, 90.0, 80.0), (30.0, 20.0, 25.0)))
    second_card = card([4, 2], normalization=Normalization((50.0, 60.0), (10.0, 40.0)))
    first, second = pointwise(3, 0), pointwise(2, 1)
    ensemble = Ensemble([member(first_card, first, "a.ckpt"), member(second_card, second, "b.ckpt")])
    plan = ensemble.plan(4, (None,) * 4, "scene.tif")
    assert plan.read == [1, 2, 3, 4]  # each band is read once
    raw = np.random.default_rng(0).integers(0, 200, size=(3, 4, 8, 8)).astype(np.uint16)
    result = ensemble.predict(raw, plan)
    expected = (by_hand(first, raw[:, [0, 1, 2]], first_card) + by_hand(second, raw[:, [3, 1]], second_card)) / 2
    np.testing.assert_allclose(result, expected, atol=1e-6)
    assert not np.allclose(result, by_hand(first, raw[:, [0, 1, 2]], first_card), atol=1e-3)


def test_a_member_at_half_scale_sees_a_half_size_tile():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return torch.zeros(x.shape[0], K, *x.shape[-2:])

    ensemble = Ensemble([member(card([1, 2, 3], scale=0.5, tile=8), Recorder(), "half.ckpt")])
    assert ensemble.source_tile() == 16  # an 8 px network tile covers 16 input pixels
    result = ensemble.predict(np.zeros((2, 3, 16, 16), dtype=np.uint8), ensemble.plan(3, (None,) * 3, "s.tif"))
    assert seen == [(2, 3, 8, 8)] and result.shape == (2, K, 16, 16)
    np.testing.assert_allclose(result, 1 / K, atol=1e-6)


def test_members_must_share_classes():
    other = get_schema("dubai")
    with pytest.raises(CheckpointError, match="share their classes"):
        Ensemble(
            [
                member(card([1, 2, 3]), pointwise(3, 0), "a.ckpt"),
                member(card([1, 2, 3], schema=other), pointwise(3, 0), "b.ckpt"),
            ]
        )


def test_engine_and_precision_choices(monkeypatch):
    import landseg.predict.networks as ensemble_module

    assert check_precision("bf16") == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        check_precision("fp8")
    with pytest.raises(ConfigError, match="engine"):
        resolve_engine("tensorrt", "cpu")
    monkeypatch.setattr(ensemble_module, "onnxruntime_available", lambda: True)
    assert resolve_engine("auto", "cpu") == "onnxruntime"
    assert resolve_engine("auto", "cpu", precision="bf16") == "torch"  # ONNX Runtime runs fp32 only
    assert resolve_engine("auto", "cuda") == "torch"
    assert resolve_engine("torch", "cpu") == "torch"
    monkeypatch.setattr(ensemble_module, "onnxruntime_available", lambda: False)
    assert resolve_engine("auto", "cpu") == "torch"


def test_bf16_and_channels_last_keep_the_argmax_of_a_pointwise_network():
    network = pointwise(3, 4)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32))
    fast = TorchNetwork(pointwise(3, 4), precision="bf16", channels_last=True)
    with torch.no_grad():
        reference = network(x)
        result = fast(x).float()
    assert (result.argmax(1) == reference.argmax(1)).float().mean() > 0.97
    torch.testing.assert_close(result, reference, atol=0.1, rtol=0.05)
