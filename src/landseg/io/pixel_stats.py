"""What a model's training pixels looked like, and whether an input looks like them.

A network trained on 8-bit photos given 16-bit reflectance (or 0-1 floats) still answers, confidently
and wrongly: one class everywhere. The model card therefore records the training pixels' dtype, per-band
percentiles and ground resolution (``PixelStats``), and every prediction compares a sample of its input
with them before predicting (``input_mismatch``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from rasterio.windows import Window

# Percentiles that describe a band's usual range without its outliers.
LOW, HIGH = 1.0, 99.0
SAMPLE_GRID = 8
"""The input is sampled in ``SAMPLE_GRID`` x ``SAMPLE_GRID`` windows spread over the scene."""
SAMPLE_SIDE = 64
# An input whose range is this many times wider (or narrower) than the training range is another kind of data.
SPAN_RATIO_LIMIT = 4.0
RESOLUTION_RATIO_LIMIT = 2.0


def dtype_family(dtype: str) -> str:
    return "float" if np.issubdtype(np.dtype(dtype), np.floating) else "integer"


@dataclass(frozen=True)
class PixelStats:
    dtype: str
    low: tuple[float, ...]
    """Per band, the ``LOW`` percentile of the valid pixels."""
    high: tuple[float, ...]
    resolution_m: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PixelStats:
        return cls(str(data["dtype"]), tuple(data["low"]), tuple(data["high"]), data.get("resolution_m"))

    def ranges(self) -> str:
        return ", ".join(f"{lo:g}-{hi:g}" for lo, hi in zip(self.low, self.high, strict=False))


def pixel_stats(
    arrays: Iterable[np.ndarray], dtype: str, resolution_m: float | None = None, per_array: int = 20_000, seed: int = 0
) -> PixelStats:
    """Percentiles of up to ``per_array`` seeded random finite pixels of each ``(C, H, W)`` array."""
    rng = np.random.default_rng(seed)
    samples = []
    for array in arrays:
        flat = array.reshape(array.shape[0], -1)
        picked = rng.choice(flat.shape[1], size=min(per_array, flat.shape[1]), replace=False)
        samples.append(flat[:, picked].astype(np.float64))
    return _from_pixels(np.concatenate(samples, axis=1), dtype, resolution_m)


def _from_pixels(pixels: np.ndarray, dtype: str, resolution_m: float | None) -> PixelStats:
    low, high = [], []
    for band in pixels:
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            finite = np.zeros(1)
        low.append(float(np.percentile(finite, LOW)))
        high.append(float(np.percentile(finite, HIGH)))
    return PixelStats(dtype, tuple(low), tuple(high), resolution_m)


def sample_input(dataset, bands: Sequence[int], nodata: float | None, value_scale: float = 1.0) -> PixelStats:
    """``PixelStats`` of a raster (rasterio dataset or ``core.ArrayRaster``) from windows spread over it."""
    side_h, side_w = min(SAMPLE_SIDE, dataset.height), min(SAMPLE_SIDE, dataset.width)
    rows = np.linspace(0, dataset.height - side_h, SAMPLE_GRID).astype(int)
    cols = np.linspace(0, dataset.width - side_w, SAMPLE_GRID).astype(int)
    windows = {(r, c) for r in rows for c in cols}
    pixels = np.concatenate(
        [
            dataset.read(list(bands), window=Window(c, r, side_w, side_h)).reshape(len(bands), -1)
            for r, c in sorted(windows)
        ],
        axis=1,
    ).astype(np.float64)
    if nodata is not None:
        pixels = pixels[:, ~(pixels == nodata).all(axis=0)]
    return _from_pixels(pixels * value_scale, dataset.dtypes[0], ground_resolution(dataset))


def ground_resolution(dataset) -> float | None:
    """Pixel side in metres where the grid is projected in metres; None otherwise."""
    crs = getattr(dataset, "crs", None)
    if crs is None or not crs.is_projected:
        return None
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return float(abs(dataset.transform.a) * factor)


def input_mismatch(training: PixelStats, given: PixelStats, value_scale: float = 1.0) -> str | None:
    """Why ``given`` is not the kind of pixels the model was trained on, or None when it is."""
    if dtype_family(training.dtype) != dtype_family(given.dtype) and value_scale == 1.0:
        return (
            f"is {given.dtype} with band ranges {given.ranges()}, but the model was trained on "
            f"{training.dtype} pixels with ranges {training.ranges()}"
        )
    for band, (t_lo, t_hi, g_lo, g_hi) in enumerate(
        zip(training.low, training.high, given.low, given.high, strict=False), 1
    ):
        t_span, g_span = max(t_hi - t_lo, 1e-9), max(g_hi - g_lo, 1e-9)
        outside = g_lo > t_hi + t_span or g_hi < t_lo - t_span
        if outside or g_span > SPAN_RATIO_LIMIT * t_span or g_span * SPAN_RATIO_LIMIT * 2 < t_span:
            return (
                f"band {band} ranges {g_lo:g}-{g_hi:g} ({given.dtype}), far from the training pixels' "
                f"{t_lo:g}-{t_hi:g} ({training.dtype}; all bands: {training.ranges()})"
            )
    return None


def resolution_warning(training: PixelStats, given: PixelStats) -> str | None:
    if training.resolution_m is None or given.resolution_m is None:
        return None
    ratio = given.resolution_m / training.resolution_m
    if 1 / RESOLUTION_RATIO_LIMIT <= ratio <= RESOLUTION_RATIO_LIMIT:
        return None
    return (
        f"has {given.resolution_m:g} m pixels, the model was trained on {training.resolution_m:g} m pixels: "
        "resample the input, or expect a worse map"
    )
