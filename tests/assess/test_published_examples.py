"""Olofsson et al. (2014) and Stehman (2014) worked examples end to end through ``landseg assess``:
a class raster and a GeoPackage of labelled points built here, the design written as a sampler would."""

import json

import numpy as np
import pytest
from tests.assess.conftest import pixel_centres, write_design, write_points, write_raster
from tests.assess.test_estimators import (
    MAPAC_AREAS,
    MAPAC_OVERALL,
    MAPAC_PRODUCERS,
    MAPAC_USERS,
    OLOFSSON_COUNTS,
    OLOFSSON_PIXELS,
    STEHMAN_MAP,
    STEHMAN_REFERENCE,
    STEHMAN_SIZES,
    STEHMAN_STRATA,
)
from typer.testing import CliRunner

from landseg.assess.estimators import stratified_estimates
from landseg.cli.main import app

NAMES = ["deforestation", "forest gain", "stable forest", "stable non-forest"]


def _run(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def olofsson_case(tmp_path, forest_schema):
    """10 million 30 m pixels with the paper's mapped areas; 640 points with its error matrix's counts."""
    width = 4000
    flat = np.repeat(np.arange(1, 5, dtype=np.uint8), OLOFSSON_PIXELS)
    classes = flat.reshape(-1, width)
    map_path = write_raster(tmp_path / "map.tif", classes)
    rng = np.random.default_rng(14)
    starts = np.concatenate([[0], np.cumsum(OLOFSSON_PIXELS)[:-1]])
    xs, ys, references = [], [], []
    for i in range(4):
        total = OLOFSSON_COUNTS[i].sum()
        chosen = starts[i] + rng.choice(OLOFSSON_PIXELS[i], size=total, replace=False)
        x, y = pixel_centres(chosen // width, chosen % width)
        xs += list(x)
        ys += list(y)
        references += [NAMES[j] for j in range(4) for _ in range(OLOFSSON_COUNTS[i, j])]
    points = write_points(tmp_path / "points.gpkg", xs, ys, {"id": list(range(1, 641)), "truth": references})
    strata = [
        {"value": i + 1, "pixels": int(OLOFSSON_PIXELS[i]), "sample_size": int(OLOFSSON_COUNTS[i].sum())}
        for i in range(4)
    ]
    design = write_design(tmp_path / "design.json", strata)
    return map_path, points, design, forest_schema


def test_olofsson_2014_worked_example(olofsson_case, tmp_path):
    map_path, points, design, schema = olofsson_case
    out = tmp_path / "out"
    result = _run(
        [
            "assess",
            str(map_path),
            str(points),
            "--reference-field",
            "truth",
            "--design",
            str(design),
            "--schema",
            str(schema),
            "--out",
            str(out),
        ]
    )
    assert "overall accuracy 0.947" in result.output
    summary = json.loads((out / "accuracy.json").read_text())
    rows = {row["class"]: row for row in summary["per_class"]}

    def half(entry):
        return (entry["ci95"][1] - entry["ci95"][0]) / 2

    # Section 5, p. 54: areas (ha) ± 95 % half-widths as printed. Ours use the finite population
    # correction (Stehman 2014) and z = 1.95996 rather than 1.96: each half-width moves by under 2 ha.
    printed_areas = {
        "deforestation": (21_158, 6_158),
        "forest gain": (11_686, 3_756),
        "stable forest": (285_770, 15_510),
        "stable non-forest": (581_386, 16_282),
    }
    for name, (area, half_width) in printed_areas.items():
        estimate = rows[name]["estimated_area_ha"]
        assert estimate["estimate"] == pytest.approx(area, abs=0.5)
        assert half(estimate) == pytest.approx(half_width, abs=2.0)
    assert rows["deforestation"]["mapped_area_ha"] == pytest.approx(18_000)  # the map's 200,000 pixels
    # User's accuracies ± half-widths as printed (to two decimals)
    for name, (ua, ua_half) in zip(NAMES, [(0.88, 0.07), (0.73, 0.10), (0.93, 0.04), (0.96, 0.02)], strict=True):
        assert rows[name]["users_accuracy"]["estimate"] == pytest.approx(ua, abs=0.005)
        assert half(rows[name]["users_accuracy"]) == pytest.approx(ua_half, abs=0.005)
    # Producer's accuracies: the printed estimates 0.75, 0.85, 0.93, 0.96 hold. Of the printed half-widths
    # (0.21, 0.23, 0.03, 0.01), forest gain's and stable non-forest's disagree with the paper's own
    # equations (its eq. for V(P_j)): the equations give 0.254 and 0.018, and we follow the equations.
    for name, (pa, pa_half) in zip(NAMES, [(0.75, 0.213), (0.85, 0.254), (0.93, 0.034), (0.96, 0.018)], strict=True):
        assert rows[name]["producers_accuracy"]["estimate"] == pytest.approx(pa, abs=0.005)
        assert half(rows[name]["producers_accuracy"]) == pytest.approx(pa_half, abs=0.0015)
    overall = summary["overall_accuracy"]
    assert overall["estimate"] == pytest.approx(0.95, abs=0.005)
    assert half(overall) == pytest.approx(0.02, abs=0.005)
    # The error matrix in area proportions: row "deforestation" is W_1 * n_1j / n_1.
    matrix = np.array(summary["error_matrix"]["proportions"])
    assert matrix[0] == pytest.approx(0.02 * OLOFSSON_COUNTS[0] / 75)
    assert matrix.sum() == pytest.approx(1.0)
    assert np.array(summary["error_matrix"]["sample_counts"]).tolist() == OLOFSSON_COUNTS.tolist()
    for name in ("error_matrix.csv", "areas.csv", "areas.png", "accuracies.png", "report.html"):
        assert (out / name).stat().st_size > 0
    assert "deforestation,200000,18000.0," in (out / "areas.csv").read_text()


@pytest.fixture
def stehman_case(tmp_path):
    """Stehman's table 2 on a 400 x 250 grid: strata 1-4 in bands of rows (40,000, 30,000, 20,000 and
    10,000 pixels), map classes A-D in bands of columns across them, so the strata are not the classes."""
    width = 400
    stratum_rows = np.repeat([1, 2, 3, 4], [100, 75, 50, 25]).astype(np.uint8)
    strata = np.repeat(stratum_rows[:, None], width, axis=1)
    classes = np.repeat(np.repeat([1, 2, 3, 4], 100)[None, :], 250, axis=0).astype(np.uint8)
    legend = {"A": 1, "B": 2, "C": 3, "D": 4}
    schema = tmp_path / "abcd.yaml"
    schema.write_text(
        "name: abcd\nclasses:\n"
        + "".join(f"  - {{name: {n}, color: '#{c * 40:02x}8080', code: {c}}}\n" for n, c in legend.items())
    )
    map_path = write_raster(tmp_path / "map.tif", classes)
    strata_path = write_raster(tmp_path / "strata.tif", strata)
    rng = np.random.default_rng(2014)
    rows, cols = [], []
    used = set()
    for h, m in zip(STEHMAN_STRATA, STEHMAN_MAP, strict=True):
        while True:
            row = rng.choice(np.flatnonzero(stratum_rows == h))
            col = rng.integers(0, 100) + 100 * (legend[m] - 1)
            if (row, col) not in used:
                used.add((row, col))
                break
        rows.append(row)
        cols.append(col)
    x, y = pixel_centres(rows, cols)
    points = write_points(tmp_path / "points.gpkg", x, y, {"id": list(range(1, 41)), "reference": STEHMAN_REFERENCE})
    design = write_design(
        tmp_path / "design.json",
        [{"value": h, "pixels": n, "sample_size": 10} for h, n in STEHMAN_SIZES.items()],
        strata_source=str(strata_path),
    )
    return map_path, points, design, schema


def test_stehman_2014_worked_example_with_strata_that_are_not_the_map_classes(stehman_case, tmp_path):
    map_path, points, design, schema = stehman_case
    out = tmp_path / "out"
    _run(["assess", str(map_path), str(points), "--design", str(design), "--schema", str(schema), "--out", str(out)])
    summary = json.loads((out / "accuracy.json").read_text())
    rows = summary["per_class"]
    assert [r["class"] for r in rows] == ["A", "B", "C", "D"]
    # Estimates equal the R implementations' (and the paper's: A 0.35, C 0.20, OA 0.63, UA_B 0.574,
    # PA_B 0.794). Our standard errors include Stehman's finite population correction (his eq. 25),
    # which mapac's documented output omits: with n_h / N_h at most 1/1000 they agree within 0.05 %.
    assert summary["overall_accuracy"]["estimate"] == pytest.approx(MAPAC_OVERALL[0], abs=1e-9)
    assert summary["overall_accuracy"]["se"] == pytest.approx(MAPAC_OVERALL[1], rel=6e-4)
    for row, ua, pa, area in zip(rows, MAPAC_USERS, MAPAC_PRODUCERS, MAPAC_AREAS, strict=True):
        assert row["users_accuracy"]["estimate"] == pytest.approx(ua[0], abs=1e-7)
        assert row["users_accuracy"]["se"] == pytest.approx(ua[1], rel=6e-4)
        assert row["producers_accuracy"]["estimate"] == pytest.approx(pa[0], abs=1e-7)
        assert row["producers_accuracy"]["se"] == pytest.approx(pa[1], rel=6e-4)
        assert row["area_proportion"]["estimate"] == pytest.approx(area[0], abs=1e-9)
        assert row["area_proportion"]["se"] == pytest.approx(area[1], rel=6e-4)
    # ... and exactly the estimators with the correction, called on plain arrays
    exact = stratified_estimates(
        STEHMAN_STRATA, STEHMAN_MAP, STEHMAN_REFERENCE, STEHMAN_SIZES, stratum_pixels=STEHMAN_SIZES
    )
    assert summary["overall_accuracy"]["se"] == pytest.approx(exact.overall.se, rel=1e-9)
    assert [r["users_accuracy"]["se"] for r in rows] == pytest.approx([u.se for u in exact.users], rel=1e-9)
    assert summary["error_matrix"]["proportions"][1][2] == pytest.approx(0.08)
    # 100,000 pixels of 900 m² = 9,000 ha; class A's area is 35 % of it
    assert rows[0]["estimated_area_ha"]["estimate"] == pytest.approx(0.35 * 9000)
