"""``landseg predict`` on a 2-worker Dask LocalCluster: the same COGs as one process, even when a worker dies."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from distributed_helpers import profile_summary, read_bands, save_tiny_checkpoint, write_synthetic_scene

from landseg.distributed.predict import run_predict_distributed
from landseg.errors import DataError
from landseg.predict.engine import PredictOptions
from landseg.predict.run import run_predict

pytestmark = pytest.mark.slow

# Column blocks of 128 px: each 512 px wide scene becomes 4 block tasks.
OPTIONS = PredictOptions(
    overlap=0.5, block_width=128, batch_size=4, probabilities=True, confidence=True, uncertainty="margin", min_area=4
)
KINDS = ("classes", "probabilities", "confidence", "uncertainty")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("scaleout")
    scenes = [write_synthetic_scene(root / "scenes", f"scene_{i}", (384, 512), seed=i) for i in range(2)]
    return scenes, save_tiny_checkpoint(root / "tiny.ckpt")


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """The single-process engine's outputs, with one network thread like each worker (on this shared
    2-core machine more threads than free cores make PyTorch many times slower, not faster)."""
    scenes, checkpoint = inputs
    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_predict(scenes, [checkpoint], out, OPTIONS, engine="torch")
    finally:
        torch.set_num_threads(threads)
    assert len(summary.done) == len(scenes)
    return out


@pytest.fixture
def client(dask_test_client):
    return dask_test_client


def assert_same_outputs(out: Path, reference: Path, stem: str) -> None:
    for kind in KINDS:
        ours, theirs = out / f"{stem}_{kind}.tif", reference / f"{stem}_{kind}.tif"
        np.testing.assert_array_equal(read_bands(ours), read_bands(theirs), err_msg=f"{stem} {kind}")
        assert profile_summary(ours) == profile_summary(theirs)
    assert (out / f"{stem}_areas.csv").read_text() == (reference / f"{stem}_areas.csv").read_text()


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_two_workers_write_the_single_process_cogs(inputs, reference, client, tmp_path):
    scenes, checkpoint = inputs
    summary = run_predict_distributed(scenes, [checkpoint], tmp_path, client, OPTIONS, engine="torch", threads=1)
    assert [r.source.name for r in sorted(summary.done, key=lambda r: r.source.name)] == [s.name for s in scenes]
    assert not summary.failed
    for scene in scenes:
        assert_same_outputs(tmp_path, reference, scene.stem)
        # The class COG is the very same file, byte for byte.
        assert (tmp_path / f"{scene.stem}_classes.tif").read_bytes() == (
            reference / f"{scene.stem}_classes.tif"
        ).read_bytes()
    assert hidden_files(tmp_path) == []  # block folders and scratch files are gone
    # Finished scenes are skipped on a rerun, as in one process.
    again = run_predict_distributed(scenes, [checkpoint], tmp_path, client, OPTIONS, engine="torch", threads=1)
    assert again.done == [] and sorted(again.skipped) == sorted(s.resolve() for s in scenes)


def test_a_worker_killed_mid_block_loses_nothing(inputs, reference, client, tmp_path):
    scenes, checkpoint = inputs
    client.wait_for_workers(2, timeout=60)
    before = set(client.scheduler_info()["workers"])
    killed: list[tuple[str, str]] = []

    def kill_a_worker_inside_a_block() -> None:
        """Wait until a block file is being written, then kill the worker computing a block."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            partial = [p.name for p in tmp_path.glob(".*.blocks-*/.block-*.partial.tif")]
            busy = {w: keys for w, keys in client.processing().items() if any("landseg-block" in k for k in keys)}
            if partial and busy:
                worker = sorted(busy)[0]
                killed.append((worker, partial[0]))
                client.run(os._exit, 1, workers=[worker], on_error="ignore")  # it never answers
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_worker_inside_a_block)
    killer.start()
    summary = run_predict_distributed(scenes, [checkpoint], tmp_path, client, OPTIONS, engine="torch", threads=1)
    killer.join()
    assert killed, "no worker was killed: the run ended before a block was seen in progress"
    assert len(summary.done) == len(scenes) and not summary.failed
    for scene in scenes:
        assert_same_outputs(tmp_path, reference, scene.stem)
    assert hidden_files(tmp_path) == []  # the killed attempt's partial block went with its work folder
    client.wait_for_workers(2, timeout=60)
    after = set(client.scheduler_info()["workers"])
    assert killed[0][0] in before and killed[0][0] not in after  # the nanny started a new worker in its place


def test_a_scene_without_the_models_bands_fails_alone(inputs, client, tmp_path):
    scenes, checkpoint = inputs
    single_band = tmp_path / "inputs" / "gray.tif"
    single_band.parent.mkdir()
    with rasterio.open(scenes[0]) as source:
        profile = {**source.profile, "count": 1, "photometric": "MINISBLACK"}
        with rasterio.open(single_band, "w", **profile) as target:
            target.write(source.read(1), 1)
    summary = run_predict_distributed(
        [scenes[1], single_band], [checkpoint], tmp_path / "out", client, OPTIONS, engine="torch", threads=1
    )
    assert [r.source.name for r in summary.done] == [scenes[1].name]
    assert len(summary.failed) == 1 and isinstance(summary.failed[0], DataError)
    assert "gray.tif" in str(summary.failed[0]) and "band" in str(summary.failed[0])
    with pytest.raises(DataError, match="band"):
        run_predict_distributed([single_band], [checkpoint], tmp_path / "alone", client, OPTIONS, engine="torch")
