"""``landseg predict`` and ``landseg prepare`` with ``--workers`` from the command line: the same files as
the single-process commands, and one-line errors for options that cannot work together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from distributed_helpers import profile_summary, read_bands, save_tiny_checkpoint, write_synthetic_scene
from test_distributed_prepare import config as prepare_config
from test_distributed_prepare import files, raw  # noqa: F401 - the module's fixture of raw scenes
from typer.testing import CliRunner

from landseg.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("cli_scaleout")
    paths = [write_synthetic_scene(root / "scenes", f"scene_{i}", (200, 300), seed=40 + i) for i in range(2)]
    return paths, save_tiny_checkpoint(root / "tiny.ckpt")


def test_predict_with_two_local_workers_matches_one_process(scenes, tmp_path):
    paths, checkpoint = scenes
    common = [
        "--checkpoint",
        checkpoint,
        "--engine",
        "torch",
        "--overlap",
        "0.5",
        "--block-width",
        "96",
        "--probabilities",
    ]
    single = invoke("predict", *paths, *common, "--out", tmp_path / "single")
    assert single.exit_code == 0, single.output
    cluster = invoke("predict", *paths, *common, "--out", tmp_path / "cluster", "--workers", "2")
    assert cluster.exit_code == 0, cluster.output
    assert "2 Dask workers" in cluster.output
    for path in paths:
        for kind in ("classes", "probabilities"):
            ours, theirs = (
                tmp_path / "cluster" / f"{path.stem}_{kind}.tif",
                tmp_path / "single" / f"{path.stem}_{kind}.tif",
            )
            np.testing.assert_array_equal(read_bands(ours), read_bands(theirs))
            assert profile_summary(ours) == profile_summary(theirs)
    # A rerun on the cluster finds every scene finished and starts no work.
    again = invoke("predict", *paths, *common, "--out", tmp_path / "cluster", "--workers", "2")
    assert again.exit_code == 0 and again.output.count("finished earlier, skipped") == 2


def test_prepare_all_with_two_local_workers_matches_the_sequential_run(raw, tmp_path):  # noqa: F811
    results = {}
    for name, extra in (("sequential", []), ("cluster", ["--workers", "2"])):
        settings = prepare_config(raw, tmp_path / name).to_yaml_dict()
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(settings))
        result = invoke("prepare", "all", path, *extra)
        # One scene of the four is truncated: quarantined, the others prepared, exit code 1.
        assert result.exit_code == 1 and "quarantined" in result.output and "Traceback" not in result.output
        results[name] = tmp_path / name
    ours, theirs = files(results["cluster"]), files(results["sequential"])
    assert sorted(ours) == sorted(theirs) and [n for n in ours if ours[n] != theirs[n]] == []
    stats = [json.loads((folder / "stats.json").read_text()) for folder in results.values()]
    np.testing.assert_allclose(stats[0]["bands"]["mean"], stats[1]["bands"]["mean"], rtol=1e-12)


@pytest.mark.parametrize(
    "options, problem",
    [
        (["--dask", "tcp://127.0.0.1:9", "--workers", "2"], "exclude each other"),
        (["--threads", "2"], "--threads sets the threads of Dask workers"),
    ],
)
def test_scale_out_options_that_cannot_work_are_one_line_errors(scenes, tmp_path, options, problem):
    paths, checkpoint = scenes
    result = invoke("predict", paths[0], "--checkpoint", checkpoint, "--out", tmp_path, *options)
    assert result.exit_code == 1 and problem in result.output and "Traceback" not in result.output
