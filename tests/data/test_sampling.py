"""Crop strategies: random (unchanged crops), equibatch class cycling, rare-class oversampling, statistics."""

import numpy as np
import pytest

from landseg.classes import IGNORE_INDEX
from landseg.config import SamplingConfig
from landseg.data.augment import Augmentation
from landseg.data.dataset import LabelledImage
from landseg.data.sampling import (
    ClassStatistics,
    EquibatchCrops,
    RandomCrops,
    RareClassOversampling,
    SampledCropDataset,
    _window_covering,
    crop_strategy,
    labelled_items,
)
from landseg.data.synthetic import generate_scene
from landseg.errors import ConfigError
from landseg.normalization import Normalization

NORM = Normalization.symmetric(3)
NAMES = ["Field", "Forest", "Water", "Road", "Building"]


@pytest.fixture(scope="module")
def scenes() -> list[LabelledImage]:
    """Two synthetic 96 px scenes, one with no-data, and one 32 px scene smaller than 40 px crops."""
    items = []
    for seed, size, nodata in [(11, 96, 0.0), (12, 96, 0.3), (13, 32, 0.0)]:
        scene = generate_scene(size, seed=seed, nodata_fraction=nodata)
        items.append(LabelledImage(scene.image, scene.labels, f"scene_{seed}"))
    return items


def dataset(items, strategy, length=40, seed=5, crop=32, augmentation=None):
    return SampledCropDataset(
        items, crop, NORM, length, strategy, augmentation if augmentation is not None else Augmentation(), seed=seed
    )


def test_crops_depend_on_seed_and_key_only(scenes):
    items = labelled_items(scenes)
    augmentation = Augmentation(scale=(0.7, 1.4), brightness=0.2, max_value=255)
    first = dataset(items, EquibatchCrops(items, 5), augmentation=augmentation)
    again = dataset(items, EquibatchCrops(items, 5), augmentation=augmentation)
    for key in [3, 17, 3]:
        assert np.array_equal(first[key][0].numpy(), again[key][0].numpy())
        assert np.array_equal(first[key][1].numpy(), again[key][1].numpy())
    assert not np.array_equal(first[3][1].numpy(), first[4][1].numpy())


def test_equibatch_visits_every_class_every_cycle():
    rng = np.random.default_rng(0)
    masks = [np.zeros((80, 80), np.uint8), np.ones((80, 80), np.uint8)]
    masks[0][70:73, 5:8] = 2  # nine pixels of a rare class in one corner
    masks[1][:, :10] = IGNORE_INDEX
    items = [LabelledImage(rng.integers(0, 255, (3, 80, 80), dtype=np.uint8), m, f"m{i}") for i, m in enumerate(masks)]
    strategy = EquibatchCrops(items, num_classes=4)  # class 3 never occurs, so the cycle has 3 classes
    assert strategy.classes == [0, 1, 2]
    crops = dataset(items, strategy, length=60, crop=24)
    seen = [set(np.unique(crops[key][1].numpy())) - {IGNORE_INDEX} for key in range(30)]
    for key, classes in enumerate(seen):
        assert strategy.class_of(key) in classes
    for start in range(28):
        assert set().union(*seen[start : start + 3]) >= {0, 1, 2}
    # A random crop of the same size finds the rare class far less often.
    random = dataset(items, RandomCrops(items), length=60, crop=24)
    assert sum(2 in np.unique(random[key][1].numpy()) for key in range(30)) < 5


def test_window_covering_is_uniform_over_valid_starts():
    rng = np.random.default_rng(1)
    starts = [_window_covering(50, 100, 20, rng) for _ in range(2000)]
    assert min(starts) == 31 and max(starts) == 50
    assert all(s <= 50 < s + 20 for s in starts)
    assert _window_covering(5, 16, 32, rng) == 0


def test_oversampling_draws_rare_crops_one_plus_copies_times_as_often():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (3, 48, 48), dtype=np.uint8)
    common = LabelledImage(image, np.zeros((48, 48), np.uint8), "common")
    rare = LabelledImage(image, np.ones((48, 48), np.uint8), "rare")
    strategy = RareClassOversampling([common, rare], rare_classes=[1], copies=3)
    crops = dataset([common, rare], strategy, length=1500, crop=16)
    share = np.mean([crops[key][1][0, 0].item() == 1 for key in range(1500)])
    assert share == pytest.approx(4 / 5, abs=0.03)  # 1 + 3 copies of the rare half against 1 of the other
    plain = dataset([common, rare], RandomCrops([common, rare]), length=1500, crop=16)
    assert np.mean([plain[key][1][0, 0].item() == 1 for key in range(1500)]) == pytest.approx(1 / 2, abs=0.04)


def test_rare_class_share_threshold():
    mask = np.zeros((10, 10), np.uint8)
    mask[0, :4] = 1  # 4 % of the labelled pixels
    mask[9] = IGNORE_INDEX
    anywhere = RareClassOversampling([LabelledImage(np.zeros((3, 10, 10)), mask, "m")], [1])
    assert anywhere.has_rare_class(mask)
    five_percent = RareClassOversampling([LabelledImage(np.zeros((3, 10, 10)), mask, "m")], [1], min_share=0.05)
    assert not five_percent.has_rare_class(mask)
    mask[1, :2] = 1  # 6 of 90 labelled pixels
    assert five_percent.has_rare_class(mask)


def test_oversampling_warns_when_rare_pixels_are_in_nearly_every_crop():
    image = np.zeros((3, 128, 128), np.uint8)
    scattered = np.zeros((128, 128), np.uint8)
    scattered[::8, ::8] = 1  # a thin, scattered class: 1.6 % of the pixels, in every 32 px crop
    strategy = RareClassOversampling([LabelledImage(image, scattered, "scattered")], [1])
    assert strategy.rare_crop_share(32) == 1.0
    message = strategy.saturation_warning(32, ["Background", "Road"])
    assert "Road" in message and "min_share" in message
    # Asking a crop to be 5 % Road makes the scattered pixels too few: the sampler has work to do again.
    strict = RareClassOversampling([LabelledImage(image, scattered, "scattered")], [1], min_share=0.05)
    assert strict.rare_crop_share(32) == 0.0 and strict.saturation_warning(32, ["Background", "Road"]) is None

    blocky = np.zeros((128, 128), np.uint8)
    blocky[:32, :32] = 1  # a larger share, in one corner: most crops miss it
    corner = RareClassOversampling([LabelledImage(image, blocky, "corner")], [1])
    assert 0.05 < corner.rare_crop_share(32) < 0.3
    assert corner.saturation_warning(32, ["Background", "Road"]) is None


def test_class_statistics_by_hand():
    first = np.array([[0, 0], [0, 1]], np.uint8)
    second = np.array([[0, 2], [2, IGNORE_INDEX]], np.uint8)
    stats = ClassStatistics.from_masks([first, second], num_classes=4)
    assert stats.pixels.tolist() == [4, 1, 2, 0]
    assert stats.present_image_pixels.tolist() == [7, 4, 3, 0]
    assert stats.images.tolist() == [2, 1, 1, 0]
    assert stats.rare_classes() == [1]  # share 1/7 < 1/4; class 3 is absent, not rare
    assert stats.rare_classes(below=0.3) == [1, 2]
    table = stats.to_dict(["a", "b", "c", "d"])
    assert table["c"] == {"pixels": 2, "share": round(2 / 7, 6), "images": 1}
    with pytest.raises(ValueError, match="beyond the 2 classes"):
        ClassStatistics.from_masks([second], num_classes=2)


def test_crop_strategy_from_config(scenes):
    items = labelled_items(scenes)
    stats = ClassStatistics.from_masks([it.mask for it in items], 5)
    assert isinstance(crop_strategy(SamplingConfig(), items, NAMES, stats), RandomCrops)
    assert isinstance(crop_strategy(SamplingConfig(name="equibatch"), items, NAMES, stats), EquibatchCrops)
    oversample = SamplingConfig(name="oversample", rare_classes=["Road", "Water"], copies=5)
    named = crop_strategy(oversample, items, NAMES, stats)
    assert named.rare.tolist() == [3, 2] and named.copies == 5
    from_stats = crop_strategy(SamplingConfig(name="oversample"), items, NAMES, stats)
    assert from_stats.rare.tolist() == stats.rare_classes() and len(from_stats.rare) > 0
    with pytest.raises(ConfigError, match="unknown classes \\['Lake'\\]"):
        crop_strategy(SamplingConfig(name="oversample", rare_classes=["Lake"]), items, NAMES, stats)
    with pytest.raises(ConfigError, match="no class of the training masks has a share below"):
        crop_strategy(SamplingConfig(name="oversample", rare_below=1e-6), items, NAMES, stats)


def test_sampling_config_refuses_options_of_other_strategies():
    with pytest.raises(ValueError, match="does not take 'copies'"):
        SamplingConfig(name="equibatch", copies=2)
    with pytest.raises(ValueError, match="not both"):
        SamplingConfig(name="oversample", rare_classes=["Road"], rare_below=0.1)


def test_generate_scene_has_labels():
    # Guards the fixture: a scene without labels would make the tests above vacuous.
    assert (generate_scene(96, seed=11).labels != IGNORE_INDEX).mean() > 0.5
