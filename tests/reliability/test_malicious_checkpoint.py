"""A checkpoint is data, never code: a pickle that would run a command is refused by every loader,
and the command never runs."""

from __future__ import annotations

import pytest
import yaml
from reliability_helpers import experiment, write_geotiff
from typer.testing import CliRunner

from landseg.checkpoint import load_checkpoint
from landseg.cli import app
from landseg.distributed.cluster import EnsembleSource
from landseg.errors import CheckpointError

runner = CliRunner()


def assert_refused(result, path, marker):
    assert result.exit_code == 1, result.output
    line = " ".join(result.output.split())
    assert path.name in line and "arbitrary code" in line and "Traceback" not in result.output
    assert not marker.exists()


def test_predict_refuses_it(tmp_path, malicious, synthetic_scene):
    path, marker = malicious
    image = write_geotiff(tmp_path / "scene.tif", synthetic_scene.image)
    for engine in ("auto", "torch"):
        result = runner.invoke(
            app, ["predict", "-c", str(path), str(image), "--out", str(tmp_path / "o"), "--engine", engine]
        )
        assert_refused(result, path, marker)


def test_evaluate_refuses_it(tmp_path, malicious, synthetic_dataset):
    path, marker = malicious
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(experiment(synthetic_dataset)))
    result = runner.invoke(app, ["evaluate", "-c", str(path), "--config", str(config), "--out", str(tmp_path / "e")])
    assert_refused(result, path, marker)


def test_train_resume_refuses_it(tmp_path, malicious, synthetic_dataset):
    path, marker = malicious
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(experiment(synthetic_dataset)))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(path.read_bytes())
    result = runner.invoke(app, ["train", str(config), "--out", str(run), "--resume"])
    assert result.exit_code == 1, result.output
    assert "arbitrary code" in " ".join(result.output.split()) and not marker.exists()


def test_serve_and_dask_workers_refuse_it(malicious):
    """``landseg serve`` loads with ``load_checkpoint``; Dask workers with ``EnsembleSource.load``."""
    path, marker = malicious
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_checkpoint(path)
    for engine in ("torch", "onnxruntime"):
        with pytest.raises(CheckpointError, match="arbitrary code"):
            EnsembleSource.of([str(path)], engine=engine).load()
    assert not marker.exists()
