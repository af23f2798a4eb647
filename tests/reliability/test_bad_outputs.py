"""Outputs that cannot be written: a folder that cannot be created or written, a disk that fills up.
One line naming the path, exit code 1, and nothing half-written left behind.

The tests run as root in CI containers, and root ignores permission bits: a read-only folder does not
stop it. The portable way to make a folder impossible is to ask for one below a regular file; the
permission case runs only where permissions apply (not as root).
"""

import errno
import os

import pytest
import torch
from reliability_helpers import all_files, assert_one_line_error, experiment, write_yaml
from typer.testing import CliRunner

from landseg.cli import app

runner = CliRunner()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def blocker(tmp_path):
    """A regular file: no folder can be made below it."""
    path = tmp_path / "not_a_folder"
    path.write_text("a file where a folder was expected\n")
    return path


def test_predict_into_a_folder_below_a_regular_file(tmp_path, clean_scenes, tiny_checkpoint, blocker):
    result = runner.invoke(
        app,
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            str(clean_scenes / "images" / "scene_000.tif"),
            "--out",
            str(blocker / "maps"),
        ],
    )
    assert_one_line_error(result, str(blocker), "Not a directory")


def test_train_into_a_folder_below_a_regular_file(tmp_path, clean_scenes, blocker):
    config = write_yaml(tmp_path / "experiment.yaml", experiment(clean_scenes))
    result = runner.invoke(app, ["train", str(config), "--out", str(blocker / "run")])
    assert_one_line_error(result, str(blocker), "Not a directory")


def test_evaluate_into_a_folder_below_a_regular_file(tmp_path, clean_scenes, tiny_checkpoint, blocker):
    config = write_yaml(tmp_path / "experiment.yaml", experiment(clean_scenes))
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(tiny_checkpoint),
            "--config",
            str(config),
            "--out",
            str(blocker / "evaluation"),
        ],
    )
    assert_one_line_error(result, str(blocker), "Not a directory")


@pytest.mark.skipif(IS_ROOT, reason="root ignores permission bits; covered by the regular-file cases")
def test_predict_into_a_read_only_folder(tmp_path, clean_scenes, tiny_checkpoint):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = runner.invoke(
            app,
            [
                "predict",
                "--checkpoint",
                str(tiny_checkpoint),
                str(clean_scenes / "images" / "scene_000.tif"),
                "--out",
                str(folder),
            ],
        )
        assert_one_line_error(result, str(folder), "ermission denied")
        assert all_files(folder) == []
    finally:
        folder.chmod(0o700)


def test_predict_on_a_full_disk(tmp_path, clean_scenes, tiny_checkpoint, monkeypatch):
    """The kernel reports a full disk when the data is flushed; the output must not appear at all."""
    monkeypatch.setattr(os, "fsync", disk_full)
    out = tmp_path / "maps"
    result = runner.invoke(
        app,
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            str(clean_scenes / "images" / "scene_000.tif"),
            "--out",
            str(out),
        ],
    )
    assert_one_line_error(result, str(out / "scene_000_"), "No space left on device")
    assert all_files(out) == []  # not even a hidden temporary


def test_training_checkpoint_on_a_full_disk(tmp_path, clean_scenes, monkeypatch):
    def half_a_checkpoint_then_disk_full(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04")
        disk_full()

    monkeypatch.setattr(torch, "save", half_a_checkpoint_then_disk_full)
    config = write_yaml(tmp_path / "experiment.yaml", experiment(clean_scenes))
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--out", str(run)])
    assert_one_line_error(result, str(run / "checkpoints"), ".ckpt: cannot write checkpoint (No space left on device)")
    assert list(all_files(run / "checkpoints")) == []


def test_prepare_on_a_disk_that_fills_up_mid_run(tmp_path, clean_scenes, monkeypatch):
    real_fsync, calls = os.fsync, []

    def fills_up_at_the_third_file(descriptor):
        calls.append(descriptor)
        return real_fsync(descriptor) if len(calls) < 3 else disk_full()

    monkeypatch.setattr(os, "fsync", fills_up_at_the_third_file)
    config = write_yaml(
        tmp_path / "prepare.yaml",
        {
            "out": str(tmp_path / "prepared"),
            "schema": "synthetic",
            "input": {
                "scenes": [
                    {
                        "image": str(clean_scenes / "images" / "scene_000.tif"),
                        "label": str(clean_scenes / "masks" / "scene_000.tif"),
                    }
                ]
            },
            "tiling": {"size": 32},
        },
    )
    result = runner.invoke(app, ["prepare", "all", str(config)])
    # prepare.yaml and the first chip image were written; the first chip mask hits the full disk.
    assert_one_line_error(
        result, str(tmp_path / "prepared" / "masks" / "scene_000_r00000_c00000.tif"), "No space left on device"
    )
    assert [name for name in all_files(tmp_path / "prepared") if ".partial" in name] == []
