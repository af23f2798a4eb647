"""Benchmark 5's ``--small`` mode runs end to end (a smoke run: nothing here is a measurement)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "prepare_throughput.py"


def test_prepare_throughput_small_mode_writes_its_json_and_table(tmp_path):
    results = tmp_path / "prepare_throughput.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--small",
            "--sizes",
            "96",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(results.read_text())
    assert payload["small"] and [s["stage"] for s in payload["stages"]] == ["align_mode", "align_nearest", "tile"]
    assert all(s["peak_rss_mb"] > 0 and s["input_mb"] > 0 for s in payload["stages"])
    assert payload["stages"][-1]["chips"] == 1 and payload["environment"]["gdal"]
    assert "| 96² (960² labels) | align_mode |" in done.stdout
