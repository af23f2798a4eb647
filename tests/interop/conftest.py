"""The interop tests' exports, each made once per test session (an export takes seconds)."""

import pytest
from interop_helpers import cli_app, write_checkpoint

from landseg.normalization import DynamicWorldNormalization, Normalization

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="session")
def plain_export(tmp_path_factory) -> dict:
    """A mean/std checkpoint exported by ``landseg export --stac``: checkpoint, ONNX file and MLM item."""
    from typer.testing import CliRunner

    folder = tmp_path_factory.mktemp("plain")
    stats = {"dtype": "uint8", "low": [0, 0, 0], "high": [255, 255, 255], "resolution_m": 0.5}
    (folder / "runs").mkdir()
    checkpoint = write_checkpoint(
        folder / "runs" / "tiny.ckpt", Normalization.symmetric(3).to_dict(), input_stats=stats
    )
    onnx_path, item = folder / "export" / "tiny.onnx", folder / "export" / "tiny.json"
    result = CliRunner().invoke(
        cli_app(), ["export", "-c", str(checkpoint), "--onnx", str(onnx_path), "--stac", str(item)]
    )
    assert result.exit_code == 0, result.output
    return {"checkpoint": checkpoint, "onnx": onnx_path, "item": item}


@pytest.fixture(scope="session")
def folded_export(tmp_path_factory) -> dict:
    """A Dynamic World-normalized checkpoint at input scale 0.5: its Deepness graph folds both in."""
    from landseg.checkpoint import load_checkpoint
    from landseg.interop.deepness import export_for_deepness

    folder = tmp_path_factory.mktemp("folded")
    normalization = DynamicWorldNormalization((5.0, 5.2, 5.4), (1.0, 1.1, 0.9))
    checkpoint = write_checkpoint(folder / "dw.ckpt", normalization.to_dict(), input_scale=0.5, seed=3)
    loaded = load_checkpoint(checkpoint)
    return {"loaded": loaded, "onnx": export_for_deepness(loaded, folder / "dw.onnx"), "normalization": normalization}
