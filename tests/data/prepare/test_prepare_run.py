"""``landseg prepare`` end to end on synthetic scenes: config, CLI, outputs the training side reads."""

import json

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject, transform_bounds
from typer.testing import CliRunner

from landseg.classes import IGNORE_INDEX, get_schema
from landseg.cli.prepare import prepare_app
from landseg.config import DataConfig
from landseg.data.catalog import build_catalog, load_pair
from landseg.data.prepare.config import load_prepare_config
from landseg.data.synthetic import generate_scene
from landseg.errors import ConfigError

runner = CliRunner()


@pytest.fixture(scope="module")
def raw_scenes(tmp_path_factory):
    """Two 4-band uint16 scenes in UTM 32N at 10 m; one label on the image grid, one at 2.5 m in EPSG:3857."""
    folder = tmp_path_factory.mktemp("raw")
    for i, origin in enumerate([(500000, 5200000), (501280, 5200000)]):
        scene = generate_scene(128, seed=10 + i, bands=4)
        transform = from_origin(*origin, 10, 10)
        profile = dict(driver="GTiff", width=128, height=128, crs="EPSG:32632", transform=transform)
        with rasterio.open(folder / f"scene{i}.tif", "w", count=4, dtype="uint16", nodata=0, **profile) as dst:
            dst.write(scene.image.astype(np.uint16) * 40)
            dst.descriptions = ("red", "green", "blue", "nir")
        if i == 0:
            with rasterio.open(folder / f"label{i}.tif", "w", count=1, dtype="uint8", nodata=255, **profile) as dst:
                dst.write(scene.labels, 1)
            continue
        left, bottom, right, top = transform_bounds(
            "EPSG:32632", "EPSG:3857", *rasterio.windows.bounds(rasterio.windows.Window(0, 0, 128, 128), transform)
        )
        fine = from_origin(left, top, 3.7, 3.7)
        width, height = int((right - left) / 3.7), int((top - bottom) / 3.7)
        labels = np.full((height, width), 255, np.uint8)
        reproject(
            scene.labels,
            labels,
            src_transform=transform,
            src_crs="EPSG:32632",
            dst_transform=fine,
            dst_crs="EPSG:3857",
            resampling=Resampling.nearest,
            src_nodata=255,
            dst_nodata=255,
        )
        with rasterio.open(
            folder / f"label{i}.tif",
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=1,
            dtype="uint8",
            crs="EPSG:3857",
            transform=fine,
            nodata=255,
        ) as dst:
            dst.write(labels, 1)
    return folder


@pytest.fixture(scope="module")
def prepared(raw_scenes, tmp_path_factory):
    config = {
        "name": "synthetic-two-scenes",
        "out": "prepared",
        "schema": "synthetic",
        "input": {
            "scenes": [
                {"image": str(raw_scenes / f"scene{i}.tif"), "label": str(raw_scenes / f"label{i}.tif")}
                for i in range(2)
            ],
            "bands": ["red", "green", "blue"],
        },
        "align": {"method": "mode", "block": 64},
        "tiling": {"size": 32},
        "filters": {"min_valid_fraction": 0.5},
        "split": {
            "method": "blocks",
            "block_metres": 800,
            "ratios": {"train": 0.75, "val": 0.25},
            "seed": 0,
            "oversample": {"classes": ["Building"], "min_fraction": 0.05, "factor": 2},
        },
    }
    path = tmp_path_factory.mktemp("cfg") / "prepare.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(prepare_app, ["all", str(path)])
    assert result.exit_code == 0, result.output
    return path.parent / "prepared", result.output


def test_all_writes_chips_index_filters_splits_and_stats(prepared):
    out, output = prepared
    for name in (
        "chips.csv",
        "filters.json",
        "splits/train.txt",
        "splits/val.txt",
        "stats.json",
        "class_frequencies.png",
        "prepare.yaml",
        "aligned/scene1_label.tif",
    ):
        assert (out / name).is_file(), name
    assert not (out / "aligned" / "scene0_label.tif").exists()  # already on its image's grid
    stats = json.loads((out / "stats.json").read_text())
    assert stats["normalization"]["mode"] == "explicit" and len(stats["normalization"]["mean"]) == 3
    assert stats["bands"]["names"] == ["red", "green", "blue"] and stats["bands"]["exact"]
    assert set(stats["classes"]) >= {"candidates", "kept", "train", "train_before_oversampling", "val"}
    assert "Paste into the training config" in output and "normalization" in output


def test_aligned_labels_agree_with_the_scene_truth(prepared):
    out, _ = prepared
    truth = generate_scene(128, seed=11, bands=4).labels
    aligned = rasterio.open(out / "aligned" / "scene1_label.tif").read(1)
    labelled = (aligned != IGNORE_INDEX) & (truth != IGNORE_INDEX)
    assert labelled.mean() > 0.95 and (aligned[labelled] == truth[labelled]).mean() > 0.97


def test_training_side_reads_the_split_files(prepared):
    out, _ = prepared
    stats = json.loads((out / "stats.json").read_text())
    files = {"train": "splits/train.txt", "val": "splits/val.txt"}
    data = DataConfig(
        root=out, schema=str(out / "schema.yaml"), split={"files": files}, normalization=stats["normalization"]
    )
    catalog = build_catalog(data)
    listed = (out / "splits" / "train.txt").read_text().split()
    assert len(catalog.split("train")) == len(listed) > len(set(listed))  # oversampled chips listed twice
    assert not set(catalog.split("train")) & set(catalog.split("val"))
    schema = get_schema(str(out / "schema.yaml"))
    assert schema.names == get_schema("synthetic").names and [c.code for c in schema.classes] == [0, 1, 2, 3, 4]
    image, mask = load_pair(catalog.split("val")[0], schema)
    assert image.data.shape == (3, 32, 32) and image.crs.to_epsg() == 32632 and mask.dtype == np.uint8


def test_stats_and_split_rerun_from_the_output_folder(prepared):
    out, _ = prepared
    before = json.loads((out / "stats.json").read_text())
    result = runner.invoke(prepare_app, ["stats", str(out), "--set", "stats.split=val"])
    assert result.exit_code == 0, result.output
    after = json.loads((out / "stats.json").read_text())
    assert after["chips"]["split"] == "val" and after["bands"]["mean"] != before["bands"]["mean"]
    assert runner.invoke(prepare_app, ["split", str(out)]).exit_code == 0


def test_any_executor_runs_the_stages_and_writes_the_same_files(prepared, tmp_path):
    """The stages' ``executor``: the standard library's process pool (plain pickle, unlike Dask's) in place
    of the default loop writes the very same files, the aligned scene and the integer statistics included."""
    from concurrent.futures import ProcessPoolExecutor

    from landseg.data.prepare.run import prepare_all

    config = load_prepare_config(prepared[0])  # another test reruns stats in that folder: start afresh
    prepare_all(config.model_copy(update={"out": tmp_path / "loop"}))
    with ProcessPoolExecutor(2) as pool:
        prepare_all(config.model_copy(update={"out": tmp_path / "pool"}), executor=pool, chips_per_task=7)

    def files(folder):
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("prepare.yaml", "class_frequencies.png")
        }

    ours, theirs = files(tmp_path / "pool"), files(tmp_path / "loop")
    assert sorted(ours) == sorted(theirs) and "aligned/scene1_label.tif" in ours and "stats.json" in ours
    assert [name for name in ours if ours[name] != theirs[name]] == []


def test_align_command_and_friendly_errors(raw_scenes, tmp_path):
    pair = [str(raw_scenes / "scene1.tif"), str(raw_scenes / "label1.tif")]
    result = runner.invoke(
        prepare_app, ["align", *pair, "--out", str(tmp_path / "a.tif"), "--schema", "synthetic", "--method", "nearest"]
    )
    assert result.exit_code == 0, result.output
    assert rasterio.open(tmp_path / "a.tif").shape == (128, 128)
    bad = runner.invoke(
        prepare_app, ["align", *pair, "--out", str(tmp_path / "b.tif"), "--schema", "synthetic", "--method", "median"]
    )
    assert bad.exit_code == 1 and "method" in bad.output


def test_config_typos_and_relative_paths(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "out": "o",
                "schema": "synthetic",
                "input": {"scenes": [{"image": "i.tif", "label": "l.tif"}]},
                "tiling": {"sise": 32},
            }
        )
    )
    with pytest.raises(ConfigError, match="did you mean 'size'"):
        load_prepare_config(path)
    config = load_prepare_config(path, ["tiling={size: 32, overlap: 0.25}"])
    assert config.out == tmp_path / "o" and config.input.scenes[0].image == tmp_path / "i.tif"
    assert config.tiling.step == 24
    with pytest.raises(ConfigError, match="uint8 needs"):
        load_prepare_config(path, ["tiling={dtype: uint8}"])
