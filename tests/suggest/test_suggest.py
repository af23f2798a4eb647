"""``landseg suggest``: windows scored from the uncertainty map the core writes, chosen most uncertain
first under the spacing rule, and written as a ranked CSV, a GeoPackage of boxes and a gallery."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
from tests.helpers import SCHEMA, save_tiny_checkpoint, write_geotiff
from typer.testing import CliRunner

from landseg.cli import app
from landseg.data.synthetic import generate_scene, write_scene
from landseg.suggest.windows import Candidate, choose_diverse, score_windows

runner = CliRunner()


def candidate(scene: str, row: int, col: int, score: float) -> Candidate:
    return Candidate(Path(scene), row, col, row * 8, col * 8, 8, 8, score, 1.0, (64, 0))


def test_spacing_rule_spreads_the_choice_beyond_one_uncertain_patch():
    """A 3 x 3 block of very uncertain windows in scene a (a cloud) and scattered, less uncertain windows
    elsewhere: without the rule the top five are all in the block; with spacing 2 the block gives
    windows at least two apart (at most four of a 3 x 3 block) and the rest come from elsewhere."""
    block = [candidate("a", r, c, 0.9 - 0.01 * (3 * r + c)) for r in range(3) for c in range(3)]
    scattered = [candidate("a", 6, 6, 0.5), candidate("b", 0, 0, 0.6), candidate("b", 0, 1, 0.55)]
    pool = block + scattered
    assert {(c.scene.name, c.row, c.col) for c in choose_diverse(pool, 5, spacing=1)} <= {
        ("a", r, c) for r in range(3) for c in range(3)
    }
    chosen = choose_diverse(pool, 5, spacing=2)
    assert [c.score for c in chosen] == sorted((c.score for c in chosen), reverse=True)
    for i, first in enumerate(chosen):
        for second in chosen[i + 1 :]:
            if first.scene == second.scene:
                assert max(abs(first.row - second.row), abs(first.col - second.col)) >= 2
    in_block = [c for c in chosen if c.scene.name == "a" and c.row < 3 and c.col < 3]
    assert [(c.row, c.col) for c in in_block] == [(0, 0), (0, 2), (2, 0), (2, 2)]
    assert (chosen[-1].scene.name, chosen[-1].row) == ("b", 0)  # b's best; its neighbour is too close
    with pytest.raises(ValueError, match="budget"):
        choose_diverse(pool, 0)


def test_window_scores_are_the_mean_uncertainty_of_mapped_pixels(tmp_path):
    rng = np.random.default_rng(1)
    unsure = rng.integers(0, 255, size=(50, 70), dtype=np.uint8)  # 255: no-data
    unsure[:20, :20] = 255  # window (0, 0) of 32 px: 400 of 1024 pixels unmapped
    classes = rng.integers(0, 3, size=(50, 70), dtype=np.uint8)
    u, c = write_geotiff(tmp_path / "u.tif", unsure), write_geotiff(tmp_path / "c.tif", classes)
    scored = {(w.row, w.col): w for w in score_windows(tmp_path / "s.tif", u, c, 32, 3, min_valid=0.5)}
    # The last column of windows is 6 px wide: under half a window; the last row, 18 x 32 px, is over it.
    assert set(scored) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for (row, col), window in scored.items():
        part = unsure[row * 32 : row * 32 + 32, col * 32 : col * 32 + 32]
        labels = classes[row * 32 : row * 32 + 32, col * 32 : col * 32 + 32]
        mapped = part != 255
        assert window.score == pytest.approx(part[mapped].mean() / 254)
        assert window.valid_fraction == pytest.approx(mapped.sum() / 1024)
        assert window.class_pixels == tuple(np.bincount(labels[mapped], minlength=3))
    assert scored[(0, 0)].valid_fraction == pytest.approx(624 / 1024)


def test_suggest_writes_ranked_boxes_and_gallery_from_the_uncertainty_map(tmp_path):
    scenes = []
    for seed in range(2):
        image, _ = write_scene(
            generate_scene((160, 224), seed=seed), tmp_path / f"scene_{seed}.tif", tmp_path / "labels" / f"{seed}.tif"
        )
        scenes.append(image)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "out"
    args = ["suggest", *map(str, scenes), "-c", str(checkpoint), "--out", str(out), "--budget", "4"]
    result = runner.invoke(app, [*args, "--size", "64", "--engine", "torch"])
    assert result.exit_code == 0, result.output
    with open(out / "suggestions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    scores = [float(r["uncertainty"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        stem = Path(row["scene"]).stem
        with rasterio.open(out / "maps" / f"{stem}_uncertainty.tif") as written:
            window = rasterio.windows.Window(*(int(row[k]) for k in ("col_off", "row_off", "width", "height")))
            part = written.read(1, window=window)
            bounds = rasterio.windows.bounds(window, written.transform)
        assert float(row["uncertainty"]) == pytest.approx(part[part != 255].mean() / 254, abs=1e-6)
        assert [float(row[k]) for k in ("left", "bottom", "right", "top")] == pytest.approx(list(bounds))
    meta, _, geometry, fields = pyogrio.raw.read(out / "suggestions.gpkg")
    assert "32632" in meta["crs"] and len(geometry) == 4
    assert fields[list(meta["fields"]).index("rank")].tolist() == [1, 2, 3, 4]
    report = (out / "report.html").read_text()
    assert report.count("<img") == 4 and "uncertainty" in report
    # Every window the scenes offer scored at most as high as the last suggestion, unless the spacing
    # rule skipped it for a chosen neighbour.
    offered = [w for scene in scenes for w in _windows(out, scene)]
    chosen = {(r["scene"], int(r["row_off"]), int(r["col_off"])) for r in rows}
    for w in offered:
        if (str(w.scene), w.row_off, w.col_off) in chosen or w.score <= scores[-1] + 1e-9:
            continue
        assert any(
            r["scene"] == str(w.scene)
            and max(abs(int(r["row_off"]) - w.row_off), abs(int(r["col_off"]) - w.col_off)) < 2 * 64
            for r in rows
        )


def _windows(out: Path, scene: Path) -> list[Candidate]:
    maps = out / "maps"
    return score_windows(
        scene, maps / f"{scene.stem}_uncertainty.tif", maps / f"{scene.stem}_classes.tif", 64, SCHEMA.num_classes
    )
