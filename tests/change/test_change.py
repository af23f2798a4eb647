"""landseg change: exact matrices, other grids, no-data, streaming, bad input, the command."""

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window
from tests.change.conftest import GRID, K, known_pair, reference_matrix, write_map
from typer.testing import CliRunner

from landseg.change.run import ChangeOptions, compare_maps
from landseg.classes import IGNORE_INDEX
from landseg.cli.main import app
from landseg.errors import ConfigError, DataError
from landseg.maps.areas import pixel_areas

QUICK = ChangeOptions(block=32, polygons=None, pictures=False)


def ground_hectares(before: np.ndarray, after: np.ndarray, crs="EPSG:32632", transform=GRID) -> np.ndarray:
    """The transition matrix in ha, each pixel weighted by its own ground area (the maps' one area function)."""
    areas = pixel_areas(
        rasterio.crs.CRS.from_user_input(crs), transform, Window(0, 0, before.shape[1], before.shape[0])
    )
    valid = (before != IGNORE_INDEX) & (after != IGNORE_INDEX)
    codes = before[valid].astype(int) * K + after[valid]
    return np.bincount(codes, weights=areas[valid], minlength=K * K).reshape(K, K) / 1e4


def run(tmp_path, before, after, out="out", options=QUICK, **kwargs):
    b = write_map(tmp_path / "before.tif", before) if isinstance(before, np.ndarray) else before
    a = write_map(tmp_path / "after.tif", after) if isinstance(after, np.ndarray) else after
    return compare_maps(b, a, tmp_path / out, schema="synthetic", options=options, **kwargs)


def test_known_transitions_exact_in_pixels_and_hectares(tmp_path):
    before, after = known_pair()
    result = run(tmp_path, before, after)
    pixels = np.array(result.summary["pixels"])
    assert (pixels == reference_matrix(before, after)).all()
    assert result.summary["changed_pixels"] == 600 - int((before[10:30, 20:50] == 2).sum()) + 100 - int(
        (before[40:50, 0:10] == 4).sum()
    )
    np.testing.assert_allclose(result.summary["hectares"], ground_hectares(before, after), rtol=1e-9)
    # UTM 32N 100 km east of its central meridian: a 10 m pixel covers 100 m² divided by the areal scale.
    np.testing.assert_allclose(result.summary["hectares"], pixels * 0.01 / 0.99945, rtol=1e-4)
    water = result.summary["per_class"][2]
    assert water["gain_pixels"] == int((before[10:30, 20:50] != 2).sum())
    assert water["net_ha"] == pytest.approx(water["after_ha"] - water["before_ha"])
    with open(result.paths["pixels_csv"]) as handle:
        rows = [line.strip().split(",") for line in handle]
    assert [int(v) for v in rows[1][1:-1]] == pixels[0].tolist()
    assert json.loads(result.paths["json"].read_text())["pixels"] == pixels.tolist()


def test_streamed_blocks_equal_the_in_memory_reference(tmp_path):
    rng = np.random.default_rng(3)
    before = rng.integers(0, K, (100, 90)).astype(np.uint8)
    after = np.where(rng.random(before.shape) < 0.3, rng.integers(0, K, before.shape), before).astype(np.uint8)
    before[rng.random(before.shape) < 0.05] = IGNORE_INDEX
    result = run(tmp_path, before, after, options=ChangeOptions(block=16, polygons=None, pictures=False))
    assert (np.array(result.summary["pixels"]) == reference_matrix(before, after)).all()
    with rasterio.open(result.paths["change"]) as written:
        codes = written.read(1)
        assert written.transform == GRID
    expected = np.where(
        (before == IGNORE_INDEX) | (after == IGNORE_INDEX), IGNORE_INDEX, before.astype(int) * K + after
    )
    assert (codes == expected).all()


def test_nodata_on_either_date_is_excluded_and_reported(tmp_path):
    before, after = known_pair()
    before[:5] = IGNORE_INDEX  # 400 px
    after[:, -3:] = IGNORE_INDEX  # 180 px, 15 of them also no-data BEFORE
    result = run(tmp_path, before, after)
    assert (np.array(result.summary["pixels"]) == reference_matrix(before, after)).all()
    excluded = result.summary["excluded"]
    assert (excluded["before_nodata"], excluded["after_nodata"], excluded["either"]) == (400, 180, 565)
    assert excluded["either_ha"] == pytest.approx(5.65 / 0.99945, rel=1e-4)
    assert result.summary["compared_pixels"] == 60 * 80 - 565


def test_after_on_another_crs_and_resolution(tmp_path):
    """AFTER reprojected to UTM 33N at 7 m: the matrix equals the exact one within the resampling error.

    Two nearest-neighbour resamplings (to 7 m, then back to BEFORE's 10 m grid) move a pixel's value by
    at most one AFTER pixel, so only pixels next to a class edge of AFTER can take a wrong class; each
    such pixel moves one count between two cells, so the L1 distance between the matrices is at most
    twice the number of BEFORE pixels on AFTER's class edges."""
    before, after = known_pair()
    pad = 8  # AFTER covers more ground than BEFORE, so every BEFORE pixel has an AFTER pixel
    big = np.pad(after, pad, mode="edge")
    big_grid = GRID * Affine.translation(-pad, -pad)
    dst_crs = "EPSG:32633"
    transform, width, height = calculate_default_transform(
        "EPSG:32632",
        dst_crs,
        big.shape[1],
        big.shape[0],
        *rasterio.transform.array_bounds(*big.shape, big_grid),
        resolution=7.0,
    )
    moved = np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
    reproject(
        big,
        moved,
        src_transform=big_grid,
        src_crs="EPSG:32632",
        dst_transform=transform,
        dst_crs=dst_crs,
        resampling=Resampling.nearest,
        src_nodata=IGNORE_INDEX,
        dst_nodata=IGNORE_INDEX,
    )
    write_map(tmp_path / "after_33n.tif", moved, crs=dst_crs, transform=transform)
    result = run(tmp_path, before, tmp_path / "after_33n.tif")
    assert result.facts["resampled"]
    exact = reference_matrix(before, after)
    got = np.array(result.summary["pixels"])
    edge = np.zeros(after.shape, bool)
    edge[:-1] |= after[:-1] != after[1:]
    edge[1:] |= after[:-1] != after[1:]
    edge[:, :-1] |= after[:, :-1] != after[:, 1:]
    edge[:, 1:] |= after[:, :-1] != after[:, 1:]
    assert got.sum() == exact.sum() == before.size  # every pixel compared: none lost at the borders
    assert np.abs(got - exact).sum() <= 2 * edge.sum()
    assert np.abs(got - exact).sum() <= 0.05 * before.size


def test_after_without_nodata_on_a_coarser_grid_covering_half(tmp_path):
    """AFTER: 20 m pixels over BEFORE's right half, no no-data value; BEFORE pixels outside its footprint
    are AFTER no-data, and inside it nearest neighbour is exact (10 m centres lie inside 20 m pixels)."""
    before, after = known_pair()
    coarse = after[::2, 40::2].copy()  # the parcels are 10 px, so every 20 m pixel is one class
    write_map(
        tmp_path / "coarse.tif", coarse, nodata=None, transform=GRID * Affine.translation(40, 0) * Affine.scale(2)
    )
    result = run(tmp_path, before, tmp_path / "coarse.tif")
    assert result.facts["resampled"] and result.facts["overlap_offset"] == [40, 0]
    assert (np.array(result.summary["pixels"]) == reference_matrix(before[:, 40:], after[:, 40:])).all()
    assert result.summary["excluded"]["after_nodata"] == 0  # the overlap window is the right half only
    with rasterio.open(result.paths["change"]) as written:
        assert written.width == 40 and written.transform == GRID * Affine.translation(40, 0)


def test_geographic_map_counts_true_hectares(tmp_path):
    before, after = known_pair()
    grid = Affine(0.0002, 0, 10.0, 0, -0.0002, 60.0)  # about 11 x 22 m at 60 degrees north
    b = write_map(tmp_path / "before.tif", before, crs="EPSG:4326", transform=grid)
    a = write_map(tmp_path / "after.tif", after, crs="EPSG:4326", transform=grid)
    result = compare_maps(b, a, tmp_path / "out", schema="synthetic", options=QUICK)
    areas = pixel_areas(rasterio.crs.CRS.from_epsg(4326), grid, Window(0, 0, before.shape[1], before.shape[0]))
    hectares = np.array(result.summary["hectares"])
    np.testing.assert_allclose(hectares, ground_hectares(before, after, "EPSG:4326", grid), rtol=1e-9)
    assert hectares.sum() == pytest.approx(areas.sum() / 1e4, rel=1e-9)
    # the 100 px that became Building lie in rows 40-49: their area is those rows' area, not the mean's
    assert hectares[:, 4].sum() == pytest.approx(areas[40:50, :10].sum() / 1e4, rel=1e-9)
    assert areas[40:50].mean() != pytest.approx(areas.mean(), rel=1e-6)


def test_confidence_rule_and_curve(tmp_path):
    before, after = known_pair()
    sure_b = np.full(before.shape, 254, np.uint8)
    sure_a = np.full(before.shape, 254, np.uint8)
    sure_a[10:20, 20:50] = 127  # half of the Water rectangle only 50% sure on AFTER
    b_conf = write_map(tmp_path / "bc.tif", sure_b)
    a_conf = write_map(tmp_path / "ac.tif", sure_a)
    options = ChangeOptions(block=32, polygons=None, pictures=False, min_confidence=0.8)
    result = run(tmp_path, before, after, options=options, before_confidence=b_conf, after_confidence=a_conf)
    doubtful = int((before[10:20, 20:50] != 2).sum())
    exact = reference_matrix(before, after)
    assert result.summary["changed_pixels"] == exact.sum() - np.trace(exact) - doubtful
    assert result.summary["uncertain_pixels"] == doubtful
    curve = {row["min_confidence"]: row["changed_pixels"] for row in result.summary["changed_vs_confidence"]}
    assert curve[0.0] == exact.sum() - np.trace(exact) and curve[0.8] == curve[0.0] - doubtful


def test_different_schemas_need_a_class_map(tmp_path):
    before, after = known_pair()
    schema = tmp_path / "three.yaml"
    schema.write_text(
        "name: three\nclasses:\n  - {name: Open, color: '#E6C84F', code: 0}\n"
        "  - {name: Woods, color: '#1A7A2E', code: 1}\n  - {name: Water, color: '#1F77B4', code: 2}\n"
    )
    b = write_map(tmp_path / "before.tif", before)
    a = write_map(tmp_path / "after.tif", np.minimum(after, 2))
    with pytest.raises(ConfigError, match="different schemas"):
        compare_maps(b, a, tmp_path / "out", schema="synthetic", after_schema=schema, options=QUICK)
    assert not (tmp_path / "out").exists()
    mapping = tmp_path / "map.yaml"
    mapping.write_text("Field: Open\nForest: Woods\nRoad: Open\nBuilding: Open\n")
    result = compare_maps(
        b, a, tmp_path / "out", schema="synthetic", after_schema=schema, class_map=mapping, options=QUICK
    )
    assert result.summary["classes"] == ["Open", "Woods", "Water"]
    assert result.summary["compared_pixels"] == before.size


@pytest.mark.parametrize("case", ["apart", "three_bands", "unknown_code", "no_schema", "float"])
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, case):
    before, after = known_pair()
    b = write_map(tmp_path / "before.tif", before)
    a, error, words = tmp_path / "after.tif", DataError, ""
    if case == "apart":
        write_map(a, after, transform=GRID * Affine.translation(10_000, 0))
        words = "does not overlap"
    elif case == "three_bands":
        write_map(a, after, count=3)
        words = "has 3 bands"
    elif case == "unknown_code":
        after[5, 5] = 9
        write_map(a, after)
        words = r"does not define: 9 \(1 px\)"
    elif case == "float":
        write_map(a, after.astype(np.float32))
        words = "integer class codes"
    else:
        write_map(a, after)
        error, words = ConfigError, "carries no landseg class schema"
    with pytest.raises(error, match=words) as raised:
        compare_maps(b, a, tmp_path / "out", schema=None if case == "no_schema" else "synthetic", options=QUICK)
    named = "before.tif" if case == "no_schema" else "after.tif"  # the first map found wanting
    assert "\n" not in str(raised.value) and named in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_command_writes_every_output(tmp_path):
    before, after = known_pair()
    b, a = write_map(tmp_path / "b.tif", before), write_map(tmp_path / "a.tif", after)
    conf = write_map(tmp_path / "conf.tif", np.full(before.shape, 230, np.uint8))
    out = tmp_path / "change"
    result = CliRunner().invoke(
        app,
        [
            "change",
            str(b),
            str(a),
            "--out",
            str(out),
            "--schema",
            "synthetic",
            "--block",
            "32",
            "--before-confidence",
            str(conf),
            "--after-confidence",
            str(conf),
            "--min-confidence",
            "0.5",
            "--polygons",
            "geojson",
            "--min-polygon-pixels",
            "150",
        ],
    )
    assert result.exit_code == 0, result.output
    expected = {
        "change.tif",
        "transitions_pixels.csv",
        "transitions_ha.csv",
        "class_changes.csv",
        "change.json",
        "change_polygons.geojson",
        "change_map.png",
        "transitions.png",
        "gains_losses.png",
        "confidence_curve.png",
        "report.html",
    }
    assert expected <= {p.name for p in out.iterdir()}
    assert not [p.name for p in out.iterdir() if "partial" in p.name]
    with rasterio.open(out / "change.tif") as cog:
        assert cog.overviews(1) or max(cog.shape) < 512
        assert cog.colormap(1)[0 * K + 2][:3] == (31, 119, 180)  # Field -> Water in Water's colour
        assert "landseg_change_legend" in cog.tags()
    features = json.loads((out / "change_polygons.geojson").read_text())["features"]
    assert features and all(f["properties"]["pixels"] >= 150 for f in features)
    assert {f["properties"]["to_class"] for f in features} <= {"Water", "Building"}
    bad = CliRunner().invoke(
        app, ["change", str(b), str(tmp_path / "missing.tif"), "--out", str(tmp_path / "x"), "--schema", "synthetic"]
    )
    assert bad.exit_code == 1 and "missing.tif" in bad.output


def test_images_are_predicted_first_and_their_confidence_used(tmp_path):
    from tests.predict.test_predict_command import write_checkpoint, write_scene

    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt", 0)
    old, new = write_scene(tmp_path / "old.tif", 1), write_scene(tmp_path / "new.tif", 2)
    out = tmp_path / "change"
    result = CliRunner().invoke(
        app,
        [
            "change",
            str(old),
            str(new),
            "-c",
            str(checkpoint),
            "--out",
            str(out),
            "--min-confidence",
            "0.3",
            "--no-pictures",
            "--polygons",
            "none",
            "--engine",
            "torch",
        ],
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "predictions" / "before_classes.tif") as predicted:
        assert json.loads(predicted.tags()["landseg_schema"])["name"] == "synthetic"  # the COG names its schema
    summary = json.loads((out / "change.json").read_text())
    assert summary["compared_pixels"] == 40 * 52 and summary["min_confidence"] == 0.3
    assert summary["changed_vs_confidence"][0]["changed_pixels"] >= summary["changed_pixels"]


def test_images_are_predicted_with_the_change_options_prediction(tmp_path):
    from tests.predict.test_predict_command import write_checkpoint, write_scene

    from landseg.change.run import predict_pair
    from landseg.predict.options import PredictOptions

    checkpoint = write_checkpoint(tmp_path / "tiny.ckpt", 0)
    images = [write_scene(tmp_path / "old.tif", 1), write_scene(tmp_path / "new.tif", 2)]
    # Without a confidence raster in the options: change asks for one all the same, --min-confidence reads it.
    chosen = PredictOptions(preview=False, areas=False, tile=16, overlap=0.25)
    pairs = predict_pair(images, [checkpoint], tmp_path / "out", engine="torch", options=chosen)
    assert [(c.name, p.name) for c, p in pairs] == [
        ("before_classes.tif", "before_confidence.tif"),
        ("after_classes.tif", "after_confidence.tif"),
    ]
    assert not list((tmp_path / "out").glob("*_color.png"))  # the options' preview=False was followed
    record = json.loads((tmp_path / "out" / "before_prediction.json").read_text())
    assert record["options"]["tile"] == 16 and record["options"]["overlap"] == 0.25


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"polygons": "shp"}, "unknown polygon format 'shp'"),
        ({"block": 8}, "--block must be at least 16"),
        ({"prediction": {"overlap": 1.0}}, r"tile overlap must be in \[0, 1\)"),
        ({"prediction": {"blend": "cosine"}}, "unknown blend 'cosine'"),
    ],
)
def test_bad_options_are_refused_before_any_map_is_read(tmp_path, options, words):
    from landseg.predict.options import PredictOptions

    if "prediction" in options:
        options = {"prediction": PredictOptions(**options["prediction"])}
    with pytest.raises(ConfigError, match=words):
        compare_maps(tmp_path / "never.tif", tmp_path / "read.tif", tmp_path / "out", options=ChangeOptions(**options))
    assert not (tmp_path / "out").exists()


def test_rows_of_blocks_as_executor_tasks_sum_to_the_same_result(tmp_path):
    """What --workers/--dask do (a Dask client is an executor with ``submit``), with threads here."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    before = rng.integers(0, K, (70, 90)).astype(np.uint8)
    after = np.where(rng.random(before.shape) < 0.4, rng.integers(0, K, before.shape), before).astype(np.uint8)
    b, a = write_map(tmp_path / "before.tif", before), write_map(tmp_path / "after.tif", after)
    options = ChangeOptions(block=16, polygons=None, pictures=False)
    alone = compare_maps(b, a, tmp_path / "alone", schema="synthetic", options=options)
    with ThreadPoolExecutor(3) as pool:
        tasks = compare_maps(b, a, tmp_path / "tasks", schema="synthetic", options=options, executor=pool)
    assert tasks.summary == alone.summary
    with rasterio.open(alone.paths["change"]) as one, rasterio.open(tasks.paths["change"]) as other:
        assert (one.read(1) == other.read(1)).all()
    after[60, 80] = 7  # a value the schema lacks, found by a task: the same one-line error, nothing written
    write_map(tmp_path / "after.tif", after)
    with ThreadPoolExecutor(3) as pool, pytest.raises(DataError, match="does not define: 7"):
        compare_maps(b, a, tmp_path / "bad", schema="synthetic", options=options, executor=pool)
    assert not (tmp_path / "bad").exists()
