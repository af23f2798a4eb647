"""``landseg audit`` end to end on tiny synthetic scenes with relabelled blobs: the ``--folds 2`` path with
models trained for a few steps, the checkpoint path and its warning, well-formed outputs, ``data.exclude``
in training, and one-line errors."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pyogrio.raw
import pyproj
import pytest
import rasterio
import shapely
import yaml
from affine import Affine
from rasterio import features
from typer.testing import CliRunner

from landseg.audit.noise import relabel_blobs
from landseg.classes import IGNORE_INDEX, get_schema
from landseg.cli import app
from landseg.config import load_config
from landseg.data.catalog import build_catalog, load_pair
from landseg.data.dataset import load_labelled_images
from landseg.data.exclude import LAYER

runner = CliRunner()
SCHEMA = get_schema("synthetic")


@pytest.fixture(scope="module")
def noisy(tmp_path_factory, synthetic_dataset):
    """The six 96 px scenes with about 5 % of their labels relabelled in blobs, and a tiny recipe; which pixels
    were relabelled is kept beside it in ``relabelled.npz`` (by mask file stem)."""
    folder = tmp_path_factory.mktemp("audit")
    data = folder / "data"
    shutil.copytree(synthetic_dataset, data)
    rng = np.random.default_rng(0)
    relabelled = {}
    for mask_path in sorted((data / "masks").glob("*.tif")):
        with rasterio.open(mask_path, "r+") as dataset:
            noisy_labels, relabelled[mask_path.stem] = relabel_blobs(
                dataset.read(1), rng, 0.05, SCHEMA.num_classes, radius=(5, 8)
            )
            dataset.write(noisy_labels, 1)
    np.savez(folder / "relabelled.npz", **relabelled)
    config = {
        "name": "tiny-audit",
        "data": {
            "root": "data",
            "schema": "synthetic",
            "images": "images/scene_{id}.tif",
            "masks": "masks/scene_{id}.tif",
            "split": {"field": "id", "train": ["000", "001", "002", "003"], "val": ["004", "005"]},
        },
        "model": {"arch": "classic_unet", "encoder": None, "encoder_weights": None, "widths": [8, 16]},
        "train": {
            "crop_size": 48,
            "batch_size": 4,
            "epochs": 1,
            "steps_per_epoch": 30,  # fewer, and the fold models' own mistakes drown the relabelled blobs
            "val_tile": 96,
            "seed": 3,
            "optimizer": {"name": "adam", "lr": 0.02},
            "scheduler": {"name": "none"},
        },
    }
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def folds_run(noisy):
    out = noisy.parent / "audit_out"
    result = runner.invoke(
        app,
        [
            "audit",
            "--config",
            str(noisy),
            "--folds",
            "2",
            "--out",
            str(out),
            "--engine",
            "torch",
            "--min-region",
            "4",
            "--gallery",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def ground_area_per_pixel(image) -> float:
    """The map area of a pixel divided by the projection's areal scale at the image's centre (PROJ's
    factors): the ellipsoidal area of a pixel of a small image, by another road than ``maps.areas``."""
    with rasterio.open(image) as dataset:
        x, y = dataset.xy(dataset.height // 2, dataset.width // 2)
        lon, lat = pyproj.Transformer.from_crs(dataset.crs, "EPSG:4326", always_xy=True).transform(x, y)
        factors = pyproj.Proj(dataset.crs.to_wkt()).get_factors(lon, lat)
        return abs(dataset.transform.determinant) / factors.areal_scale


def test_folds_audit_writes_ranked_well_formed_outputs(folds_run, noisy):
    out, output = folds_run
    for name in (
        "images.csv",
        "regions.csv",
        "classes.csv",
        "given_vs_likely.png",
        "gallery.html",
        "audit.json",
        "regions.gpkg",
    ):
        assert (out / name).is_file(), name
    assert not (out / ".audit_scratch").exists()
    images = read_csv(out / "images.csv")
    assert [row["image"] for row in images] and {row["image"] for row in images} == {
        f"images/scene_{i:03d}.tif" for i in range(4)
    }
    assert [int(row["rank"]) for row in images] == [1, 2, 3, 4]
    qualities = [float(row["label_quality"]) for row in images]
    assert qualities == sorted(qualities) and all(0 <= q <= 1 for q in qualities)
    # each image is predicted by the fold model that did not train on it: two models, two images each
    assert sorted(np.unique([row["model"] for row in images], return_counts=True)[1]) == [2, 2]

    regions = read_csv(out / "regions.csv")
    assert regions, output
    severities = [float(r["severity"]) for r in regions]
    assert severities == sorted(severities, reverse=True)
    for row in regions:
        polygon = shapely.from_wkt(row["pixel_wkt"])
        assert int(row["pixels"]) >= 4 and polygon.area == int(row["pixels"])
        assert row["given_class"] != row["likely_class"] and row["given_class"] in SCHEMA.names
        # 0.5 m UTM pixels cover 0.25 m² of map and, near the central meridian, 0.08 % more of the ellipsoid
        expected = int(row["pixels"]) * ground_area_per_pixel(noisy.parent / "data" / row["image"])
        assert float(row["area_m2"]) == pytest.approx(expected, abs=5e-4)  # written to 3 decimals
    summed = {}
    for row in regions:
        summed[row["image"]] = summed.get(row["image"], 0) + int(row["pixels"])
    assert all(int(row["region_pixels"]) == summed.get(row["image"], 0) for row in images)

    meta, _, geometry, _fields = pyogrio.raw.read(out / "regions.gpkg", layer=LAYER)
    assert len(geometry) == len(regions) and "32632" in meta["crs"]
    areas = shapely.area(shapely.from_wkb(geometry))
    np.testing.assert_allclose(sorted(areas), sorted(int(r["pixels"]) * 0.25 for r in regions))

    summary = json.loads((out / "audit.json").read_text())
    assert summary["folds"] == 2 and summary["regions"] == len(regions) and len(summary["models"]) == 2
    classes = read_csv(out / "classes.csv")
    assert [row["class"] for row in classes] == SCHEMA.names
    assert sum(int(row["flagged_pixels"]) for row in classes) == summary["flagged_pixels"]
    np.testing.assert_array_equal(np.diag(summary["given_vs_likely"]), 0)
    gallery = (out / "gallery.html").read_text()
    assert gallery.count("<img") == 2 and "data:image/png;base64" in gallery
    assert "images/scene_" in output and "regions:" in output


def test_folds_audit_flags_the_relabelled_blobs(folds_run, noisy):
    """Most relabelled pixels lie in flagged regions, and flagged pixels are relabelled ones far more often than
    pixels at large (measured: 72 % of them found; 43 % of flagged pixels relabelled, against 5.6 %)."""
    out, _ = folds_run
    relabelled = np.load(noisy.parent / "relabelled.npz")
    regions = read_csv(out / "regions.csv")
    audited = [f"scene_{i:03d}" for i in range(4)]
    found = flagged = 0
    for stem in audited:
        outlines = [shapely.from_wkt(r["pixel_wkt"]) for r in regions if r["image"] == f"images/{stem}.tif"]
        inside = np.zeros((96, 96), bool)
        if outlines:
            inside = features.geometry_mask(outlines, inside.shape, Affine.identity(), invert=True)
        found += int((inside & relabelled[stem]).sum())
        flagged += int(inside.sum())
    injected = sum(int(relabelled[stem].sum()) for stem in audited)
    assert found / injected > 0.5
    assert found / flagged > 4 * injected / (len(audited) * 96 * 96)


def test_checkpoint_that_saw_the_split_is_warned_about(folds_run, noisy, tmp_path):
    out, _ = folds_run
    checkpoint = out / "folds" / "fold_0" / "checkpoints" / "best.ckpt"
    result = runner.invoke(
        app,
        [
            "audit",
            "--config",
            str(noisy),
            "-c",
            str(checkpoint),
            "--out",
            str(tmp_path / "a"),
            "--engine",
            "torch",
            "--gallery",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "audited images were in its training data" in result.output
    assert "--folds" in result.output
    assert json.loads((tmp_path / "a" / "audit.json").read_text())["warnings"]
    # the validation images were not in its training data: no warning
    result = runner.invoke(
        app,
        [
            "audit",
            "--config",
            str(noisy),
            "-c",
            str(checkpoint),
            "--split",
            "val",
            "--out",
            str(tmp_path / "b"),
            "--engine",
            "torch",
            "--gallery",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.output


@pytest.mark.parametrize("kind", ["csv", "gpkg"])
def test_data_exclude_turns_the_regions_into_ignore_pixels(folds_run, noisy, tmp_path, kind):
    out, _ = folds_run
    regions = read_csv(out / "regions.csv")
    config = load_config(noisy, [f"data.exclude={out / f'regions.{kind}'}"])
    samples = build_catalog(config.data).split("train")
    items = load_labelled_images(samples, SCHEMA, None, progress=False, exclude=config.data.exclude)
    for sample, item in zip(samples, items, strict=False):
        _, mask = load_pair(sample, SCHEMA)
        polygons = [shapely.from_wkt(r["pixel_wkt"]) for r in regions if sample.image.as_posix().endswith(r["image"])]
        inside = (
            features.geometry_mask(polygons, mask.shape, Affine.identity(), invert=True)
            if polygons
            else np.zeros(mask.shape, bool)
        )
        assert (item.mask[inside] == IGNORE_INDEX).all()
        np.testing.assert_array_equal(item.mask[~inside], mask[~inside])
        assert inside.sum() == sum(int(r["pixels"]) for r in regions if sample.image.as_posix().endswith(r["image"]))


def test_data_exclude_is_relative_to_the_config_and_bad_files_are_one_line(noisy, tmp_path):
    config = yaml.safe_load(noisy.read_text())
    config["data"]["root"] = str(noisy.parent / "data")
    config["data"]["exclude"] = "regions.csv"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "regions.csv").write_text("image,pixels\nimages/scene_000.tif,3\n")
    assert load_config(path).data.exclude == (tmp_path / "regions.csv").resolve()
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "pixel_wkt" in result.output and "regions.csv" in result.output
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "--set", "data.exclude=nope.txt"])
    assert result.exit_code == 1 and "data.exclude must be a .gpkg or .csv" in result.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        ([], "give either --checkpoint"),
        (["--folds", "2", "-c", "x.ckpt"], "give either --checkpoint"),
        (["--folds", "1"], "--folds must be at least 2"),
        (["--folds", "9"], "the split has only 4 images"),
        (["--folds", "2", "--split", "test"], "split 'test' is empty or not defined"),
        (["--folds", "2", "--min-region", "0"], "--min-region must be at least 1"),
    ],
)
def test_bad_audit_requests_are_one_line(noisy, tmp_path, arguments, message):
    result = runner.invoke(app, ["audit", "--config", str(noisy), "--out", str(tmp_path / "o"), *arguments])
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.strip().count("\n") == 0, result.output


def test_exclusions_match_images_by_path_end_and_need_map_coordinates_only_for_a_geopackage(tmp_path):
    from landseg.data.exclude import Exclusions
    from landseg.errors import DataError

    (tmp_path / "regions.csv").write_text(
        'image,pixel_wkt\ntile_1/images/a.jpg,"POLYGON ((1 1, 3 1, 3 2, 1 2, 1 1))"\n'
        'tile_2/images/a.jpg,"POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))"\n'
    )
    exclusions = Exclusions.read(tmp_path / "regions.csv")
    mask = np.zeros((4, 4), dtype=np.uint8)
    out = exclusions.apply(tmp_path / "data" / "tile_1" / "images" / "a.jpg", mask, Affine.identity(), None)
    assert (out == IGNORE_INDEX).sum() == 2 and (out[1, 1:3] == IGNORE_INDEX).all()
    assert exclusions.apply(tmp_path / "tile_3" / "images" / "a.jpg", mask, Affine.identity(), None) is mask
    assert exclusions.excluded_pixels == 2 and exclusions.matched_images == 1

    import shapely as shp

    pyogrio.raw.write(
        tmp_path / "r.gpkg",
        shp.to_wkb(np.array([shp.box(0, 0, 1, 1)], dtype=object)),
        [np.array(["tile_1/images/a.jpg"], dtype=object)],
        ["image"],
        layer=LAYER,
        driver="GPKG",
        geometry_type="Polygon",
        crs="EPSG:32632",
    )
    with pytest.raises(DataError, match="not georeferenced"):
        Exclusions.read(tmp_path / "r.gpkg").apply(
            tmp_path / "tile_1" / "images" / "a.jpg", mask, Affine.identity(), None
        )


def test_a_region_outline_longer_than_the_csv_modules_field_limit_is_read(tmp_path):
    """A large, ragged region (Dubai's biggest audit regions) has a WKT of megabytes: one CSV field."""
    import csv as csv_module

    from landseg.data.exclude import Exclusions

    stairs = [(x, y) for step in range(12_000) for x, y in ((step + 1, step), (step + 1, step + 1))]
    outline = shapely.Polygon([(0, 0), *stairs, (0, 12_000)])
    wkt = outline.wkt
    assert len(wkt) > csv_module.field_size_limit()
    path = tmp_path / "regions.csv"
    path.write_text(f'image,pixel_wkt\ntile_1/images/a.jpg,"{wkt}"\n')
    mask = np.zeros((8, 8), dtype=np.uint8)
    out = Exclusions.read(path).apply(tmp_path / "tile_1" / "images" / "a.jpg", mask, Affine.identity(), None)
    lower_left = np.tril(np.ones((8, 8), dtype=bool))  # pixel centres (col + 0.5, row + 0.5) with row >= col
    assert (out[lower_left] == IGNORE_INDEX).all() and (out[~lower_left] == 0).all()
    assert csv_module.field_size_limit() == 131072  # the module's limit is given back


def test_a_rerun_reuses_its_fold_models_only_for_the_same_folds(folds_run, noisy, tmp_path):
    out, _ = folds_run
    copy = tmp_path / "again"
    shutil.copytree(out / "folds", copy / "folds")
    stamp = (copy / "folds" / "fold_0" / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    arguments = [
        "audit",
        "--config",
        str(noisy),
        "--folds",
        "2",
        "--out",
        str(copy),
        "--engine",
        "torch",
        "--min-region",
        "4",
        "--gallery",
        "0",
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert (copy / "folds" / "fold_0" / "checkpoints" / "best.ckpt").stat().st_mtime_ns == stamp

    def without_model(rows):
        return [{k: v for k, v in row.items() if k != "model"} for row in rows]

    assert without_model(read_csv(copy / "images.csv")) == without_model(read_csv(out / "images.csv"))
    result = runner.invoke(app, [*arguments, "--seed", "7"])
    assert result.exit_code == 1 and "trained on other images" in result.output
    assert result.output.strip().count("\n") == 0, result.output
