"""Checkpoints run by ONNX Runtime are exported once, beside the checkpoint, and found there next time;
a folder that cannot be written sends the export to the user cache."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import landseg.predict.onnx as onnx_module
from landseg.errors import CheckpointError
from landseg.predict.ensemble import load_ensemble

sys.path.insert(0, str(Path(__file__).parent))
from test_predict_command import write_checkpoint


@pytest.fixture
def counted_exports(monkeypatch):
    """Every export this process makes, by destination."""
    made = []
    original = onnx_module.export_onnx

    def counting(checkpoint, destination, tile=None):
        made.append(Path(destination))
        return original(checkpoint, destination, tile)

    monkeypatch.setattr(onnx_module, "export_onnx", counting)
    return made


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.ckpt", seed=5)


def test_export_beside_the_checkpoint_is_made_once(checkpoint_file, tmp_path, counted_exports, monkeypatch):
    monkeypatch.setenv("LANDSEG_CACHE", str(tmp_path / "cache"))
    checkpoint = shutil.copy(checkpoint_file, tmp_path / "best.ckpt")
    first = load_ensemble([checkpoint], engine="onnxruntime", tile=32)
    beside = list(tmp_path.glob("best.*.t32.onnx"))
    assert len(beside) == 1 and first.members[0].engine == "onnxruntime"
    assert counted_exports == beside and not (tmp_path / "cache").exists()
    stamp = beside[0].stat().st_mtime_ns
    again = load_ensemble([checkpoint], engine="onnxruntime", tile=32)
    assert again.members[0].engine == "onnxruntime"
    assert len(counted_exports) == 1 and beside[0].stat().st_mtime_ns == stamp
    # New content (training overwrote best.ckpt): a new export replaces the stale one.
    shutil.copy(write_checkpoint(tmp_path / "other.ckpt", seed=6), checkpoint)
    load_ensemble([checkpoint], engine="onnxruntime", tile=32)
    now = list(tmp_path.glob("best.*.t32.onnx"))
    assert len(now) == 1 and now[0] != beside[0] and len(counted_exports) == 2


def test_a_folder_that_cannot_be_written_falls_back_to_the_user_cache(
    checkpoint_file, tmp_path, counted_exports, monkeypatch
):
    monkeypatch.setenv("LANDSEG_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "read_only"
    folder.mkdir()
    checkpoint = shutil.copy(checkpoint_file, folder / "best.ckpt")
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root writes anyway: make the export beside it fail as a read-only mount would
        real_access = os.access

        def refuse(path, mode):
            return False if Path(path) == folder else real_access(path, mode)

        monkeypatch.setattr(onnx_module.os, "access", refuse)
    try:
        load_ensemble([checkpoint], engine="onnxruntime", tile=32)
        load_ensemble([checkpoint], engine="onnxruntime", tile=32)
    finally:
        folder.chmod(0o755)
    cached = list((tmp_path / "cache" / "onnx").glob("best.*.t32.onnx"))
    assert len(cached) == 1 and counted_exports == cached
    assert not list(folder.glob("*.onnx"))


def test_an_export_that_fails_to_write_beside_falls_back(checkpoint_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSEG_CACHE", str(tmp_path / "cache"))
    checkpoint = shutil.copy(checkpoint_file, tmp_path / "best.ckpt")
    original = onnx_module.export_onnx

    def full_disk_beside(source, destination, tile=None):
        if Path(destination).parent == tmp_path:
            raise OSError(28, "No space left on device")
        return original(source, destination, tile)

    monkeypatch.setattr(onnx_module, "export_onnx", full_disk_beside)
    path = onnx_module.cached_export(checkpoint, 32)
    assert path.parent == tmp_path / "cache" / "onnx" and path.is_file()


def test_the_isolated_export_runs_in_a_child_process(checkpoint_file, tmp_path, counted_exports):
    path = onnx_module.cached_export(shutil.copy(checkpoint_file, tmp_path / "best.ckpt"), 32, isolate=True)
    assert path.parent == tmp_path and path.is_file()
    assert counted_exports == []  # this process's export_onnx was never called


def test_the_childs_error_comes_back_as_one_line(tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    assert onnx_module.export_in_child(str(broken), str(tmp_path / "x.onnx"), "32") == 1  # the child's side
    reported = capsys.readouterr().out
    finished = subprocess.CompletedProcess([], 1, stdout="exporter chatter\n" + reported, stderr="")
    monkeypatch.setattr(onnx_module.subprocess, "run", lambda *args, **kwargs: finished)
    with pytest.raises(CheckpointError, match="truncated or corrupt") as caught:  # the parent's side
        onnx_module.cached_export(broken, 32, isolate=True)
    assert caught.value.path == str(broken)
    killed = subprocess.CompletedProcess([], -9, stdout="", stderr="")
    monkeypatch.setattr(onnx_module.subprocess, "run", lambda *args, **kwargs: killed)
    with pytest.raises(CheckpointError, match="exit code -9"):
        onnx_module.cached_export(broken, 32, isolate=True)
