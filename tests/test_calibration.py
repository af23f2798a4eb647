"""Calibration measures against hand-computed cases and against data whose calibration is known."""

import numpy as np
import pytest

from landseg.calibration import CalibrationTally


def test_a_hand_computed_case():
    """Four pixels, two classes, bins of width 0.5 (two bins)."""
    probabilities = np.array([[0.9, 0.8, 0.3, 0.4], [0.1, 0.2, 0.7, 0.6]])
    shown = probabilities.argmax(axis=0)  # 0, 0, 1, 1 with probabilities 0.9, 0.8, 0.7, 0.6
    truth = np.array([0, 1, 1, 1])  # right, wrong, right, right
    tally = CalibrationTally(2, bins=2)
    tally.update(probabilities, shown, truth)
    # All four in the upper bin: accuracy 3/4, mean probability 0.75: calibrated on average.
    assert tally.ece() == pytest.approx(0.0, abs=1e-12)
    # Brier: (0.1² + 0.1²) + (0.8² + 0.8²) + (0.3² + 0.3²) + (0.4² + 0.4²), over 4 pixels
    assert tally.brier() == pytest.approx((0.02 + 1.28 + 0.18 + 0.32) / 4)
    # Class 0's probability: 0.9, 0.8 (upper bin; truth 0, 1) and 0.3, 0.4 (lower bin; truth 1, 1)
    # upper |1 - 1.7| = 0.7, lower |0 - 0.7| = 0.7: (0.7 + 0.7) / 4; class 1 mirrors it.
    np.testing.assert_allclose(tally.classwise_ece(), [0.35, 0.35])
    rows = tally.reliability()
    assert [row["pixels"] for row in rows] == [0, 4] and rows[0]["accuracy"] is None
    assert rows[1]["accuracy"] == 0.75 and rows[1]["mean_probability"] == pytest.approx(0.75)


def sampled(rng, pixels: int, overconfidence: float):
    """Two-class pixels whose shown class is right with probability ``confidence - overconfidence``."""
    confidence = rng.uniform(0.55, 1.0, pixels)
    right = rng.random(pixels) < confidence - overconfidence
    truth = np.where(right, 0, 1)
    return np.stack([confidence, 1 - confidence]), np.zeros(pixels, dtype=int), truth


@pytest.mark.parametrize("overconfidence", [0.0, 0.1, 0.25])
def test_ece_recovers_a_known_overconfidence(overconfidence):
    """Probabilities that overstate the chance of being right by a known margin: ECE is that margin
    (within sampling noise of 400,000 pixels), and the tally is the same fed at once or in pieces."""
    probabilities, shown, truth = sampled(np.random.default_rng(0), 400_000, overconfidence)
    whole, pieces = CalibrationTally(2), CalibrationTally(2)
    whole.update(probabilities, shown, truth)
    for part in np.array_split(np.arange(truth.size), 7):
        pieces.update(probabilities[:, part], shown[part], truth[part])
    assert whole.ece() == pytest.approx(overconfidence, abs=0.005)
    assert pieces.ece() == pytest.approx(whole.ece(), rel=1e-12)
    assert pieces.brier() == pytest.approx(whole.brier(), rel=1e-12)


def test_a_perfect_and_certain_map_scores_zero_and_a_certain_wrong_one_two():
    certain = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    tally = CalibrationTally(2)
    tally.update(certain, np.array([0, 1, 0]), np.array([0, 1, 0]))
    assert tally.ece() == 0 and tally.brier() == 0
    wrong = CalibrationTally(2)
    wrong.update(certain, np.array([0, 1, 0]), np.array([1, 0, 1]))
    assert wrong.ece() == 1 and wrong.brier() == 2


def test_bad_shapes_and_classes_are_refused():
    tally = CalibrationTally(3)
    with pytest.raises(ValueError, match=r"need \(3, N\) probabilities"):
        tally.update(np.zeros((2, 4)), np.zeros(4, dtype=int), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"truth classes must lie in 0\.\.2"):
        tally.update(np.full((3, 2), 1 / 3), np.zeros(2, dtype=int), np.array([0, 3]))
    assert np.isnan(tally.ece()) and np.isnan(tally.brier())


@pytest.mark.parametrize("true_temperature", [0.6, 1.0, 2.5])
def test_a_fitted_temperature_recovers_a_known_miscalibration(true_temperature):
    """Labels drawn from softmax(z / T0) while the model says softmax(z): the fit finds T0 (to 3 %, 200,000
    pixels), and the tempered probabilities are calibrated where the raw ones are not."""
    from landseg.calibration import fit_temperature, tempered_probabilities

    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 3.0, size=(4, 200_000))
    truth_probabilities = tempered_probabilities(logits, true_temperature)
    cumulative = truth_probabilities.cumsum(axis=0)
    truth = np.minimum((rng.random(logits.shape[1]) > cumulative).sum(axis=0), 3)
    fitted = fit_temperature(logits, truth)
    assert fitted == pytest.approx(true_temperature, rel=0.03)
    raw, calibrated = CalibrationTally(4), CalibrationTally(4)
    shown = logits.argmax(axis=0)
    raw.update(tempered_probabilities(logits, 1.0), shown, truth)
    calibrated.update(tempered_probabilities(logits, fitted), shown, truth)
    assert calibrated.ece() < 0.01
    if true_temperature != 1.0:
        assert raw.ece() > 0.03


def test_the_inference_core_applies_the_cards_temperature_and_keeps_every_class(tmp_path):
    """A checkpoint whose card carries a temperature: the core's probabilities are softmax(log p / T) of the
    uncalibrated ones, applied after blending, so the class of every pixel is the same."""
    from tests.helpers import save_tiny_checkpoint

    from landseg.calibration import tempered_probabilities
    from landseg.predict.core import predict_array
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.options import PredictOptions
    from landseg.train.calibrate import write_calibration

    plain = save_tiny_checkpoint(tmp_path / "plain.ckpt", tile=64)
    calibrated = save_tiny_checkpoint(tmp_path / "calibrated.ckpt", tile=64)
    write_calibration(calibrated, {"method": "temperature scaling", "temperature": 3.0})
    image = np.random.default_rng(2).integers(0, 256, size=(3, 64, 64)).astype(np.uint8)
    options = PredictOptions(tile=64, overlap=0.0)
    before = predict_array(image, load_ensemble([plain], engine="torch"), options).probabilities
    after = predict_array(image, load_ensemble([calibrated], engine="torch"), options).probabilities
    np.testing.assert_array_equal(after.argmax(axis=0), before.argmax(axis=0))
    expected = tempered_probabilities(np.log(np.maximum(before, np.finfo(np.float32).tiny)), 3.0)
    np.testing.assert_allclose(after, expected, atol=1e-5)
    assert after.max() < before.max()  # T > 1 softens
    # Overlapping tiles are blended first and tempered after: still not one pixel changes class.
    blended = PredictOptions(tile=32, overlap=0.5)
    before = predict_array(image, load_ensemble([plain], engine="torch"), blended).probabilities
    after = predict_array(image, load_ensemble([calibrated], engine="torch"), blended).probabilities
    np.testing.assert_array_equal(after.argmax(axis=0), before.argmax(axis=0))


def test_fitting_needs_labelled_pixels():
    from landseg.calibration import fit_temperature

    with pytest.raises(ValueError, match="N > 0"):
        fit_temperature(np.zeros((3, 0)), np.zeros(0, dtype=int))
