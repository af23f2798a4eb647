"""``io.pixel_stats``: the input guard judges scale and encoding, never contrast, and names the factor
that converts a wrong scale; the guard's sample of a raster."""

from __future__ import annotations

import numpy as np
import pytest

from landseg.io.pixel_stats import (
    SAMPLE_GRID,
    SAMPLE_PIXELS,
    SAMPLE_SIDE,
    PixelStats,
    input_mismatch,
    pixel_stats,
    sample_input,
)
from landseg.predict.core import ArrayRaster

RGB8 = PixelStats("uint8", (4.6, 6.0, 3.0), (251.6, 240.0, 230.0))
"""A Dubai model's training pixels (the issue's 4.6-251.6)."""
REFLECTANCE16 = PixelStats("uint16", (150.0, 300.0, 200.0), (5200.0, 6900.0, 4800.0))
UNIT = PixelStats("float32", (0.01, 0.02, 0.015), (0.52, 0.69, 0.48))
DECIBELS = PixelStats("float32", (-25.4, -36.5), (2.5, -8.9))


def stats(dtype: str, low: float, high: float, bands: int = 3) -> PixelStats:
    return PixelStats(dtype, (low,) * bands, (high,) * bands)


@pytest.mark.parametrize(
    "given",
    [
        stats("uint8", 20, 44),  # open sea
        stats("uint8", 90, 109),  # haze
        stats("uint8", 96, 96),  # one pixel
        stats("uint8", 2, 31),  # the Dubai sea tile refused before
        stats("uint8", 0, 3),  # nearly black: the same encoding all the same
        stats("float32", 20, 44),  # a float copy of 8-bit pixels
        stats("uint16", 3, 200),  # 8-bit pixels stored as uint16: the values decide
    ],
)
def test_a_narrow_range_in_the_training_encoding_is_accepted(given):
    assert input_mismatch(RGB8, given) is None


@pytest.mark.parametrize(
    "given",
    [stats("uint16", 150, 600), stats("uint16", 40, 90), stats("int16", 900, 1300), stats("float32", 300, 1200)],
)
def test_dark_and_narrow_16_bit_scenes_are_accepted_by_a_16_bit_model(given):
    assert input_mismatch(REFLECTANCE16, given) is None


def test_values_in_another_unit_of_the_same_sign_are_judged_by_magnitude():
    assert input_mismatch(DECIBELS, PixelStats("float32", (-20.0, -30.0), (-1.0, -12.0))) is None
    assert input_mismatch(UNIT, stats("float32", 0.0, 1.2)) is None  # bright clouds pass 1 a little


@pytest.mark.parametrize(
    "training, given, factor, words",
    [
        (RGB8, stats("uint16", 800, 10_200), 0.0255, "more than the 0-255 of the model's 8-bit training pixels"),
        (RGB8, stats("uint16", 800, 1760), 0.0255, "more than the 0-255"),  # sea x 40: dark, still 16-bit
        (RGB8, stats("uint16", 2000, 60_000), 0.00389, "more than the 0-255"),  # full 16-bit range
        (RGB8, stats("float32", 0.08, 0.17), 255, "like 0-1 fractions"),
        (REFLECTANCE16, stats("float32", 0.02, 0.69), 10_000, "like 0-1 fractions"),
        (REFLECTANCE16, stats("uint8", 4, 176), 39.2, "is 8-bit"),
        (UNIT, stats("uint8", 20, 44), 0.00392, "trained on 0-1 fractions"),
        (UNIT, stats("uint16", 150, 600), 0.0001, "trained on 0-1 fractions"),
        (REFLECTANCE16, stats("float32", 0.6, 27.0), 256, "1/256 of the training pixels' 6900"),
        (REFLECTANCE16, stats("float32", 2e4, 3e5), 0.023, "43.5 times the training pixels' 6900"),
    ],
)
def test_another_scale_or_encoding_is_refused_with_the_factor_that_converts_it(training, given, factor, words):
    mismatch = input_mismatch(training, given)
    assert mismatch is not None
    assert mismatch.factor == pytest.approx(factor, rel=0.01)
    assert words in mismatch.problem and given.dtype in mismatch.problem and training.dtype in mismatch.problem
    assert "\n" not in mismatch.problem


def test_an_integer_image_darker_than_a_hundredth_is_no_mistake_for_an_integer_model():
    assert input_mismatch(REFLECTANCE16, stats("uint16", 2, 40)) is None
    assert input_mismatch(REFLECTANCE16, stats("float32", 2, 40)) is not None  # floats that small: a scale


def test_scaled_input_is_judged_by_its_scaled_values_and_the_factor_applies_to_its_own():
    reflectance = stats("uint16", 800, 10_000)
    right = PixelStats(
        "uint16", tuple(v * 0.0255 for v in reflectance.low), tuple(v * 0.0255 for v in reflectance.high)
    )
    assert input_mismatch(RGB8, right, value_scale=0.0255) is None
    halved = PixelStats("uint16", tuple(v * 0.5 for v in reflectance.low), tuple(v * 0.5 for v in reflectance.high))
    mismatch = input_mismatch(RGB8, halved, value_scale=0.5)
    assert mismatch is not None and "uint16 x 0.5" in mismatch.problem
    assert mismatch.factor == pytest.approx(0.0255)  # the whole factor, for the flag that replaces 0.5


def test_an_empty_or_black_sample_is_not_judged():
    assert input_mismatch(RGB8, stats("float32", 0, 0)) is None
    assert input_mismatch(UNIT, stats("uint16", 0, 0)) is None


def test_sample_input_reads_a_single_pixel_and_leaves_out_no_data():
    assert sample_input(ArrayRaster(np.full((3, 1, 1), 96, np.uint8)), [1, 2, 3], None) == stats("uint8", 96, 96)
    image = np.full((1, 40, 40), 7, np.uint16)
    image[:, :20] = 0
    assert sample_input(ArrayRaster(image), [1], nodata=0) == stats("uint16", 7, 7, bands=1)


def test_sample_input_keeps_the_percentiles_of_a_large_scene_from_a_bounded_sample():
    rng = np.random.default_rng(0)
    image = rng.integers(10, 240, (2, 1024, 1536), dtype=np.uint8)
    sampled = sample_input(ArrayRaster(image), [1, 2], None, value_scale=2.0)
    everything = pixel_stats([image * 2.0], "uint8", per_array=image[0].size)
    assert SAMPLE_PIXELS < SAMPLE_GRID**2 * SAMPLE_SIDE**2  # the windows hold more pixels than are kept
    assert sampled.dtype == "uint8"
    np.testing.assert_allclose(sampled.low, everything.low, atol=4)
    np.testing.assert_allclose(sampled.high, everything.high, atol=4)
