"""``kill -9`` at seeded random moments: a resumed training ends with the weights and metrics of an
uninterrupted one, a rerun prediction with the same files, and no file is ever left half-written
under its final name.

Real processes (``python -m landseg.cli``) are killed with SIGKILL, so nothing in landseg gets a chance
to clean up: what survives is what was on disk.
"""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from reliability_helpers import experiment, visible_files, write_yaml
from typer.testing import CliRunner

from landseg.cli import app
from landseg.data.synthetic import make_synthetic_dataset
from landseg.errors import OutputError
from landseg.io import write as write_module
from landseg.io.write import atomic_output
from landseg.train.callbacks import AtomicCheckpointIO

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

# One thread each: the runs compare bit for bit, and the machine is shared.
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
EPOCHS = 6
TIMEOUT = 120
runner = CliRunner()


def landseg(*args: str) -> list[str]:
    return [sys.executable, "-m", "landseg.cli", *map(str, args)]


def run_to_end(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=ENVIRONMENT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def kill_when(command: list[str], ready, delay: float) -> None:
    """Start ``command``, SIGKILL it ``delay`` seconds after ``ready()`` first holds, and check it was
    still running then (so the kill really interrupted it)."""
    process = subprocess.Popen(command, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT
    try:
        while not ready():
            if process.poll() is not None:
                raise AssertionError(f"finished before the kill: {process.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the moment to kill")
            time.sleep(0.005)
        time.sleep(delay)
        assert process.poll() is None, "finished before the kill; give it more work"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


def history_rows(path: Path) -> list[dict]:
    """The history without its wall-clock column."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "minutes"} for row in csv.DictReader(handle)]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.fixture(scope="module")
def training_config(tmp_path_factory, clean_scenes) -> Path:
    """Deterministic tiny training with dropout and photometric augmentation, both fed by random numbers,
    and a step-wise cosine schedule whose state must survive too."""
    config = experiment(
        clean_scenes,
        model={"dropout": 0.2},
        train={
            "crop_size": 32,
            "batch_size": 4,
            "epochs": EPOCHS,
            "steps_per_epoch": 10,
            "val_tile": 64,
            "deterministic": True,
            "seed": 3,
            "augment": {"brightness": 0.1, "gamma": 0.1},
        },
    )
    return write_yaml(tmp_path_factory.mktemp("interrupted_training") / "experiment.yaml", config)


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, training_config):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_to_end(landseg("train", training_config, "--out", reference))

    with open(reference / "history.csv", newline="") as handle:
        minutes = [float(row["minutes"]) for row in csv.DictReader(handle)]
    epoch_seconds = 60 * (minutes[-1] - minutes[0]) / (EPOCHS - 1)

    rng = random.Random(8)
    killed_after = sorted(rng.sample(range(1, EPOCHS - 1), 2))  # validated epochs before each kill
    history = interrupted / "history.csv"
    for number, rows in enumerate(killed_after):
        resume = ["--resume"] if number else []
        # Anywhere in the next epoch: in a training step, in validation, or while a checkpoint is written.
        kill_when(
            landseg("train", training_config, "--out", interrupted, *resume),
            ready=lambda rows=rows: len(history_rows(history)) >= rows,
            delay=rng.uniform(0, epoch_seconds),
        )
        assert (interrupted / "checkpoints" / "last.ckpt").exists()
    run_to_end(landseg("train", training_config, "--out", interrupted, "--resume"))

    for name in ("last.ckpt", "best.ckpt"):
        assert_same_weights(reference / "checkpoints" / name, interrupted / "checkpoints" / name)
    assert history_rows(interrupted / "history.csv") == history_rows(reference / "history.csv")
    assert len(history_rows(reference / "history.csv")) == EPOCHS
    summaries = [json.loads((run / "summary.json").read_text()) for run in (reference, interrupted)]
    assert summaries[0]["best_val_miou"] == summaries[1]["best_val_miou"] and summaries[1]["epochs"] == EPOCHS
    litter = [p.name for p in interrupted.rglob("*") if p.is_file() and (".partial" in p.name or p.suffix == ".tmp")]
    assert litter == []


def test_resuming_a_finished_run_changes_nothing(tmp_path, clean_scenes):
    """A kill after the last epoch but before the command returned: the rerun with ``--resume`` must not
    validate again, add a history row or touch the weights."""
    config = write_yaml(tmp_path / "experiment.yaml", experiment(clean_scenes, train={"epochs": 2}))
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", str(config), "--out", str(run)]).exit_code == 0
    before = history_rows(run / "history.csv"), weights(run / "checkpoints" / "last.ckpt")
    again = runner.invoke(app, ["train", str(config), "--out", str(run), "--resume"])
    assert again.exit_code == 0, again.output
    assert history_rows(run / "history.csv") == before[0] and len(before[0]) == 2
    after = weights(run / "checkpoints" / "last.ckpt")
    assert all(torch.equal(before[1][key], after[key]) for key in after)
    assert "final_val_miou" not in json.loads((run / "summary.json").read_text())


def same_file(a: Path, b: Path) -> None:
    """Equal content: pixels and grid for rasters, pixels for PNGs, JSON without timings, bytes otherwise."""
    if a.suffix == ".tif":
        with rasterio.open(a) as first, rasterio.open(b) as second:
            assert (first.crs, first.transform, first.count) == (second.crs, second.transform, second.count), a.name
            assert np.array_equal(first.read(), second.read()), a.name
    elif a.suffix == ".png":
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name
    elif a.suffix == ".json":
        assert without_timings(json.loads(a.read_text())) == without_timings(json.loads(b.read_text())), a.name
    else:
        assert a.read_bytes() == b.read_bytes(), a.name


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in ("seconds", "stages")}
    return [without_timings(v) for v in value] if isinstance(value, list) else value


def test_killed_prediction_rerun_gives_the_uninterrupted_outputs(tmp_path, tiny_checkpoint):
    scenes = make_synthetic_dataset(tmp_path / "scenes", n_scenes=8, size=96, seed=5) / "images"
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_to_end(landseg("predict", scenes, "--checkpoint", tiny_checkpoint, "--out", reference))
    expected = visible_files(reference)
    assert len(expected) >= 3 * 8

    rng = random.Random(4)
    files_before_kill = rng.randint(1, len(expected) // 2)
    kill_when(
        landseg("predict", scenes, "--checkpoint", tiny_checkpoint, "--out", interrupted),
        ready=lambda: len(visible_files(interrupted)) >= files_before_kill,
        delay=rng.uniform(0.0, 0.05),
    )
    survivors = visible_files(interrupted)
    assert 0 < len(survivors) < len(expected)
    for name in survivors:  # whatever carries a final name is complete
        same_file(reference / name, interrupted / name)

    run_to_end(landseg("predict", scenes, "--checkpoint", tiny_checkpoint, "--out", interrupted))
    assert visible_files(interrupted) == expected
    assert sorted(p.name for p in interrupted.glob(".*")) == []  # the killed attempt's partial files are gone
    for name in expected:
        same_file(reference / name, interrupted / name)


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)

    def half_then_disk_full(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(3))


def test_outputs_are_fsynced_before_they_are_renamed(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = write_module.fsync_file, os.replace
    monkeypatch.setattr(
        write_module, "fsync_file", lambda path: (events.append(("fsync", Path(path).name)), real_fsync(path))
    )
    monkeypatch.setattr(
        write_module.os, "replace", lambda a, b: (events.append(("rename", Path(a).name)), real_replace(a, b))
    )
    with atomic_output(tmp_path / "map.tif") as temporary:
        temporary.write_bytes(b"complete")
    assert [kind for kind, _ in events] == ["fsync", "rename"] and events[0][1] == events[1][1] == temporary.name
    assert temporary.name.startswith(".") and (tmp_path / "map.tif").read_bytes() == b"complete"
