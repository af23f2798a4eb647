"""What a model's training pixels looked like, and whether an input is in the same units.

A network trained on 8-bit photos given 16-bit reflectance (or 0-1 floats) still answers, confidently
and wrongly: one class everywhere. The model card therefore records the training pixels' dtype, per-band
percentiles and ground resolution (``PixelStats``), and every prediction compares a sample of its input
with them before predicting (``input_mismatch``).

The comparison is about scale and encoding, never about contrast: open sea, haze or a single pixel span a
narrow range of values, which is no reason to refuse them. An input is refused only when its values cannot
be in the training pixels' encoding (above 255 for 8-bit training pixels, above 2 for 0-1 training
pixels, 8-bit pixels for a model trained on values above 255, 0-1 fractions for a model trained on values
in the hundreds), or when its order of magnitude is far from theirs (``UPWARD_RATIO_LIMIT`` times larger,
or ``DOWNWARD_RATIO_LIMIT`` times smaller unless input and training pixels are both integers: a dark scene
in the training encoding is always accepted). Each refusal carries the factor that turns the input's
encoding into the training one (``Mismatch.factor``), from the two encodings' full scales (1, 255, 10000,
65535), so a dark tile gets the same factor as a bright one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from rasterio.windows import Window

# Percentiles that describe a band's usual range without its outliers.
LOW, HIGH = 1.0, 99.0
SAMPLE_GRID = 8
"""The input is sampled in ``SAMPLE_GRID`` x ``SAMPLE_GRID`` windows spread over the scene."""
SAMPLE_SIDE = 64
SAMPLE_PIXELS = 10_000
"""Of the windows' pixels, at most this many, evenly strided, give the percentiles (100 beyond each)."""
RESOLUTION_RATIO_LIMIT = 2.0

BYTE_FULL_SCALE = 255.0
REFLECTANCE_FULL_SCALE = 10_000.0
"""Surface or top-of-atmosphere reflectance stored as integers (Sentinel-2, Landsat, most 16-bit products)."""
UINT16_FULL_SCALE = 65_535.0
UNIT_LIMIT = 1.5
"""Floats no larger than this are reflectance as 0-1 fractions (bright clouds reach a little above 1)."""
UNIT_IMPOSSIBLE = 2.0
"""Values above this cannot be the 0-1 fractions a model trained on them expects."""
REFLECTANCE_LIMIT = 12_000.0
"""Integers up to this are read as 0-10000 reflectance (with an offset or bright clouds), above as full 16-bit."""
HUNDREDS = 100.0
"""Training pixels at least this large are counts or scaled values, never 0-1 fractions."""
UPWARD_RATIO_LIMIT = 8.0
DOWNWARD_RATIO_LIMIT = 100.0
"""A dark scene (sea, shadow) reaches a tenth or a thirtieth of the training pixels' largest values; a
wrong scale (/255, /10000) is hundreds or thousands of times smaller."""


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

    def top(self) -> float:
        """The brightest band's ``HIGH`` percentile: where the values reach, whatever the scene's contrast."""
        return max(self.high)

    def magnitude(self) -> float:
        """The largest percentile in absolute value: the order of the values, negative ones (dB) included."""
        return max(max(abs(v) for v in self.low), max(abs(v) for v in self.high))


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
        band_low, band_high = np.percentile(finite, [LOW, HIGH])
        low.append(float(band_low))
        high.append(float(band_high))
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
    )
    if nodata is not None:
        pixels = pixels[:, ~(pixels == nodata).all(axis=0)]
    if pixels.shape[1] > SAMPLE_PIXELS:
        # An odd stride walks through every column of the 64-pixel windows (and of JPEG's 8 x 8 blocks).
        pixels = pixels[:, :: math.ceil(pixels.shape[1] / SAMPLE_PIXELS) | 1]
    return _from_pixels(pixels.astype(np.float64) * value_scale, dataset.dtypes[0], ground_resolution(dataset))


def ground_resolution(dataset) -> float | None:
    """Pixel side in metres where the grid is projected in metres; None otherwise."""
    crs = getattr(dataset, "crs", None)
    if crs is None or not crs.is_projected:
        return None
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return float(abs(dataset.transform.a) * factor)


def is_8_bit(dtype: str) -> bool:
    return np.dtype(dtype).kind in "iu" and np.dtype(dtype).itemsize == 1


@dataclass(frozen=True)
class Mismatch:
    """Why an input is not in the training pixels' units, and the factor that would bring it there."""

    problem: str
    factor: float
    """Multiply the input's values by this (``--input-scale-values``), to 3 significant digits."""


def input_mismatch(training: PixelStats, given: PixelStats, value_scale: float = 1.0) -> Mismatch | None:
    """How ``given`` (sampled with its values multiplied by ``value_scale``) differs from the training
    pixels in scale or encoding, or None when it could be the same kind of pixels."""
    if given.magnitude() == 0:  # nothing but zeros or no-data: nothing to judge
        return None
    # Rescaled values are no longer in the units their dtype suggests: they are judged as plain numbers,
    # and the factor is worked out from the input's own values, since the flag multiplies those.
    judged = given if value_scale == 1.0 else replace(given, dtype="float64")
    raw = replace(given, low=_times(given.low, 1 / value_scale), high=_times(given.high, 1 / value_scale))
    found = _encoding_problem(training, judged)
    if found is not None:
        problem, factor = found[0], found[1] / _full_scale(raw, raw.dtype)
    else:
        magnitude_problem = _magnitude_problem(training, judged)
        if magnitude_problem is None:
            return None
        problem, factor = magnitude_problem, training.magnitude() / raw.magnitude()
    scaled = "" if value_scale == 1.0 else f" x {value_scale:g}"
    problem += f" ({given.dtype}{scaled}, band ranges {given.ranges()}; training pixels: {training.dtype}, {training.ranges()})"
    return Mismatch(problem, float(f"{factor:.3g}"))


def _encoding_problem(training: PixelStats, given: PixelStats) -> tuple[str, float] | None:
    """Values impossible in the training pixels' encoding: the problem and the encoding's full scale."""
    t_top, g_top = training.top(), given.top()
    training_full_scale = _full_scale(training, training.dtype, values_decide=True)
    if is_8_bit(training.dtype) and g_top > BYTE_FULL_SCALE:
        return f"has values up to {g_top:g}, more than the 0-255 of the model's 8-bit training pixels", BYTE_FULL_SCALE
    if dtype_family(given.dtype) == "float" and given.magnitude() <= UNIT_LIMIT and t_top >= HUNDREDS:
        return (
            f"has values within 0-{g_top:g}, like 0-1 fractions, but the model was trained on values up to {t_top:g}",
            training_full_scale,
        )
    if is_8_bit(given.dtype) and t_top > BYTE_FULL_SCALE:
        return (
            f"is 8-bit, but the model was trained on values up to {t_top:g}, beyond what 8 bits hold",
            training_full_scale,
        )
    if training_full_scale == 1.0 and g_top > UNIT_IMPOSSIBLE:
        return f"has values up to {g_top:g}, but the model was trained on 0-1 fractions (up to {t_top:g})", 1.0
    return None


def _magnitude_problem(training: PixelStats, given: PixelStats) -> str | None:
    """Values of another order of magnitude. Smaller is only judged when the input is not an integer
    image of an integer-trained model: a dark scene in the same encoding is no mistake."""
    ratio = given.magnitude() / training.magnitude() if training.magnitude() > 0 else 1.0
    both_integers = dtype_family(given.dtype) == dtype_family(training.dtype) == "integer"
    if ratio > UPWARD_RATIO_LIMIT or (ratio * DOWNWARD_RATIO_LIMIT < 1 and not both_integers):
        times = f"{ratio:.3g} times" if ratio > 1 else f"1/{1 / ratio:.3g} of"
        return f"has values up to {given.magnitude():g}, {times} the training pixels' {training.magnitude():g}"
    return None


def _times(values: tuple[float, ...], factor: float) -> tuple[float, ...]:
    return tuple(v * factor for v in values)


def _full_scale(stats: PixelStats, dtype: str, values_decide: bool = False) -> float:
    """The largest value of the encoding that ``stats`` look like: 1 (fractions), 255 (8-bit), 10000
    (scaled reflectance), 65535 (16-bit), else their own top. A 16-bit input darker than 255 is still
    16-bit data; ``values_decide`` (training pixels, a whole data set) takes such pixels for 8-bit ones."""
    top = stats.top()
    if is_8_bit(dtype):
        return BYTE_FULL_SCALE
    if dtype_family(dtype) == "float" and stats.magnitude() <= UNIT_LIMIT:
        return 1.0
    if top <= BYTE_FULL_SCALE and (values_decide or dtype_family(dtype) == "float"):
        return BYTE_FULL_SCALE
    for limit, full_scale in ((REFLECTANCE_LIMIT, REFLECTANCE_FULL_SCALE), (UINT16_FULL_SCALE, UINT16_FULL_SCALE)):
        if top <= limit:
            return full_scale
    return top


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
