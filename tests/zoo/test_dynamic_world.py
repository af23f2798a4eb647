"""The PyTorch port of Dynamic World computes the SavedModel's logits (issue 17).

Two references: a small seeded one in the repository (``data/dw_reference_small.npz``, written by
``tools/dynamic_world_reference.py`` with TensorFlow), always run; and the SavedModel's logits on three
real Sentinel-2 L1C chips under ``../shared/models/dynamic_world/reference``, run where that folder is.
Inputs go through the card's own normalization and band list, so those are checked too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from landseg.errors import CheckpointError
from landseg.zoo import load_zoo_model
from landseg.zoo.dynamic_world import DynamicWorldNet, load_dynamic_world

TOLERANCE = 1e-4
SMALL_REFERENCE = Path(__file__).parent / "data" / "dw_reference_small.npz"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REFERENCE = SHARED / "models" / "dynamic_world" / "reference"
CHIPS = {
    "ROIs1970_fall_s2_4_p30": "datasets/samples/sen12ms/ROIs1970_fall_s2_4_p30.tif",
    "ROIs2017_winter_s2_27_p36": "datasets/samples/sen12ms/ROIs2017_winter_s2_27_p36.tif",
    "Spain_7370579_S2Hand": "datasets/samples/sen1floods11/Spain_7370579_S2Hand.tif",
}


@pytest.fixture(scope="module")
def dynamic_world():
    torch.manual_seed(0)
    return load_zoo_model("dynamic-world")


def port_logits(model, raw: np.ndarray) -> np.ndarray:
    """``(9, H, W)`` raw digital numbers to the port's ``(9, H, W)`` logits, through the card."""
    batch = model.card.input_normalization().apply_torch(torch.from_numpy(raw.astype(np.float32))[None])
    with torch.inference_mode():
        return model.network(batch)[0].numpy()


def assert_matches(logits: np.ndarray, expected: np.ndarray) -> None:
    assert logits.shape == expected.shape
    assert np.abs(logits - expected).max() < TOLERANCE
    assert (logits.argmax(0) == expected.argmax(0)).all()


@pytest.mark.parametrize("patch", ["odd", "even"])
def test_port_reproduces_the_saved_model_on_the_stored_reference(dynamic_world, patch):
    reference = np.load(SMALL_REFERENCE)
    assert_matches(port_logits(dynamic_world, reference[f"{patch}_raw"]), reference[f"{patch}_logits"])


@pytest.mark.shared_data
@pytest.mark.parametrize("chip", sorted(CHIPS))
def test_port_reproduces_the_saved_model_on_real_chips(dynamic_world, chip):
    if not REFERENCE.is_dir():
        pytest.skip("../shared/models/dynamic_world/reference not present")
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(SHARED / CHIPS[chip]) as source:
        assert source.count == 13
        raw = source.read(dynamic_world.card.bands)
    expected = np.load(REFERENCE / f"{chip}_dw_logits.npy").transpose(2, 0, 1)
    assert_matches(port_logits(dynamic_world, raw), expected)


@pytest.mark.parametrize("size", [(2, 2), (3, 5), (17, 20)])
def test_any_size_gives_logits_of_the_same_size(dynamic_world, size):
    with torch.inference_mode():
        logits = dynamic_world.network(torch.rand(2, 9, *size))
    assert logits.shape == (2, 9, *size)
    assert torch.isfinite(logits).all()


def test_bf16_autocast_runs_and_keeps_the_stored_reference_classes(dynamic_world):
    # predict's torch engine with --precision bf16 runs the network under CPU autocast; torch's antialiased
    # resize has no bfloat16 kernel, so the port must step around it rather than fail.
    reference = np.load(SMALL_REFERENCE)
    batch = dynamic_world.card.input_normalization().apply_torch(
        torch.from_numpy(reference["even_raw"].astype(np.float32))[None]
    )
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = dynamic_world.network(batch)[0].float().numpy()
    expected = reference["even_logits"]
    assert logits.shape == expected.shape
    assert (logits.argmax(0) == expected.argmax(0)).mean() > 0.95


def test_a_one_pixel_side_is_refused_with_a_message():
    with pytest.raises(ValueError, match="at least 2 x 2"):
        DynamicWorldNet().eval()(torch.rand(1, 9, 1, 8))


def test_weights_file_is_small_float32_and_carries_its_licence(dynamic_world):
    path = dynamic_world.path
    tensors = load_file(str(path))
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    assert sum(t.numel() for t in tensors.values()) == sum(
        p.numel() for p in DynamicWorldNet().state_dict().values() if p.dtype == torch.float32
    )
    assert 0.5e6 < path.stat().st_size < 2e6
    for name in ("DYNAMIC_WORLD_LICENSE", "DYNAMIC_WORLD_NOTICE"):
        assert (path.parent / name).stat().st_size > 0
    assert "Apache" in (path.parent / "DYNAMIC_WORLD_LICENSE").read_text()


def test_network_is_loaded_in_eval_mode(dynamic_world):
    assert not dynamic_world.network.training


def test_weights_that_do_not_fit_are_a_checkpoint_error(dynamic_world, tmp_path):
    tensors = load_file(str(dynamic_world.path))
    tensors.pop("head.bias")
    missing = tmp_path / "missing.safetensors"
    save_file(tensors, str(missing))
    with pytest.raises(CheckpointError, match=r"head\.bias"):
        load_dynamic_world(missing)
    tensors["head.bias"] = torch.zeros(3)
    wrong = tmp_path / "wrong.safetensors"
    save_file(tensors, str(wrong))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_dynamic_world(wrong)
    with pytest.raises(CheckpointError, match="missing"):
        load_dynamic_world(tmp_path / "absent.safetensors")
