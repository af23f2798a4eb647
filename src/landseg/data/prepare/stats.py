"""Streamed statistics: exact per-band mean and std, band percentiles, and class frequencies.

Band moments are accumulated window by window, so a scene of any size costs one window of memory.
Integer data is summed in Python integers, which makes mean and std exact (the only rounding is the
final division); float data is merged window by window with Chan's pairwise update in float64.
Class frequencies come from the chip index (every candidate, the kept chips) and from the split files
(the training split, and the same with oversampled chips counted as often as they are listed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial, reduce
from pathlib import Path
from typing import NamedTuple

import numpy as np

from landseg.classes import ClassSchema
from landseg.data.prepare.execution import batches, bounded_gdal, map_in_order
from landseg.data.prepare.rasters import block_windows, read_window, resolve_bands, scene_nodata
from landseg.errors import DataError
from landseg.io.raster import open_raster
from landseg.io.write import atomic_output

STATS_BLOCK = 1024
FLOAT_HISTOGRAM_BINS = 65536


@dataclass
class BandMoments:
    """Running count, mean and variance of each band over valid pixels."""

    bands: int
    count: int = 0
    _sum: list[int] = field(default_factory=list)
    _sum_sq: list[int] = field(default_factory=list)
    _mean: np.ndarray | None = None
    _m2: np.ndarray | None = None
    minimum: np.ndarray | None = None
    maximum: np.ndarray | None = None
    exact: bool = True

    def add(self, data: np.ndarray, valid: np.ndarray) -> None:
        """``(C, H, W)`` values and their ``(H, W)`` validity."""
        values = data[:, valid]
        n = values.shape[1]
        if n == 0:
            return
        self.minimum = _fold(np.minimum, self.minimum, values.min(axis=1))
        self.maximum = _fold(np.maximum, self.maximum, values.max(axis=1))
        if np.issubdtype(values.dtype, np.integer) and self.exact:
            wide = values.astype(np.int64)
            sums, squares = wide.sum(axis=1), np.einsum("ij,ij->i", wide, wide)
            if not self._sum:
                self._sum, self._sum_sq = [0] * self.bands, [0] * self.bands
            self._sum = [a + int(b) for a, b in zip(self._sum, sums, strict=False)]
            self._sum_sq = [a + int(b) for a, b in zip(self._sum_sq, squares, strict=False)]
            self.count += n
            return
        if self._sum:  # integer windows met before a float one: continue inexactly
            self._to_float_moments()
        self.exact = False
        wide = values.astype(np.float64)
        mean = wide.mean(axis=1)
        m2 = ((wide - mean[:, None]) ** 2).sum(axis=1)
        if self._mean is None:
            self._mean, self._m2, self.count = mean, m2, n
            return
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def _to_float_moments(self) -> None:
        self._mean = np.array(self.mean)
        self._m2 = np.array(self.std) ** 2 * self.count
        self._sum, self._sum_sq = [], []

    @property
    def mean(self) -> list[float]:
        if self._sum:
            return [s / self.count for s in self._sum]
        if self._mean is None:  # no pixels yet
            return [math.nan] * self.bands
        return [float(m) for m in self._mean]

    @property
    def std(self) -> list[float]:
        """Population standard deviation (``ddof=0``, as ``numpy.std``)."""
        if self._sum:
            n = self.count
            return [math.sqrt((n * q - s * s) / (n * n)) for s, q in zip(self._sum, self._sum_sq, strict=False)]
        if self._m2 is None:  # no pixels yet
            return [math.nan] * self.bands
        return [float(math.sqrt(max(m2 / self.count, 0.0))) for m2 in self._m2]


def _fold(op, current, new):
    return new.copy() if current is None else op(current, new)


def merge_moments(first: BandMoments, second: BandMoments) -> BandMoments:
    """The moments of both pixel sets together, as if one ``BandMoments`` had seen them all."""
    if first.bands != second.bands:
        raise ValueError(f"cannot merge moments of {first.bands} and {second.bands} bands")
    if second.count == 0 or second.minimum is None or second.maximum is None:
        return first
    if first.count == 0 or first.minimum is None or first.maximum is None:
        return second
    merged = BandMoments(first.bands)
    merged.count = first.count + second.count
    merged.minimum = np.minimum(first.minimum, second.minimum)
    merged.maximum = np.maximum(first.maximum, second.maximum)
    if first._sum and second._sum:  # integer data: exact integer sums, not an average of averages
        merged._sum = [a + b for a, b in zip(first._sum, second._sum, strict=False)]
        merged._sum_sq = [a + b for a, b in zip(first._sum_sq, second._sum_sq, strict=False)]
        return merged
    merged.exact = False
    mean_a, m2_a = _float_moments(first)
    mean_b, m2_b = _float_moments(second)
    delta = mean_b - mean_a
    merged._mean = mean_a + delta * (second.count / merged.count)
    merged._m2 = m2_a + m2_b + delta**2 * (first.count * second.count / merged.count)
    return merged


def _float_moments(moments: BandMoments) -> tuple[np.ndarray, np.ndarray]:
    if moments._mean is not None and moments._m2 is not None:
        return moments._mean, moments._m2
    return np.array(moments.mean), np.array(moments.std) ** 2 * moments.count


@dataclass(frozen=True)
class BandStatistics:
    bands: list[int]
    names: list[str]
    count: int
    mean: list[float]
    std: list[float]
    minimum: list[float]
    maximum: list[float]
    exact: bool
    dtype: str

    def to_dict(self) -> dict:
        return {
            "bands": self.bands,
            "names": self.names,
            "pixels": self.count,
            "exact": self.exact,
            "mean": self.mean,
            "std": self.std,
            "min": self.minimum,
            "max": self.maximum,
        }

    def normalization(self) -> dict:
        """What goes under ``data.normalization`` in a training config."""
        return {
            "mode": "explicit",
            "mean": [round(m, 6) for m in self.mean],
            "std": [round(max(s, 1e-6), 6) for s in self.std],
        }


@dataclass(frozen=True)
class RasterMoments:
    """Band moments with the bands they describe: what one worker returns and ``merge_moments`` combines."""

    moments: BandMoments
    bands: list[int]
    names: list[str]
    dtype: str

    def statistics(self) -> BandStatistics:
        moments = self.moments
        if moments.count == 0 or moments.minimum is None or moments.maximum is None:
            raise DataError("no valid pixels to compute band statistics from")
        return BandStatistics(
            bands=self.bands,
            names=self.names,
            count=moments.count,
            mean=moments.mean,
            std=moments.std,
            minimum=[float(v) for v in moments.minimum],
            maximum=[float(v) for v in moments.maximum],
            exact=moments.exact,
            dtype=self.dtype,
        )


def raster_moments(
    paths: Iterable[Path],
    bands: Sequence[int | str] | None = None,
    nodata: float | None = None,
    block: int = STATS_BLOCK,
) -> RasterMoments:
    """Band moments over the valid pixels of every raster in ``paths``, window by window."""
    moments: BandMoments | None = None
    chosen: list[int] = []
    names: list[str] = []
    dtype = ""
    for path in paths:
        with open_raster(path) as src:
            chosen = resolve_bands(src, bands)
            dtype = src.dtypes[chosen[0] - 1]
            names = [src.descriptions[b - 1] or f"band {b}" for b in chosen]
            moments = moments or BandMoments(len(chosen))
            no_value = scene_nodata(src, nodata)
            for window in block_windows(src.width, src.height, block):
                moments.add(*read_window(src, chosen, window, no_value))
    return RasterMoments(moments or BandMoments(0), chosen, names, dtype)


def band_statistics(
    paths: Iterable[Path],
    bands: Sequence[int | str] | None = None,
    nodata: float | None = None,
    block: int = STATS_BLOCK,
) -> BandStatistics:
    """Exact per-band statistics over the valid pixels of every raster in ``paths``, window by window."""
    return raster_moments(paths, bands, nodata, block).statistics()


def _moments_task(paths: Sequence[Path], bands, nodata: float | None, block: int) -> RasterMoments:
    with bounded_gdal():
        return raster_moments(paths, bands, nodata, block)


def merged_statistics(
    groups: Sequence[Sequence[Path]],
    bands: Sequence[int | str] | None = None,
    nodata: float | None = None,
    block: int = STATS_BLOCK,
    executor: Executor | None = None,
) -> BandStatistics:
    """``band_statistics`` over every raster of ``groups``: one task per group, the moments merged exactly."""
    parts = map_in_order(executor, partial(_moments_task, bands=bands, nodata=nodata, block=block), groups)
    last = parts[-1]
    return RasterMoments(
        reduce(merge_moments, (p.moments for p in parts)), last.bands, last.names, last.dtype
    ).statistics()


# -- percentiles -----------------------------------------------------------------------------------
class HistogramBins(NamedTuple):
    """One histogram layout shared by every raster, so histograms of separate scenes add bin by bin."""

    lows: np.ndarray
    span: np.ndarray
    bins: np.ndarray
    integer: bool


def histogram_bins(overall: BandStatistics) -> HistogramBins:
    """One bin per value for 8- and 16-bit integers (exact percentiles); else 65536 bins from min to max."""
    lows = np.array(overall.minimum)
    span = np.array(overall.maximum) - lows
    integer = bool(np.issubdtype(np.dtype(overall.dtype), np.integer) and span.max() < 2**17)
    bins = (span.astype(np.int64) + 1) if integer else np.full(len(span), FLOAT_HISTOGRAM_BINS)
    return HistogramBins(lows, span, bins, integer)


def band_histograms(
    paths: Iterable[Path],
    bands: Sequence[int | str] | None,
    nodata: float | None,
    lows: np.ndarray,
    span: np.ndarray,
    bins: np.ndarray,
    integer: bool,
    block: int = STATS_BLOCK,
) -> list[np.ndarray]:
    """Per-band value histograms over the valid pixels of ``paths``, on the bins of ``histogram_bins``."""
    histograms = [np.zeros(int(b), dtype=np.int64) for b in bins]
    for path in paths:
        with open_raster(path) as src:
            chosen = resolve_bands(src, bands)
            for window in block_windows(src.width, src.height, block):
                data, valid = read_window(src, chosen, window, scene_nodata(src, nodata))
                for i, values in enumerate(data[:, valid]):
                    if integer:
                        index = values.astype(np.int64) - int(lows[i])
                    else:
                        relative = (values.astype(np.float64) - lows[i]) / max(span[i], 1e-12)
                        index = (relative * (bins[i] - 1)).astype(np.int64)
                    histograms[i] += np.bincount(np.clip(index, 0, bins[i] - 1), minlength=int(bins[i]))
    return histograms


def percentiles_from_histograms(
    histograms: Sequence[np.ndarray],
    layout: HistogramBins,
    low: float,
    high: float,
) -> tuple[list[float], list[float]]:
    """The ``low`` and ``high`` percentiles of each band: the lower edge of the bin holding that rank."""
    result = []
    for q in (low, high):
        values = []
        for i, histogram in enumerate(histograms):
            rank = np.searchsorted(np.cumsum(histogram), q / 100 * histogram.sum(), side="left")
            step = 1.0 if layout.integer else layout.span[i] / (layout.bins[i] - 1)
            values.append(float(layout.lows[i] + min(rank, layout.bins[i] - 1) * step))
        result.append(values)
    return result[0], result[1]


def _histograms_task(
    paths: Sequence[Path], bands, nodata: float | None, layout: HistogramBins, block: int
) -> list[np.ndarray]:
    with bounded_gdal():
        return band_histograms(paths, bands, nodata, **layout._asdict(), block=block)


def band_percentiles(
    paths: Sequence[Path],
    bands: Sequence[int | str] | None,
    nodata: float | None,
    low: float,
    high: float,
    block: int = STATS_BLOCK,
    executor: Executor | None = None,
) -> tuple[list[float], list[float]]:
    """The ``low`` and ``high`` percentiles of each band over all valid pixels, from streamed histograms
    (on ``executor``: one task per raster, the histograms summed bin by bin).

    Exact for 8- and 16-bit integers (one bin per value); float bands use 65536 bins between their
    minimum and maximum, so the result is within one bin width.
    """
    groups = batches(paths, 1, executor)
    # Only the minimum and maximum shape the bins: exact whatever the grouping.
    layout = histogram_bins(merged_statistics(groups, bands, nodata, block, executor))
    parts = map_in_order(
        executor, partial(_histograms_task, bands=bands, nodata=nodata, layout=layout, block=block), groups
    )
    histograms = [sum(part[i] for part in parts) for i in range(len(layout.bins))]
    return percentiles_from_histograms(histograms, layout, low, high)


# -- class frequencies -----------------------------------------------------------------------------
def class_frequencies(
    counts_by_chip: dict[str, np.ndarray],
    statuses: dict[str, str],
    split_lists: dict[str, list[str]],
) -> dict[str, np.ndarray]:
    """Pixels per class at each stage: ``candidates`` (every readable chip, before filtering), ``kept``
    (after filtering), and each split as listed (``<split>``: oversampled chips counted once per
    listing), with ``<split>_before_oversampling`` where chips are listed more than once."""
    some = next(iter(counts_by_chip.values()))
    zero = np.zeros_like(some)
    stages = {
        "candidates": sum((c for k, c in counts_by_chip.items() if statuses[k] != "quarantined"), zero),
        "kept": sum((c for k, c in counts_by_chip.items() if statuses[k] == "kept"), zero),
    }
    for name, chips in split_lists.items():
        unique = list(dict.fromkeys(chips))
        if len(unique) != len(chips):
            stages[f"{name}_before_oversampling"] = sum((counts_by_chip[c] for c in unique), zero)
        stages[name] = sum((counts_by_chip[c] for c in chips), zero)
    return stages


def write_stats_json(path: Path, payload: dict) -> Path:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2))
    return path


def frequencies_payload(stages: dict[str, np.ndarray], schema: ClassSchema) -> dict:
    out: dict[str, object] = {"names": schema.names}
    for stage, counts in stages.items():
        total = int(counts.sum())
        shares = [float(v) / total if total else 0.0 for v in counts]
        out[stage] = {"pixels": [int(v) for v in counts], "shares": shares}
    return out


def plot_class_frequencies(stages: dict[str, np.ndarray], schema: ClassSchema, path: Path, title: str) -> Path:
    """Grouped bars: share of each class at each stage, bars in the class colour, stages by hatching."""
    from matplotlib.figure import Figure

    from landseg.io.figures import save_figure

    names = list(stages)
    hatches = ["", "//", "..", "xx", "\\\\", "++"]
    fig = Figure(figsize=(8.0, max(3.0, 0.6 * schema.num_classes * max(1, len(names)) / 2 + 1.5)))
    ax = fig.add_subplot()
    height = 0.8 / len(names)
    y = np.arange(schema.num_classes)
    colours = schema.plot_colors()
    for j, stage in enumerate(names):
        counts = stages[stage].astype(np.float64)
        shares = counts / counts.sum() if counts.sum() else counts
        offset = y - 0.4 + height * (j + 0.5)
        ax.barh(
            offset,
            shares,
            height=height,
            color=colours,
            edgecolor="black",
            linewidth=0.5,
            hatch=hatches[j % len(hatches)],
            label=f"{stage} ({counts.sum():,.0f} px)",
        )
        for yy, share in zip(offset, shares, strict=False):
            ax.text(share + 0.005, yy, f"{share:.1%}", va="center", fontsize=7)
    ax.set_yticks(y, labels=schema.names)
    ax.invert_yaxis()
    ax.set_xlabel("share of labelled pixels")
    ax.set_xlim(0, 1.1 * max(1e-6, max(float(c.max() / c.sum()) if c.sum() else 0 for c in stages.values())))
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    legend = ax.legend(fontsize=8, loc="lower right")
    for patch in legend.get_patches():
        patch.set_facecolor("white")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
