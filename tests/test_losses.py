"""Every loss against small hand-computed cases, brute-force references, and for finite gradients."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landseg.classes import IGNORE_INDEX
from landseg.losses import (
    CrossEntropyConfig,
    FocalConfig,
    build_loss,
    loss_configs,
    parse_loss,
    resolve_class_weights,
    statistical_class_weights,
)

ALL_LOSSES = ["ce", "focal", "dice", "soft_jaccard", "lovasz"]


def loss_of(num_classes=2, **config):
    return build_loss(parse_loss(config), num_classes)


@pytest.fixture
def hand_case():
    """Four pixels, two classes. Probabilities of class 1: A 0.75 (label 1), B 0.75 (label 0),
    C 0.5 (label 0); D is unlabelled and confidently wrong, which must not matter."""
    l3 = math.log(3)
    logits = torch.tensor([[0.0, 0.0, 0.0, 9.0], [l3, l3, 0.0, 0.0]]).reshape(1, 2, 2, 2)
    target = torch.tensor([1, 0, 0, IGNORE_INDEX]).reshape(1, 2, 2)
    return logits, target


# Hand-computed values for ``hand_case`` (p_t = 0.75, 0.25, 0.5):
# CE    = (-ln .75 - ln .25 - ln .5) / 3
# wCE   = (2 (-ln .75) - ln .25 - ln .5) / (2 + 1 + 1) with weights (1, 2)
# focal = (.25^2 (-ln .75) + .75^2 (-ln .25) + .5^2 (-ln .5)) / 3
# Dice  class 0: 2 (.25 + .5) / ((.25 + .25 + .5) + 2) = .5; class 1: 2 (.75) / ((.75 + .75 + .5) + 1) = .5
# Jaccard class 0: .75 / (3 - .75) = 1/3; class 1: .75 / (3 - .75) = 1/3
# Lovasz class 0: errors B .75 (fg), C .5 (fg), A .25 -> Jaccard-loss steps .5, .5, 0 -> .625
#        class 1: errors B .75, C .5, A .25 (fg) -> steps .5, 1/6, 1/3 -> .375 + .5/6 + .25/3
HAND_VALUES = {
    "ce": (-math.log(0.75) - math.log(0.25) - math.log(0.5)) / 3,
    "focal": (0.0625 * -math.log(0.75) + 0.5625 * -math.log(0.25) + 0.25 * -math.log(0.5)) / 3,
    "dice": 0.5,
    "soft_jaccard": 1 - 1 / 3,
    "lovasz": (0.625 + 0.375 + 0.5 / 6 + 0.25 / 3) / 2,
}


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_hand_computed_values(hand_case, name):
    logits, target = hand_case
    assert float(loss_of(name=name)(logits, target)) == pytest.approx(HAND_VALUES[name], rel=1e-5)


def test_weighted_and_smoothed_cross_entropy(hand_case):
    logits, target = hand_case
    weighted = (2 * -math.log(0.75) - math.log(0.25) - math.log(0.5)) / 4
    assert float(loss_of(name="ce", class_weights=[1, 2])(logits, target)) == pytest.approx(weighted, rel=1e-6)
    # Label smoothing with weights is normalized exactly as PyTorch's own mean reduction does it.
    ours = loss_of(name="ce", class_weights=[1, 2], label_smoothing=0.1)(logits, target)
    reference = F.cross_entropy(
        logits, target, weight=torch.tensor([1.0, 2.0]), ignore_index=IGNORE_INDEX, label_smoothing=0.1
    )
    assert float(ours) == pytest.approx(float(reference), rel=1e-6)


def test_focal_alpha_and_gamma_zero(hand_case):
    logits, target = hand_case
    alpha = loss_of(name="focal", gamma=0.0, alpha=[0.25, 1.0])(logits, target)
    expected = (1.0 * -math.log(0.75) + 0.25 * -math.log(0.25) + 0.25 * -math.log(0.5)) / 3
    assert float(alpha) == pytest.approx(expected, rel=1e-6)
    rng = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 5, generator=rng)
    target = torch.randint(0, 4, (2, 5, 5), generator=rng)
    target[0, :2] = IGNORE_INDEX
    plain = loss_of(4, name="focal", gamma=0.0)(logits, target)
    assert float(plain) == pytest.approx(float(F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)), rel=1e-6)


def lovasz_brute_force(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Lovasz extension of the Jaccard loss from its definition (Berman et al. 2018, eq. 8-9): with the
    errors sorted in decreasing order, sum of error_i times the growth of the Jaccard loss of the set
    of the i largest errors, averaged over the classes present."""
    losses = []
    for c in range(probabilities.shape[1]):
        foreground = labels == c
        if not foreground.any():
            continue
        errors = np.abs(foreground - probabilities[:, c])
        order = np.argsort(-errors, kind="stable")
        value, previous = 0.0, 0.0
        for i in range(1, len(order) + 1):
            mispredicted = np.zeros(len(labels), bool)
            mispredicted[order[:i]] = True
            jaccard_loss = mispredicted.sum() / (foreground | mispredicted).sum()
            value += errors[order[i - 1]] * (jaccard_loss - previous)
            previous = jaccard_loss
        losses.append(value)
    return float(np.mean(losses))


def test_lovasz_matches_the_definition_and_skips_unlabelled():
    rng = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 4, generator=rng)
    target = torch.randint(0, 3, (2, 4, 4), generator=rng)
    target[1, 0] = IGNORE_INDEX
    probabilities = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, 3).numpy().astype(np.float64)
    labels = target.reshape(-1).numpy()
    keep = labels != IGNORE_INDEX
    expected = lovasz_brute_force(probabilities[keep], labels[keep])
    assert float(loss_of(3, name="lovasz")(logits, target)) == pytest.approx(expected, rel=1e-5)

    per_image = [
        lovasz_brute_force(
            probabilities[i * 16 : (i + 1) * 16][keep[i * 16 : (i + 1) * 16]],
            labels[i * 16 : (i + 1) * 16][keep[i * 16 : (i + 1) * 16]],
        )
        for i in range(2)
    ]
    value = loss_of(3, name="lovasz", per_image=True)(logits, target)
    assert float(value) == pytest.approx(np.mean(per_image), rel=1e-5)

    # smp returns an empty tensor for an image without labels; it must simply not count.
    target[1] = IGNORE_INDEX
    both = loss_of(3, name="lovasz", per_image=True)(logits, target)
    first = loss_of(3, name="lovasz")(logits[:1], target[:1])
    assert both.shape == () and float(both) == pytest.approx(float(first), rel=1e-6)


def test_lovasz_of_hard_predictions_is_one_minus_iou():
    labels = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 1]])
    predicted = torch.tensor([[0, 1, 1, 1], [2, 2, 0, 1]])
    logits = F.one_hot(predicted, 3).permute(2, 0, 1)[None].float() * 60.0
    ious = [1 / 3, 3 / 4, 2 / 3]  # class 0: 1 of {0,1,6}; class 1: {2,3,7} of {1,2,3,7}; class 2: {4,5} of {4,5,6}
    value = loss_of(3, name="lovasz")(logits, labels[None])
    assert float(value) == pytest.approx(np.mean([1 - i for i in ious]), abs=1e-5)


def test_weighted_sum_is_seed002_mix(hand_case):
    logits, target = hand_case
    mix = loss_of(name="sum", terms=[{"name": "ce", "weight": 0.5}, {"name": "lovasz", "weight": 0.5}])
    assert float(mix(logits, target)) == pytest.approx(0.5 * HAND_VALUES["ce"] + 0.5 * HAND_VALUES["lovasz"], rel=1e-6)
    scaled = loss_of(name="dice", weight=3.0)
    assert float(scaled(logits, target)) == pytest.approx(1.5, rel=1e-6)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_unlabelled_pixels_have_no_influence(name):
    rng = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, 6, generator=rng, requires_grad=True)
    target = torch.randint(0, 4, (2, 6, 6), generator=rng)
    target[:, :, :2] = IGNORE_INDEX
    loss = loss_of(4, name=name)
    value = loss(logits, target)
    value.backward()
    assert torch.all(logits.grad[:, :, :, :2] == 0)
    changed = logits.detach().clone()
    changed[:, :, :, :2] = torch.randn(2, 4, 6, 2, generator=rng) * 10
    assert float(loss(changed, target)) == pytest.approx(value.item(), rel=1e-6)


@pytest.mark.parametrize("name", [*ALL_LOSSES, "sum"])
@pytest.mark.parametrize("case", ["extreme", "no_labels", "one_class"])
def test_gradients_are_finite(name, case):
    rng = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, 5, generator=rng) * (80.0 if case == "extreme" else 1.0)
    logits.requires_grad_(True)
    target = torch.randint(0, 3, (2, 5, 5), generator=rng)
    if case == "no_labels":
        target[:] = IGNORE_INDEX
    if case == "one_class":
        target[:] = 1
    mix = [{"name": "focal", "weight": 0.5}, {"name": "soft_jaccard", "weight": 0.5}]
    extra = {"terms": mix} if name == "sum" else {}
    weights = {"class_weights": [1.0, 2.0, 0.5]} if name in ("ce", "dice", "soft_jaccard") else {}
    value = loss_of(3, name=name, **extra, **weights)(logits, target)
    value.backward()
    assert value.shape == () and torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()
    if case == "no_labels":
        assert value.item() == 0.0 and torch.all(logits.grad == 0)


def test_statistical_class_weights_by_hand():
    # Mask 1: three pixels of class 0, one of class 1. Mask 2: one of class 0, two of class 2, one
    # unlabelled. Class 3 never occurs.
    pixels = np.array([4, 1, 2, 0])
    present_image_pixels = np.array([4 + 3, 4, 3, 0])
    median = statistical_class_weights("median_frequency", pixels, present_image_pixels)
    frequencies = np.array([4 / 7, 1 / 4, 2 / 3])
    np.testing.assert_allclose(median, [*(np.median(frequencies) / frequencies), 0.0])
    np.testing.assert_allclose(median[:3], [1.0, (4 / 7) / (1 / 4), (4 / 7) / (2 / 3)])
    np.testing.assert_allclose(
        statistical_class_weights("inverse_frequency", pixels, present_image_pixels), [7 / 12, 7 / 3, 7 / 6, 0.0]
    )
    np.testing.assert_allclose(
        statistical_class_weights("inverse_share", pixels, present_image_pixels), [7 / 4, 7.0, 7 / 2, 0.0]
    )
    with pytest.raises(ValueError, match="no labelled pixel"):
        statistical_class_weights("inverse_share", np.zeros(3), np.zeros(3))


def test_resolve_replaces_statistic_names_in_nested_terms():
    config = parse_loss(
        {
            "name": "sum",
            "terms": [
                {"name": "ce", "class_weights": "inverse_share"},
                {"name": "focal", "alpha": "inverse_frequency"},
            ],
        }
    )
    resolved = resolve_class_weights(config, np.array([3, 1]), np.array([4, 4]))
    assert resolved.terms[0].class_weights == pytest.approx([4 / 3, 4.0])
    assert resolved.terms[1].alpha == pytest.approx([2 / 3, 2.0])
    assert config.terms[0].class_weights == "inverse_share"  # the original is left alone
    build_loss(resolved, 2)
    with pytest.raises(ValueError, match="resolved to numbers first"):
        build_loss(config, 2)
    with pytest.raises(ValueError, match="has 3 values but the schema has 2"):
        build_loss(CrossEntropyConfig(class_weights=[1, 2, 3]), 2)


@pytest.mark.parametrize(
    "loss, message",
    [
        ({"name": "ce", "gamma": 1.0}, "loss 'ce' does not take 'gamma' (it belongs to focal)"),
        ({"name": "lovasz", "class_weights": "median_frequency"}, "does not take 'class_weights'"),
        ({"name": "sum"}, "loss 'sum' needs terms"),
        (
            {"name": "sum", "terms": [{"name": "ce", "gama": 2}]},
            "train.loss.terms.0: unknown key 'gama'; did you mean 'gamma'?",
        ),
        ({"name": "focal", "alpha": [1.0, -1.0]}, "non-negative"),
        ({"name": "ce", "class_weights": "median"}, "train.loss.class_weights"),
        ({"name": "focall"}, "train.loss: unknown loss 'focall' (did you mean 'focal'?)"),
        ({"name": "focal", "gamma": -1}, "train.loss.gamma: Input should be greater than or equal to 0"),
        ({"name": "ce", "label_smoothing": 1.0}, "train.loss.label_smoothing: Input should be less than 1"),
        ({"name": "dice", "per_image": True}, "loss 'dice' does not take 'per_image' (it belongs to lovasz)"),
        ({"name": "sum", "terms": [{"name": "lovaz"}]}, "train.loss.terms.0: unknown loss 'lovaz'"),
    ],
)
def test_loss_config_mistakes_are_named(loss, message):
    from landseg.config import parse_config
    from landseg.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({"data": {"root": "d"}, "train": {"loss": loss}}, source="exp.yaml")
    assert message in str(info.value)


def test_every_loss_config_names_itself_and_builds_its_module():
    assert list(loss_configs()) == ["ce", "focal", "dice", "soft_jaccard", "lovasz", "sum"]
    for name, config_type in loss_configs().items():
        if name != "sum":
            assert parse_loss({"name": name}) == config_type()
            assert isinstance(config_type().build(3), torch.nn.Module)
    assert isinstance(parse_loss({"label_smoothing": 0.1}), CrossEntropyConfig)  # no name: cross-entropy, as always


def test_configs_and_checkpoints_of_older_versions_still_read():
    # Older versions stored one flat loss model: every loss's options, at their defaults, beside the chosen one's.
    stored = {
        "name": "focal",
        "weight": 1.0,
        "label_smoothing": 0.0,
        "class_weights": None,
        "gamma": 3.0,
        "alpha": [1.0, 2.0],
        "log_loss": False,
        "smooth": 0.0,
        "per_image": False,
        "terms": [],
    }
    assert parse_loss(stored) == FocalConfig(gamma=3.0, alpha=[1.0, 2.0])
    from landseg.config import TrainConfig

    assert TrainConfig.model_validate({"loss": stored}).loss == FocalConfig(gamma=3.0, alpha=[1.0, 2.0])


def test_the_default_loss_is_focal_with_gamma_2():
    from landseg.config import TrainConfig

    assert TrainConfig().loss == FocalConfig(gamma=2.0)
    assert TrainConfig().loss.model_dump() == {"name": "focal", "weight": 1.0, "gamma": 2.0, "alpha": None}
