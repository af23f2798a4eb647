"""Augmentation: D4 by default, random scale, brightness, per-band colour and gamma for any band count."""

import numpy as np
import pytest

from landseg.classes import IGNORE_INDEX
from landseg.config import AugmentConfig
from landseg.data.augment import Augmentation, resize_pair
from landseg.data.synthetic import generate_scene
from landseg.data.transforms import d4_transform
from landseg.errors import ConfigError


@pytest.fixture(scope="module")
def scene():
    """A 5-band synthetic scene (RGB, NIR, SWIR): photometric jitter must not care about the band count."""
    return generate_scene(48, seed=4, bands=5)


def test_defaults_apply_only_a_d4_transform(scene):
    rng = np.random.default_rng(0)
    image, mask = Augmentation()(scene.image, scene.labels, 48, rng)
    candidates = [(k, flip) for k in range(4) for flip in (False, True)]
    matches = [c for c in candidates if np.array_equal(d4_transform(scene.image, *c), image)]
    assert matches and np.array_equal(d4_transform(scene.labels, *matches[0]), mask)
    assert image.dtype == np.uint8  # untouched values: normalization happens later, exactly as before


def test_scale_cuts_a_smaller_window_and_resizes_it(scene):
    zoom = Augmentation(flips=False, rotate90=False, scale=(2.0, 2.0))
    rng = np.random.default_rng(1)
    assert zoom.window_size(32, rng) == 16
    window_image, window_mask = scene.image[:, :16, :16], scene.labels[:16, :16]
    image, mask = zoom(window_image, window_mask, 32, rng)
    assert image.shape == (5, 32, 32) and mask.shape == (32, 32)
    assert np.array_equal(mask, np.kron(window_mask, np.ones((2, 2), np.uint8)))  # exact nearest neighbour
    # Bilinear upsampling stays within each band's range and keeps its mean.
    for band in range(5):
        assert window_image[band].min() <= image[band].min() and image[band].max() <= window_image[band].max()
        assert image[band].mean() == pytest.approx(window_image[band].mean(), rel=0.03)
    sizes = {Augmentation(scale=(0.5, 2.0)).window_size(32, np.random.default_rng(s)) for s in range(200)}
    assert min(sizes) >= 16 and max(sizes) <= 64 and len(sizes) > 20


def test_shrinking_keeps_labels_exact():
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 3
    mask[:5] = IGNORE_INDEX
    image = np.random.default_rng(2).random((2, 40, 40)).astype(np.float32)
    small_image, small_mask = resize_pair(image, mask, 20)
    assert small_image.shape == (2, 20, 20)
    assert set(np.unique(small_mask)) == {0, 3, IGNORE_INDEX}


def test_brightness_is_one_gain_for_every_band(scene):
    jitter = Augmentation(flips=False, rotate90=False, brightness=0.3, max_value=255)
    image = scene.image.astype(np.float32).clip(1, 150)  # low enough not to saturate
    out, _ = jitter(image, scene.labels, 48, np.random.default_rng(3))
    ratio = out / image
    assert ratio.std() < 1e-5 and 0.7 <= ratio.mean() <= 1.3 and abs(ratio.mean() - 1) > 1e-3


def test_color_is_one_gain_per_band(scene):
    jitter = Augmentation(flips=False, rotate90=False, color=0.2, max_value=255)
    image = scene.image.astype(np.float32).clip(1, 150)
    out, _ = jitter(image, scene.labels, 48, np.random.default_rng(4))
    ratios = (out / image).reshape(5, -1)
    assert ratios.std(axis=1).max() < 1e-5
    assert ((ratios.mean(axis=1) >= 0.8) & (ratios.mean(axis=1) <= 1.2)).all()
    assert ratios.mean(axis=1).std() > 1e-3  # the bands got different gains


def test_gamma_bends_values_on_the_unit_scale(scene):
    jitter = Augmentation(flips=False, rotate90=False, gamma=0.4, max_value=255)
    image = scene.image.astype(np.float32).clip(1, 254)
    out, _ = jitter(image, scene.labels, 48, np.random.default_rng(5))
    unit_in, unit_out = image / 255, out / 255
    gamma = np.log(unit_out.ravel()[0]) / np.log(unit_in.ravel()[0])
    assert 0.6 <= gamma <= 1.4 and abs(gamma - 1) > 1e-3
    np.testing.assert_allclose(unit_out, unit_in**gamma, rtol=1e-4, atol=1e-6)


def test_bright_values_saturate_at_the_maximum():
    image = np.full((4, 8, 8), 250, np.uint8)
    bright = Augmentation(flips=False, rotate90=False, brightness=0.5, max_value=255)
    # Search a draw that brightens; every brightened value must stop at 255.
    for seed in range(20):
        out, _ = bright(image, np.zeros((8, 8), np.uint8), 8, np.random.default_rng(seed))
        if out.max() >= 255:
            assert out.max() == pytest.approx(255.0)
            break
    else:
        pytest.fail("no draw brightened the image")


def test_photometric_jitter_needs_the_data_maximum():
    with pytest.raises(ConfigError, match="max_value"):
        Augmentation(gamma=0.2)
    config = AugmentConfig(brightness=0.1, scale=[0.5, 2])
    assert Augmentation.from_config(config, 255.0).scale == (0.5, 2.0)
    with pytest.raises(ValueError, match="low <= high"):
        AugmentConfig(scale=[2, 1])
