"""ONNX export and ONNX Runtime prediction agree with PyTorch."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from landseg.errors import CheckpointError, ConfigError
from landseg.predict.engine import PredictOptions, predict_scene
from landseg.predict.ensemble import load_ensemble
from landseg.predict.onnx import export_onnx

sys.path.insert(0, str(Path(__file__).parent))
from test_predict_command import write_checkpoint, write_scene


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = write_checkpoint(folder / "tiny.ckpt", seed=4)
    return checkpoint, export_onnx(checkpoint, folder / "tiny.onnx", tile=32)


def test_onnx_runtime_probabilities_equal_torch(exported):
    checkpoint, onnx_path = exported
    torch_ensemble = load_ensemble([checkpoint], engine="torch")
    onnx_ensemble = load_ensemble([onnx_path])
    assert onnx_ensemble.members[0].card == torch_ensemble.members[0].card  # the card travels in the file
    assert [m.engine for m in torch_ensemble.members + onnx_ensemble.members] == ["torch", "onnxruntime"]
    assert onnx_ensemble.source_tile() == 32
    raw = np.random.default_rng(0).integers(0, 255, size=(5, 3, 32, 32)).astype(np.uint8)
    plan = torch_ensemble.plan(3, (None,) * 3, "x.tif")
    expected = torch_ensemble.predict(raw, plan)
    result = onnx_ensemble.predict(raw, plan)
    np.testing.assert_allclose(result, expected, atol=1e-4)
    assert (result.argmax(1) == expected.argmax(1)).mean() >= 0.999


def test_scene_with_onnx_engine_matches_torch(exported, tmp_path):
    checkpoint, _onnx_path = exported
    scene = write_scene(tmp_path / "scene.tif", 7, size=(70, 90))
    maps = []
    for ensemble in (load_ensemble([checkpoint], engine="torch"), load_ensemble([checkpoint], engine="onnxruntime")):
        assert ensemble.members[0].engine == ("torch" if not maps else "onnxruntime")
        result = predict_scene(scene, ensemble, tmp_path / str(len(maps)), PredictOptions(preview=False, areas=False))
        with rasterio.open(result.paths["classes"]) as src:
            maps.append(src.read(1))
    assert (maps[0] == maps[1]).mean() >= 0.999


def test_checkpoints_are_exported_once_per_tile(exported, tmp_path):
    checkpoint = Path(shutil.copy(exported[0], tmp_path / "tiny.ckpt"))
    load_ensemble([checkpoint], engine="onnxruntime")
    cached = list(tmp_path.glob("tiny.*.onnx"))  # beside the checkpoint (tests/predict/test_onnx_cache.py)
    assert len(cached) == 1 and cached[0].name.endswith(".t32.onnx")
    stamp = cached[0].stat().st_mtime_ns
    again = load_ensemble([checkpoint], engine="onnxruntime")
    assert again.members[0].engine == "onnxruntime" and cached[0].stat().st_mtime_ns == stamp
    load_ensemble([checkpoint], engine="onnxruntime", tile=64)
    assert len(list(tmp_path.glob("tiny.*.onnx"))) == 2


def test_tile_mismatch_and_foreign_onnx_files_are_refused(exported, tmp_path):
    _, onnx_path = exported
    with pytest.raises(ConfigError, match="exported for 32 px"):
        load_ensemble([onnx_path]).source_tile(64)
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"bogus\.onnx"):
        load_ensemble([bogus])
