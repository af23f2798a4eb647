"""Two ``landseg predict`` runs writing the same output folder at once take turns (``io.locks``): both
finish, the outputs are complete and the same as one run's, and nothing half-written is left behind.

Before the lock, a run that finished removed the hidden temporaries of the scene's stem, the other run's
files being written among them, and that run stopped with "No such file or directory" (3 pairs of 4 of
``landseg predict`` processes).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import rasterio
from reliability_helpers import write_geotiff
from rich.console import Console

from landseg.io.locks import exclusive_lock, lock_path
from landseg.predict.options import PredictOptions
from landseg.predict.run import run_predict

STAGGER_S = (0.0, 0.3, 0.6, 1.0)
"""The second run of each pair starts this much later: into the first one's writing (a run takes ~2 s).
Without the lock, 4 of 5 such pairs failed, one of them with a raw rasterio error."""
OUTPUTS = ["scene_areas.csv", "scene_areas.json", "scene_classes.tif", "scene_color.png", "scene_prediction.json"]
"""The record last."""


def predict_command(model, image, out, *extra) -> list[str]:
    return [sys.executable, "-m", "landseg.cli", "predict", "-c", str(model), str(image), "--out", str(out), *extra]


def classes(folder) -> np.ndarray:
    with rasterio.open(folder / "scene_classes.tif") as written:
        return written.read(1)


def assert_one_complete_set(out, reference) -> None:
    """The outputs of one run, all of them, the same as the reference's; no temporary or lock file left."""
    assert sorted(path.name for path in out.iterdir()) == sorted(path.name for path in reference.iterdir())
    np.testing.assert_array_equal(classes(out), classes(reference))
    record = json.loads((out / "scene_prediction.json").read_text())
    assert sorted(record["outputs"].values()) == sorted(OUTPUTS[:-1])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    pixels = np.random.default_rng(5).integers(0, 255, (3, 256, 256), dtype=np.uint8)
    return write_geotiff(tmp_path_factory.mktemp("scene") / "scene.tif", pixels)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_checkpoint, scene):
    out = tmp_path_factory.mktemp("reference")
    run_predict([scene], [tiny_checkpoint], out, PredictOptions(), engine="torch", console=quiet())
    assert sorted(path.name for path in out.iterdir()) == OUTPUTS
    return out


def quiet() -> Console:
    return Console(file=io.StringIO(), width=400)


def one_run(model, scene, out, overwrite: bool, delay: float = 0.0):
    time.sleep(delay)
    return run_predict([scene], [model], out, PredictOptions(), engine="torch", overwrite=overwrite, console=quiet())


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "resume"])
def test_two_runs_into_one_folder_at_once_take_turns(tmp_path, tiny_checkpoint, scene, reference, overwrite):
    """Two runs in two threads: their locks are two open files, exactly as in two processes."""
    for attempt, delay in enumerate(STAGGER_S):
        out = tmp_path / f"pair_{attempt}"
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(one_run, tiny_checkpoint, scene, out, overwrite, wait) for wait in (0.0, delay)]
            summaries = [run.result() for run in runs]
        assert [len(summary.failed) for summary in summaries] == [0, 0]
        done = sum(len(summary.done) for summary in summaries)
        assert done == 2 if overwrite else done == 1  # resuming, the second finds the scene finished
        assert_one_complete_set(out, reference)


def test_two_predict_commands_into_one_folder_at_once_both_finish(tmp_path, tiny_checkpoint, scene, reference):
    command = predict_command(tiny_checkpoint, scene, tmp_path / "out", "--engine", "torch")
    environment = dict(os.environ, COLUMNS="400")  # one message, one line
    started = [
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in started]
    assert [run.returncode for run in started] == [0, 0], outputs
    assert any("skipped" in output for output in outputs), outputs  # "finished earlier" or "by the other run"
    assert_one_complete_set(tmp_path / "out", reference)


HOLDER = """
import sys
from landseg.io.locks import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_taker_waits_for_the_holder_and_no_lock_file_is_left(tmp_path):
    path = lock_path(tmp_path, "scene")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    waited = []

    def release_the_holder():  # called once, just before this process blocks
        waited.append(True)
        holder.stdin.write("\n")
        holder.stdin.flush()

    with exclusive_lock(path, on_wait=release_the_holder):
        assert holder.wait(timeout=60) == 0  # we hold it only once the holder has let go
        assert path.exists()
    assert waited == [True]
    assert not path.exists()


def test_a_lock_taken_after_a_release_is_a_new_file(tmp_path):
    path = lock_path(tmp_path, "scene")
    calls = []
    for _ in range(2):
        with exclusive_lock(path, on_wait=lambda: calls.append("waited")):
            assert path.exists()
    assert calls == [] and not path.exists()
