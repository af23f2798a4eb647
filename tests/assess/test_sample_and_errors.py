"""``landseg sample`` (streamed, seeded, never on no-data, allocation rules, labelling sheet), a sample
labelled from known truth and assessed, and every bad input ``assess`` must refuse or report."""

import inspect
import json

import numpy as np
import pyogrio.raw
import pytest
import rasterio
from pyproj import Transformer
from tests.assess.conftest import EQUAL_AREA, pixel_centres, write_design, write_points, write_raster
from typer.testing import CliRunner

import landseg.assess.rasters as rasters
from landseg.assess.sample import SampleOptions, draw_sample
from landseg.cli.main import app


def _invoke(args, ok=True):
    result = CliRunner().invoke(app, args)
    assert (result.exit_code == 0) == ok, result.output
    return result


@pytest.fixture
def truth_and_map(tmp_path):
    """A 300 x 260 truth raster with a rare class and a no-data band, and a map of it with 15 % errors."""
    rng = np.random.default_rng(5)
    truth = np.zeros((300, 260), dtype=np.uint8)
    truth[:, 100:] = 1
    truth[200:, :] = 2
    truth[140:150, 30:60] = 3  # rare: 300 px
    noisy = rng.random(truth.shape) < 0.15
    classes = np.where(noisy, rng.integers(0, 4, truth.shape), truth).astype(np.uint8)
    classes[:20] = 255
    truth[:20] = 255
    return write_raster(tmp_path / "truth.tif", truth), write_raster(tmp_path / "map.tif", classes), classes, truth


def _read_points(path):
    meta, _, _, values = pyogrio.raw.read(path)
    return dict(zip(meta["fields"], values, strict=True)), meta


def test_sample_is_reproducible_never_on_nodata_and_independent_of_the_strip_height(
    truth_and_map, tmp_path, monkeypatch
):
    _, map_path, classes, _ = truth_and_map
    first = draw_sample(map_path, tmp_path / "a.gpkg", SampleOptions(size=120, seed=7))
    again = draw_sample(map_path, tmp_path / "b.gpkg", SampleOptions(size=120, seed=7))
    other = draw_sample(map_path, tmp_path / "c.gpkg", SampleOptions(size=120, seed=8))
    monkeypatch.setattr(rasters, "STRIP_PIXELS", 260 * 7)  # strips of 7 rows instead of the whole map
    strips = draw_sample(map_path, tmp_path / "d.gpkg", SampleOptions(size=120, seed=7))
    for result in (again, strips):
        assert result.points.rows.tolist() == first.points.rows.tolist()
        assert result.points.cols.tolist() == first.points.cols.tolist()
    assert other.points.rows.tolist() != first.points.rows.tolist()
    values = classes[first.points.rows, first.points.cols]
    assert (values != 255).all()
    assert (values == first.points.stratum).all()
    pairs = set(zip(first.points.rows.tolist(), first.points.cols.tolist(), strict=True))
    assert len(pairs) == len(first.points)  # without replacement


def test_sample_command_writes_points_csv_and_design(truth_and_map, tmp_path):
    _, map_path, classes, _ = truth_and_map
    out = tmp_path / "s" / "points.gpkg"
    _invoke(["sample", str(map_path), "--out", str(out), "--size", "200", "--min-per-stratum", "30", "--seed", "3"])
    fields, meta = _read_points(out)
    assert meta["crs"] == "EPSG:6933"
    assert set(fields) >= {"id", "stratum", "map_class", "reference", "inclusion_probability"}
    assert all(v is None for v in fields["reference"])
    design = json.loads((out.parent / "points.design.json").read_text())
    strata = {s["value"]: s for s in design["strata"]}
    valid = classes[classes != 255]
    for value, stratum in strata.items():
        assert stratum["pixels"] == int((valid == value).sum())
        assert stratum["area_m2"] == pytest.approx(stratum["pixels"] * 900.0)
        assert stratum["inclusion_probability"] == pytest.approx(stratum["sample_size"] / stratum["pixels"])
        assert int((fields["stratum"] == value).sum()) == stratum["sample_size"]
    # Olofsson's rule: the rare class gets the minimum, the rest shared in proportion to size
    rare = min(strata, key=lambda v: strata[v]["pixels"])
    assert strata[rare]["sample_size"] == 30
    assert sum(s["sample_size"] for s in strata.values()) == 200
    assert (out.parent / "points.csv").read_text().count("\n") == 201


def test_allocations_and_target_se_through_the_command(truth_and_map, tmp_path):
    _, map_path, _, _ = truth_and_map
    _invoke(["sample", str(map_path), "--out", str(tmp_path / "e.gpkg"), "--size", "80", "--allocation", "equal"])
    equal = json.loads((tmp_path / "e.design.json").read_text())
    assert [s["sample_size"] for s in equal["strata"]] == [20, 20, 20, 20]
    _invoke(
        ["sample", str(map_path), "--out", str(tmp_path / "t.gpkg"), "--target-se", "0.02", "--expected-ua", "3=0.5"]
    )
    planned = json.loads((tmp_path / "t.design.json").read_text())
    assert planned["details"]["expected_users"]["3"] == 0.5
    assert sum(s["sample_size"] for s in planned["strata"]) >= planned["details"]["requested_size"]


def test_simple_and_systematic_samples(truth_and_map, tmp_path):
    _, map_path, classes, _ = truth_and_map
    simple = draw_sample(map_path, tmp_path / "r.gpkg", SampleOptions(method="simple", size=50, seed=1))
    assert len(simple.points) == 50 and (classes[simple.points.rows, simple.points.cols] != 255).all()
    systematic = draw_sample(map_path, tmp_path / "y.gpkg", SampleOptions(method="systematic", size=100, seed=1))
    spacing = systematic.design.details["spacing_px"]
    assert np.unique(np.diff(np.unique(systematic.points.rows))).tolist() == [spacing]
    assert (classes[systematic.points.rows, systematic.points.cols] != 255).all()
    assert systematic.design.strata[0].sample_size == len(systematic.points)


def test_a_labelled_sample_estimates_the_true_areas(truth_and_map, tmp_path):
    truth_path, map_path, classes, truth = truth_and_map
    points = tmp_path / "points.gpkg"
    _invoke(
        ["sample", str(map_path), "--out", str(points), "--size", "400", "--seed", "11", "--image", str(truth_path)]
    )
    assert (tmp_path / "points.html").read_text().count("<img") == 400
    fields, _ = _read_points(points)
    labels = truth[fields["row"], fields["col"]]
    labelled = tmp_path / "labelled.gpkg"
    x, y = pixel_centres(fields["row"], fields["col"])
    write_points(labelled, x, y, {"id": list(fields["id"]), "reference": [str(v) for v in labels]})
    out = tmp_path / "out"
    _invoke(
        ["assess", str(map_path), str(labelled), "--design", str(tmp_path / "points.design.json"), "--out", str(out)]
    )
    summary = json.loads((out / "accuracy.json").read_text())
    valid = truth != 255
    for row in summary["per_class"]:
        true_ha = (truth[valid] == row["value"]).sum() * 900 / 10_000
        area = row["estimated_area_ha"]
        # Within three standard errors (a 99.7 % interval): one seeded draw, so no flaky coverage test
        assert abs(area["estimate"] - true_ha) <= 3 * area["se"] + 1e-9, row["class"]
    true_overall = (classes[valid] == truth[valid]).mean()
    overall = summary["overall_accuracy"]
    assert abs(overall["estimate"] - true_overall) <= 3 * overall["se"]


@pytest.fixture
def labelled(truth_and_map, tmp_path):
    """A drawn sample of the map labelled from the truth."""
    _truth_path, map_path, _, truth = truth_and_map
    points = tmp_path / "p.gpkg"
    draw_sample(map_path, points, SampleOptions(size=60, seed=2, minimum=10))
    fields, _ = _read_points(points)
    return map_path, points, fields, [str(v) for v in truth[fields["row"], fields["col"]]]


def _assess(map_path, points, design, out, ok=True):
    return _invoke(["assess", str(map_path), str(points), "--design", str(design), "--out", str(out)], ok=ok)


def test_a_stratum_with_one_point_is_refused_by_name(labelled, tmp_path):
    map_path, _points, fields, references = labelled
    keep = (fields["stratum"] != 3) | (np.cumsum(fields["stratum"] == 3) == 1)
    x, y = pixel_centres(fields["row"][keep], fields["col"][keep])
    subset = write_points(
        tmp_path / "one.gpkg", x, y, {"reference": [r for r, k in zip(references, keep, strict=True) if k]}
    )
    result = _assess(map_path, subset, tmp_path / "p.design.json", tmp_path / "o", ok=False)
    assert "stratum 3 has 1" in result.output and "variance" in result.output
    assert not (tmp_path / "o" / "accuracy.json").exists()


def test_unknown_reference_values_are_listed_with_counts(labelled, tmp_path):
    map_path, _, fields, references = labelled
    references[:3] = ["water", "water", "cloud"]
    x, y = pixel_centres(fields["row"], fields["col"])
    bad = write_points(tmp_path / "bad.gpkg", x, y, {"reference": references})
    result = _assess(map_path, bad, tmp_path / "p.design.json", tmp_path / "o", ok=False)
    assert "'water' (2 points), 'cloud' (1 points)" in result.output


def test_points_outside_the_map_or_on_nodata_are_counted_and_reported(labelled, tmp_path):
    map_path, _, fields, references = labelled
    x, y = pixel_centres(fields["row"], fields["col"])
    outside_x, outside_y = pixel_centres([-5, 10], [3, 400])  # above the map; right of it
    nodata_x, nodata_y = pixel_centres([5], [5])  # in the no-data band
    extra = write_points(
        tmp_path / "extra.gpkg",
        [*x, *outside_x, *nodata_x],
        [*y, *outside_y, *nodata_y],
        {"reference": [*references, "0", "0", "0"]},
    )
    result = _assess(map_path, extra, tmp_path / "p.design.json", tmp_path / "o")
    assert "2 outside the map, 1 on no-data" in result.output
    summary = json.loads((tmp_path / "o" / "accuracy.json").read_text())
    assert (summary["points_outside_map"], summary["points_on_nodata"], summary["points_used"]) == (2, 1, len(x))


def test_points_in_another_crs_are_reprojected(labelled, tmp_path):
    map_path, _points, fields, references = labelled
    x, y = pixel_centres(fields["row"], fields["col"])
    same = write_points(tmp_path / "same.gpkg", x, y, {"reference": references})
    lon, lat = Transformer.from_crs(EQUAL_AREA, "EPSG:4326", always_xy=True).transform(x, y)
    wgs84 = write_points(tmp_path / "wgs84.gpkg", lon, lat, {"reference": references}, crs="EPSG:4326")
    _assess(map_path, same, tmp_path / "p.design.json", tmp_path / "a")
    result = _assess(map_path, wgs84, tmp_path / "p.design.json", tmp_path / "b")
    assert "reprojected from EPSG:4326" in result.output
    a = json.loads((tmp_path / "a" / "accuracy.json").read_text())
    b = json.loads((tmp_path / "b" / "accuracy.json").read_text())
    assert b["points_used"] == len(x) and b["points_reprojected"]
    assert a["overall_accuracy"] == b["overall_accuracy"]


def test_a_design_that_does_not_match_the_map_is_refused(labelled, tmp_path):
    map_path, _points, fields, references = labelled
    design = json.loads((tmp_path / "p.design.json").read_text())
    design["strata"][0]["pixels"] += 5
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(design))
    x, y = pixel_centres(fields["row"], fields["col"])
    with_labels = write_points(tmp_path / "l.gpkg", x, y, {"reference": references})
    result = _assess(map_path, with_labels, wrong, tmp_path / "o", ok=False)
    assert "design does not match map.tif" in result.output and "px in the design" in result.output
    other_grid = write_design(tmp_path / "grid.json", design["strata"])
    grid = json.loads(other_grid.read_text())
    grid["map"] = {"transform": [10.0, 0, 0, 0, -10.0, 0], "width": 5, "height": 5}
    other_grid.write_text(json.dumps(grid))
    result = _assess(map_path, with_labels, other_grid, tmp_path / "o", ok=False)
    assert "drawn on another grid" in result.output


def test_without_a_design_only_the_sample_confusion_matrix_and_why(labelled, tmp_path):
    map_path, _, fields, references = labelled
    x, y = pixel_centres(fields["row"], fields["col"])
    points = write_points(tmp_path / "nodesign.gpkg", x, y, {"reference": references})
    out = tmp_path / "o"
    result = _invoke(["assess", str(map_path), str(points), "--out", str(out)])
    assert "no design" in result.output and "probability sample" in result.output
    summary = json.loads((out / "accuracy.json").read_text())
    assert "overall_accuracy" not in summary and "inclusion probability" in summary["why_no_estimates"]
    assert np.array(summary["sample_confusion_matrix"]["counts"]).sum() == len(x)
    assert not (out / "areas.csv").exists()


def test_a_change_map_is_assessed_by_its_from_to_classes(tmp_path):
    legend = {"0": "forest → forest", "1": "forest → field", "2": "field → forest", "3": "field → field"}
    rng = np.random.default_rng(0)
    codes = rng.choice([0, 1, 2, 3], size=(120, 120), p=[0.5, 0.05, 0.05, 0.4]).astype(np.uint8)
    change = write_raster(tmp_path / "change.tif", codes, tags={"landseg_change_legend": json.dumps(legend)})
    points = tmp_path / "c.gpkg"
    _invoke(["sample", str(change), "--out", str(points), "--size", "80", "--min-per-stratum", "10"])
    fields, _ = _read_points(points)
    assert set(fields["map_class"]) == set(legend.values())
    x, y = pixel_centres(fields["row"], fields["col"])
    labelled_points = write_points(tmp_path / "cl.gpkg", x, y, {"reference": list(fields["map_class"])})
    out = tmp_path / "o"
    _invoke(
        ["assess", str(change), str(labelled_points), "--design", str(tmp_path / "c.design.json"), "--out", str(out)]
    )
    summary = json.loads((out / "accuracy.json").read_text())
    assert summary["classes"] == list(legend.values())
    assert summary["overall_accuracy"]["estimate"] == pytest.approx(1.0)
    gain = next(r for r in summary["per_class"] if r["class"] == "field → forest")
    assert gain["estimated_area_ha"]["estimate"] == pytest.approx(gain["mapped_area_ha"])


def test_sample_and_assess_stream_under_the_bounded_block_cache(labelled, tmp_path, monkeypatch):
    import landseg.assess.run as run
    import landseg.assess.sample as sample

    map_path, points, fields, references = labelled
    seen = []

    def recording(count):
        def wrapped(*args):
            seen.append(rasterio.env.getenv().get("GDAL_CACHEMAX"))
            return count(*args)

        return wrapped

    monkeypatch.setattr(sample, "count_values", recording(sample.count_values))
    monkeypatch.setattr(run, "count_values", recording(run.count_values))
    sample.draw_sample(map_path, tmp_path / "again.gpkg", SampleOptions(size=60, seed=2, minimum=10))
    x, y = pixel_centres(fields["row"], fields["col"])
    labelled_points = write_points(tmp_path / "l.gpkg", x, y, {"reference": references})
    run.assess_map(
        map_path, labelled_points, "reference", tmp_path / "o", design_path=points.with_suffix(".design.json")
    )
    assert seen == [rasters.GDAL_CACHE_MB, rasters.GDAL_CACHE_MB]
    assert not rasterio.env.hasenv() or rasterio.env.getenv().get("GDAL_CACHEMAX") != rasters.GDAL_CACHE_MB
    # The decorator keeps the real signatures (for help(), IDEs and type checkers), not (*args, **kwargs).
    assert list(inspect.signature(run.assess_map).parameters)[:4] == [
        "map_path",
        "points_path",
        "reference_field",
        "out_dir",
    ]
    assert "strata_path" in inspect.signature(sample.draw_sample).parameters


def test_an_uncertainty_raster_cut_at_breaks_stratifies_the_sample(truth_and_map, tmp_path):
    """A probability-type COG (uint8 steps of 1/254, as predict --uncertainty writes it) cut at 0.3 and 0.6:
    the strata raster written beside the points holds each pixel's bin, its legend names the bins, and
    the design's strata count exactly those pixels (no-data left out)."""
    _, map_path, classes, _ = truth_and_map
    rng = np.random.default_rng(5)
    stored = rng.integers(0, 255, size=classes.shape, dtype=np.uint8)
    stored[classes == 255] = 255
    uncertainty = write_raster(tmp_path / "uncertainty.tif", stored)
    with rasterio.open(uncertainty, "r+") as dst:
        dst.scales = (1 / 254,)
    out = tmp_path / "points.gpkg"
    _invoke(["sample", str(map_path), "--out", str(out), "--strata", str(uncertainty), "--strata-breaks", "0.3,0.6"])
    with rasterio.open(tmp_path / "points.strata.tif") as written:
        bins = written.read(1)
    valid = stored != 255
    expected = np.digitize(stored / 254, [0.3, 0.6])
    np.testing.assert_array_equal(bins[valid], expected[valid])
    assert (bins[~valid] == 255).all()
    design = json.loads((tmp_path / "points.design.json").read_text())
    assert [s["name"] for s in design["strata"]] == ["< 0.3", "0.3 to < 0.6", ">= 0.6"]
    assert [s["pixels"] for s in design["strata"]] == np.bincount(expected[valid], minlength=3).tolist()
    refused = _invoke(["sample", str(map_path), "--out", str(out), "--strata-breaks", "0.3"], ok=False)
    assert "give --strata too" in refused.output
    refused = _invoke(["sample", str(map_path), "--strata", str(uncertainty), "--strata-breaks", "0.6,0.3"], ok=False)
    assert "must increase" in refused.output
