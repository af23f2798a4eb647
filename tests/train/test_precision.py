"""``train.precision: auto`` and ``train.channels_last: auto`` follow the hardware; an explicit value wins;
the choice and its reason reach the checkpoint's card and the run summary; a run without validation
images says so, and leaves its checkpoints' ONNX exports beside them."""

import json

import pytest
import torch

import landseg.train.precision as precision_module
from landseg.checkpoint import load_checkpoint
from landseg.config import parse_config
from landseg.predict.onnx import cached_export
from landseg.train.precision import cpu_bf16_support, resolve_precision
from landseg.train.run import TrainResult, train


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def with_cpu_bf16(monkeypatch, feature):
    monkeypatch.setattr(precision_module, "cpu_bf16_support", lambda: feature)


def test_cpu_with_bf16_trains_in_bf16_channels_last(monkeypatch, cpu_only):
    with_cpu_bf16(monkeypatch, "avx512_bf16")
    choice = resolve_precision("auto", "auto", "auto")
    assert (choice.precision, choice.channels_last, choice.requested) == ("bf16-mixed", True, "auto")
    assert "avx512_bf16" in choice.reason


def test_cpu_without_bf16_trains_in_float32(monkeypatch, cpu_only):
    with_cpu_bf16(monkeypatch, None)
    choice = resolve_precision("auto", "auto", "cpu")
    assert choice.precision == "32-true" and "no bf16" in choice.reason


def test_an_explicit_value_wins(monkeypatch, cpu_only):
    with_cpu_bf16(monkeypatch, "amx_bf16")
    choice = resolve_precision("32-true", False, "auto")
    assert (choice.precision, choice.channels_last) == ("32-true", False)
    assert "set in the config" in choice.reason
    assert resolve_precision("bf16-mixed", "auto", "cpu").channels_last is True


def test_gpus_with_and_without_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "auto").precision == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    older = resolve_precision("auto", "auto", "gpu")
    assert (older.precision, older.channels_last) == ("16-mixed", True)
    assert "gradient scaler" in older.reason
    assert resolve_precision("32-true", "auto", "gpu").channels_last is False


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_bf16_support(cpuinfo) == "avx512_bf16"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_bf16_support(cpuinfo) is None
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 sve\n")  # Arm
    assert cpu_bf16_support(cpuinfo) == "bf16"
    assert cpu_bf16_support(tmp_path / "missing") is None


def test_validation_text():
    common = dict(run_dir=None, best_checkpoint=None, last_checkpoint=None, epochs=1, minutes=0.1, history=None)
    assert TrainResult(best_miou=float("nan"), **common).validation_text() == "no validation images"
    assert TrainResult(best_miou=0.48401, val_images=9, **common).validation_text() == "best validation mIoU 0.4840"
    assert TrainResult(best_miou=float("nan"), val_images=9, **common).validation_text() == "not validated"


def test_run_records_the_choice_and_exports_beside_its_checkpoints(tmp_path, synthetic_dataset, monkeypatch, cpu_only):
    pytest.importorskip("onnxscript")
    with_cpu_bf16(monkeypatch, "avx512_bf16")
    config = parse_config(
        {
            "name": "precision",
            "data": {
                "root": str(synthetic_dataset),
                "schema": "synthetic",
                "images": "images/scene_{id}.tif",
                "masks": "masks/scene_{id}.tif",
                "split": {"field": "id", "train": ["000", "001"], "val": []},
            },
            "model": {"arch": "classic_unet", "widths": [8, 16]},
            "train": {"crop_size": 32, "batch_size": 2, "epochs": 1, "steps_per_epoch": 2, "val_tile": 32},
        }
    )
    result = train(config, tmp_path / "run", progress=False)

    card = load_checkpoint(result.last_checkpoint).card
    recorded = card.training["precision"]
    assert (recorded["precision"], recorded["channels_last"], recorded["requested"]) == ("bf16-mixed", True, "auto")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == recorded
    assert summary["validation"] == "no validation images" and summary["best_val_miou"] is None
    assert result.validation_text() == "no validation images"
    # The best checkpoint is exported beside it, at the card's tile size, where predict looks first.
    (export,) = result.onnx_exports
    assert export.parent == result.best_checkpoint.parent and export.name.startswith("best.")
    assert export.name.endswith(".t32.onnx") and export.is_file()
    assert cached_export(result.best_checkpoint, 32) == export
    assert summary["onnx_exports"] == [str(path) for path in result.onnx_exports]
