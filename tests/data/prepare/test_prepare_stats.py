"""Streamed band statistics against numpy on the whole array, percentiles, and class frequencies by stage."""

import numpy as np
import pytest

from landseg.data.prepare.stats import BandMoments, band_percentiles, band_statistics, class_frequencies


@pytest.mark.parametrize("dtype,low,high", [("uint16", 0, 65535), ("int16", -3000, 12000), ("uint8", 1, 255)])
def test_integer_statistics_are_exact_over_windows(tmp_path, raster_writer, dtype, low, high):
    rng = np.random.default_rng(5)
    data = rng.integers(low, high, (3, 70, 90), endpoint=True).astype(dtype)
    data[:, :5, :7] = 0  # no-data in every band: left out
    raster_writer(tmp_path / "a.tif", data[:, :, :50], nodata=0)
    raster_writer(tmp_path / "b.tif", data[:, :, 50:], nodata=0)
    stats = band_statistics([tmp_path / "a.tif", tmp_path / "b.tif"], block=16)
    valid = ~(data == 0).all(axis=0)
    values = data[:, valid].astype(np.float64)
    assert stats.exact and stats.count == valid.sum()
    np.testing.assert_allclose(stats.mean, values.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(stats.std, values.std(axis=1), rtol=1e-12)
    assert stats.minimum == values.min(axis=1).tolist() and stats.maximum == values.max(axis=1).tolist()


def test_float_statistics_merge_windows_with_nan_nodata():
    rng = np.random.default_rng(6)
    data = (rng.standard_normal((2, 64, 64)) * [[[3.0]], [[0.01]]] + [[[1e4]], [[-2.0]]]).astype(np.float32)
    data[:, 10:20, 10:20] = np.nan
    moments = BandMoments(2)
    for rows in (slice(0, 7), slice(7, 40), slice(40, 64)):
        part = data[:, rows]
        moments.add(part, np.isfinite(part).all(axis=0))
    values = data[:, np.isfinite(data).all(axis=0)].astype(np.float64)
    assert not moments.exact and moments.count == values.shape[1]
    np.testing.assert_allclose(moments.mean, values.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(moments.std, values.std(axis=1), rtol=1e-9)


def test_band_selection_by_description(tmp_path, raster_writer):
    data = np.stack([np.full((8, 8), v, np.uint16) for v in (1, 2, 3)])
    raster_writer(tmp_path / "a.tif", data, descriptions=["blue", "green", "nir"])
    stats = band_statistics([tmp_path / "a.tif"], bands=["NIR", 1])
    assert stats.mean == [3.0, 1.0] and stats.names == ["nir", "blue"] and stats.std == [0.0, 0.0]
    assert stats.normalization()["std"] == [1e-6, 1e-6]  # a constant band cannot divide by zero


def test_percentiles_match_numpy_inverted_cdf(tmp_path, raster_writer):
    rng = np.random.default_rng(8)
    data = rng.gamma(2.0, 600.0, (2, 60, 60)).astype(np.uint16) + 1
    raster_writer(tmp_path / "a.tif", data, nodata=0)
    low, high = band_percentiles([tmp_path / "a.tif"], None, None, 2, 98, block=16)
    flat = data.reshape(2, -1)
    assert low == [float(np.percentile(b, 2, method="inverted_cdf")) for b in flat]
    assert high == [float(np.percentile(b, 98, method="inverted_cdf")) for b in flat]
    floats = (data / 7.0).astype(np.float32)
    raster_writer(tmp_path / "f.tif", floats)
    low_f, high_f = band_percentiles([tmp_path / "f.tif"], None, None, 2, 98)
    width = (floats.max(axis=(1, 2)).astype(float) - floats.min(axis=(1, 2))) / 65535
    for found, q in ((low_f, 2), (high_f, 98)):
        exact = np.percentile(floats.reshape(2, -1).astype(float), q, axis=1, method="inverted_cdf")
        assert np.all((np.array(found) <= exact + 1e-9) & (np.array(found) > exact - width - 1e-9))  # within a bin


def test_class_frequencies_before_and_after_filtering_and_oversampling():
    counts = {"a": np.array([10, 0, 5]), "b": np.array([0, 4, 0]), "c": np.array([7, 7, 7]), "d": np.array([1, 1, 1])}
    statuses = {"a": "kept", "b": "kept", "c": "dropped", "d": "quarantined"}
    stages = class_frequencies(counts, statuses, {"train": ["a", "b", "b"], "val": []})
    assert stages["candidates"].tolist() == [17, 11, 12]
    assert stages["kept"].tolist() == [10, 4, 5]
    assert stages["train"].tolist() == [10, 8, 5] and stages["train_before_oversampling"].tolist() == [10, 4, 5]
    assert stages["val"].tolist() == [0, 0, 0] and "val_before_oversampling" not in stages
