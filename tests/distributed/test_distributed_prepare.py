"""``landseg prepare`` on a 2-worker Dask LocalCluster writes what the sequential run writes, and band
moments merged across workers are the moments of all pixels together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from landseg.data.prepare.config import parse_prepare_config
from landseg.data.prepare.run import prepare_all
from landseg.data.prepare.stats import BandMoments, merge_moments
from landseg.data.synthetic import generate_scene
from landseg.distributed.prepare import prepare_all_on_cluster

pytestmark = pytest.mark.slow


def write(path: Path, data: np.ndarray, transform, crs="EPSG:32632", nodata=None, descriptions=None) -> Path:
    data = data[None] if data.ndim == 2 else data
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=str(data.dtype),
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Four 4-band uint16 scenes: two with labels on their grid, one with a label at another resolution
    (aligned by a task), and one truncated image (quarantined)."""
    folder = tmp_path_factory.mktemp("raw")
    for i in range(4):
        scene = generate_scene(96, seed=20 + i, bands=4)
        transform = from_origin(500000 + 960 * i, 5200000, 10, 10)
        write(
            folder / f"scene{i}.tif",
            scene.image.astype(np.uint16) * 40 + 1,
            transform,
            nodata=0,
            descriptions=("red", "green", "blue", "nir"),
        )
        if i == 2:  # label at 5 m: twice the image's resolution
            write(
                folder / f"label{i}.tif",
                scene.labels.repeat(2, 0).repeat(2, 1),
                from_origin(500000 + 960 * i, 5200000, 5, 5),
                nodata=255,
            )
        else:
            write(folder / f"label{i}.tif", scene.labels, transform, nodata=255)
    image = folder / "scene3.tif"
    image.write_bytes(image.read_bytes()[:2000])
    return folder


def config(raw: Path, out: Path):
    return parse_prepare_config(
        {
            "name": "scale-out",
            "out": str(out),
            "schema": "synthetic",
            "input": {
                "scenes": [
                    {"image": str(raw / f"scene{i}.tif"), "label": str(raw / f"label{i}.tif")} for i in range(4)
                ],
                "bands": ["red", "green", "nir"],
            },
            "tiling": {"size": 32, "dtype": "float32", "scale": {"method": "meanstd"}},
            "filters": {"min_valid_fraction": 0.3, "top_k": {"k": 1, "max_fraction": 0.9}},
            "split": {"method": "ratio", "ratios": {"train": 0.7, "val": 0.3}, "seed": 0},
        }
    )


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".tif", ".txt", ".csv")
    }


def test_cluster_preparation_equals_the_sequential_one(raw, tmp_path, dask_test_client):
    sequential = prepare_all(config(raw, tmp_path / "sequential"))
    distributed = prepare_all_on_cluster(config(raw, tmp_path / "distributed"), dask_test_client, chips_per_task=5)
    one, other = tmp_path / "sequential", tmp_path / "distributed"
    # Chips (float32, scaled by the mean and std merged from per-scene moments of the uint16 scenes: exact),
    # masks, the chip index and the split lists are the same files.
    ours, theirs = files(other), files(one)
    assert sorted(ours) == sorted(theirs) and len([n for n in ours if n.startswith("images/")]) > 10
    assert [n for n in ours if ours[n] != theirs[n]] == []
    assert json.loads((other / "filters.json").read_text()) == json.loads((one / "filters.json").read_text())
    report = json.loads((one / "filters.json").read_text())
    assert report["quarantined"]["count"] == 1 and "scene3" in report["quarantined"]["items"][0]["source"]
    assert report["dropped"]["top_k_dominant"]["count"] > 0
    assert (other / "aligned" / "scene2_label.tif").is_file()
    # stats over the float32 chips, 5 chips a task: Chan's merge of float moments, equal to float64 rounding.
    ours, theirs = distributed["stats"], sequential["stats"]
    assert ours["classes"] == theirs["classes"] and ours["chips"] == theirs["chips"]
    assert ours["bands"]["pixels"] == theirs["bands"]["pixels"] and not ours["bands"]["exact"]
    for key in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(ours["bands"][key], theirs["bands"][key], rtol=1e-12, err_msg=key)


def moments_of(*parts: np.ndarray) -> BandMoments:
    moments = BandMoments(parts[0].shape[0])
    for part in parts:
        moments.add(part, np.ones(part.shape[1:], dtype=bool))
    return moments


def test_merged_integer_moments_are_exact():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 60000, (2, 7, 11), dtype=np.uint16), rng.integers(0, 60000, (2, 5, 11), dtype=np.uint16)
    merged = merge_moments(moments_of(a), moments_of(b))
    together = np.concatenate([a, b], axis=1).reshape(2, -1).astype(np.int64)
    assert merged.exact and merged.count == together.shape[1]
    # Exact integer sums: the same floats as the sequential accumulation, and numpy's float64 to rounding.
    assert merged.mean == moments_of(a, b).mean and merged.std == moments_of(a, b).std
    np.testing.assert_allclose(merged.mean, together.mean(axis=1), rtol=1e-15)
    np.testing.assert_allclose(merged.std, together.std(axis=1), rtol=1e-12)
    # Averaging the two parts' means would be wrong: they hold different pixel counts.
    assert not np.allclose((np.array(moments_of(a).mean) + moments_of(b).mean) / 2, merged.mean, rtol=1e-6)


def test_merged_float_moments_match_numpy():
    rng = np.random.default_rng(1)
    parts = [rng.normal(1000.0, 3.0, (3, n, 4)).astype(np.float32) for n in (1, 9, 30)]
    merged = merge_moments(merge_moments(moments_of(parts[0]), moments_of(parts[1])), moments_of(parts[2]))
    together = np.concatenate(parts, axis=1).reshape(3, -1).astype(np.float64)
    assert not merged.exact and merged.count == together.shape[1]
    np.testing.assert_allclose(merged.mean, together.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(merged.std, together.std(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(merged.minimum, together.min(axis=1))
    # An empty part changes nothing; integer and float parts merge (inexactly).
    assert merge_moments(BandMoments(3), merged) is merged
    integers = np.arange(12, dtype=np.int32).reshape(3, 2, 2)
    mixed = merge_moments(moments_of(integers), moments_of(parts[0]))
    both = np.concatenate([integers.reshape(3, -1), parts[0].reshape(3, -1)], axis=1).astype(np.float64)
    assert not mixed.exact and mixed.count == 8
    np.testing.assert_allclose(mixed.mean, both.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(mixed.std, both.std(axis=1), rtol=1e-12)
