import json
import math
import warnings

import numpy as np
import pytest
import torch

from landseg.metrics import ConfusionMatrix, metrics_dict

# 3 classes, 12 pixels, two of them ignored (255).
#   truth: 0 0 0 0 | 1 1 1 | 2 2 2 | 255 255
#   pred : 0 0 0 1 | 1 1 0 | 2 1 2 |  0   2
TRUTH = np.array([[0, 0, 0, 0, 1, 1], [1, 2, 2, 2, 255, 255]], dtype=np.uint8)
PRED = np.array([[0, 0, 0, 1, 1, 1], [0, 2, 1, 2, 0, 2]], dtype=np.uint8)


def hand_counted() -> ConfusionMatrix:
    cm = ConfusionMatrix(3)
    cm.update(PRED, TRUTH)
    return cm


def test_hand_computed_matrix_and_scores():
    cm = hand_counted()
    #                          pred 0  1  2
    expected = np.array(
        [
            [3, 1, 0],  # truth 0
            [1, 2, 0],  # truth 1
            [0, 1, 2],
        ]
    )  # truth 2
    np.testing.assert_array_equal(cm.matrix, expected)
    assert cm.matrix.dtype == np.int64
    assert cm.total == 10  # the two ignored pixels are not counted

    # class 0: TP 3, FP 1 (a 1 predicted 0), FN 1 (a 0 predicted 1)
    # class 1: TP 2, FP 2 (a 0 and a 2 predicted 1), FN 1
    # class 2: TP 2, FP 0, FN 1
    np.testing.assert_array_equal(cm.true_positives, [3, 2, 2])
    np.testing.assert_array_equal(cm.false_positives, [1, 2, 0])
    np.testing.assert_array_equal(cm.false_negatives, [1, 1, 1])
    np.testing.assert_array_equal(cm.support, [4, 3, 3])
    np.testing.assert_allclose(cm.iou, [3 / 5, 2 / 5, 2 / 3])
    np.testing.assert_allclose(cm.f1, [6 / 8, 4 / 7, 4 / 5])
    np.testing.assert_allclose(cm.precision, [3 / 4, 2 / 4, 2 / 2])
    np.testing.assert_allclose(cm.recall, [3 / 4, 2 / 3, 2 / 3])
    assert cm.pixel_accuracy == pytest.approx(7 / 10)
    assert cm.miou == pytest.approx((3 / 5 + 2 / 5 + 2 / 3) / 3)
    assert cm.mean_f1 == pytest.approx((6 / 8 + 4 / 7 + 4 / 5) / 3)
    assert cm.frequency_weighted_iou == pytest.approx(0.4 * 3 / 5 + 0.3 * 2 / 5 + 0.3 * 2 / 3)
    np.testing.assert_allclose(cm.normalized("true"), expected / np.array([[4], [3], [3]]))
    np.testing.assert_allclose(cm.normalized("pred"), expected / np.array([[4, 4, 2]]))
    np.testing.assert_allclose(cm.normalized("all"), expected / 10)


def test_f1_is_harmonic_mean_of_precision_and_recall():
    cm = hand_counted()
    p, r = cm.precision, cm.recall
    np.testing.assert_allclose(cm.f1, 2 * p * r / (p + r))


def test_torch_and_numpy_inputs_agree_and_any_shape_is_accepted():
    from_torch = ConfusionMatrix(3)
    from_torch.update(torch.from_numpy(PRED).long().reshape(2, 1, 6), torch.from_numpy(TRUTH).reshape(2, 1, 6))
    flat = ConfusionMatrix(3)
    flat.update(PRED.ravel(), TRUTH.ravel())
    assert from_torch == hand_counted() == flat


def test_absent_class_is_nan_and_left_out_of_means():
    # class 2 is in neither truth nor prediction; class 1 is in truth but never predicted
    truth = np.array([0, 0, 1, 1, 3, 3])
    pred = np.array([0, 0, 0, 0, 3, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero must not warn
        cm = ConfusionMatrix(4)
        cm.update(pred, truth)
        iou, f1, precision, recall = cm.iou, cm.f1, cm.precision, cm.recall
        miou = cm.miou
    assert math.isnan(iou[2]) and math.isnan(f1[2]) and math.isnan(precision[2]) and math.isnan(recall[2])
    assert iou[1] == 0 and f1[1] == 0 and recall[1] == 0
    assert math.isnan(precision[1])  # never predicted
    assert iou[0] == pytest.approx(0.5)
    assert miou == pytest.approx((0.5 + 0 + 1) / 3)
    assert np.isnan(cm.normalized("true")[2]).all()


def test_empty_matrix_gives_nan_without_warnings():
    cm = ConfusionMatrix(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm.update(np.zeros(4, dtype=np.uint8), np.full(4, 255, dtype=np.uint8))  # all ignored
        assert cm.total == 0
        assert math.isnan(cm.miou) and math.isnan(cm.pixel_accuracy)
        assert math.isnan(cm.mean_f1) and math.isnan(cm.frequency_weighted_iou)
        assert np.isnan(cm.iou).all()


def test_ignore_index_is_configurable():
    truth = np.array([0, 1, 9, 9])
    pred = np.array([0, 1, 1, 0])
    cm = ConfusionMatrix(2, ignore_index=9)
    cm.update(pred, truth)
    np.testing.assert_array_equal(cm.matrix, [[1, 0], [0, 1]])
    # with the default ignore_index the 9s are out of range
    with pytest.raises(ValueError, match="target holds class index 9"):
        ConfusionMatrix(2).update(pred, truth)


@pytest.mark.parametrize(
    "pred, truth, message",
    [
        ([0, 3], [0, 1], "prediction holds class index 3"),
        ([0, -1], [0, 1], "prediction holds class index -1"),
        ([0, 1], [0, 7], "target holds class index 7"),
    ],
)
def test_out_of_range_values_raise_and_count_nothing(pred, truth, message):
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=message):
        cm.update(np.array(pred), np.array(truth))
    assert cm.total == 0


def test_prediction_at_ignored_pixel_is_not_checked():
    cm = ConfusionMatrix(3)
    cm.update(np.array([1, 255]), np.array([1, 255]))
    np.testing.assert_array_equal(cm.matrix, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_bad_inputs_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 3), dtype=np.int64), np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="argmax"):
        cm.update(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        ConfusionMatrix(0)


def brute_force(pred: np.ndarray, truth: np.ndarray, k: int, ignore: int) -> dict:
    counts = [[0] * k for _ in range(k)]
    for t, p in zip(truth.ravel().tolist(), pred.ravel().tolist(), strict=False):
        if t != ignore:
            counts[t][p] += 1
    iou, f1, precision, recall = [], [], [], []
    for c in range(k):
        tp = counts[c][c]
        fp = sum(counts[r][c] for r in range(k)) - tp
        fn = sum(counts[c]) - tp
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else float("nan"))
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"))
        precision.append(tp / (tp + fp) if tp + fp else float("nan"))
        recall.append(tp / (tp + fn) if tp + fn else float("nan"))
    total = sum(map(sum, counts))
    present = [v for v in iou if v == v]
    fw = sum(sum(counts[c]) / total * iou[c] for c in range(k) if sum(counts[c]))
    return dict(
        matrix=counts,
        iou=iou,
        f1=f1,
        precision=precision,
        recall=recall,
        miou=sum(present) / len(present),
        accuracy=sum(counts[c][c] for c in range(k)) / total,
        fw=fw,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_batches(seed):
    rng = np.random.default_rng(seed)
    k = 6
    truth = rng.integers(0, k, size=(4, 17, 23))
    truth[rng.random(truth.shape) < 0.1] = 255
    truth[truth == 4] = 5  # class 4 absent from truth; the prediction still uses it
    pred = np.where(rng.random(truth.shape) < 0.6, np.clip(truth, 0, k - 1), rng.integers(0, k, truth.shape))
    cm = ConfusionMatrix(k)
    for batch_pred, batch_truth in zip(torch.from_numpy(pred), torch.from_numpy(truth), strict=False):
        cm.update(batch_pred, batch_truth)
    ref = brute_force(pred, truth, k, 255)
    np.testing.assert_array_equal(cm.matrix, ref["matrix"])
    for name in ("iou", "f1", "precision", "recall"):
        np.testing.assert_allclose(getattr(cm, name), ref[name], equal_nan=True)
    assert cm.miou == pytest.approx(ref["miou"])
    assert cm.pixel_accuracy == pytest.approx(ref["accuracy"])
    assert cm.frequency_weighted_iou == pytest.approx(ref["fw"])


def test_merge_and_add_equal_one_update():
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 4, size=(3, 8, 8))
    pred = rng.integers(0, 4, size=(3, 8, 8))
    whole = ConfusionMatrix(4)
    whole.update(pred, truth)
    parts = [ConfusionMatrix(4) for _ in range(3)]
    for part, p, t in zip(parts, pred, truth, strict=False):
        part.update(p, t)
    assert parts[0] + parts[1] + parts[2] == whole
    assert parts[0].total == 64  # __add__ leaves its operands alone
    merged = ConfusionMatrix(4)
    for part in parts:
        assert merged.merge(part) is merged
    assert merged == whole
    with pytest.raises(ValueError, match="merge"):
        whole.merge(ConfusionMatrix(5))


def test_reset_and_from_matrix():
    cm = hand_counted()
    rebuilt = ConfusionMatrix.from_matrix(metrics_dict(cm, ["a", "b", "c"])["confusion_matrix"])
    assert rebuilt == cm
    cm.reset()
    assert cm.total == 0 and cm.matrix.shape == (3, 3)
    assert rebuilt.total == 10
    with pytest.raises(ValueError, match="square"):
        ConfusionMatrix.from_matrix(np.zeros((2, 3), dtype=np.int64))


def test_metrics_dict_shape_and_json_nulls():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 0, 0, 0, 3, 3]), np.array([0, 0, 1, 1, 3, 3]))  # class 2 absent
    names = ["Field", "Forest", "Water", "Road"]
    result = metrics_dict(cm, names)
    keys = {"miou", "mean_f1", "pixel_accuracy", "fw_iou", "per_class", "confusion_matrix", "class_names"}
    assert set(result) == keys
    assert list(result["per_class"]) == names
    assert result["per_class"]["Water"] == {"iou": None, "f1": None, "precision": None, "recall": None, "support": 0}
    assert result["per_class"]["Forest"]["precision"] is None
    assert result["per_class"]["Forest"]["recall"] == 0.0
    assert result["per_class"]["Field"]["support"] == 2
    assert result["miou"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)
    assert result["confusion_matrix"][0] == [2, 0, 0, 0]
    text = json.dumps(result, allow_nan=False)  # raises if any NaN slipped through
    assert json.loads(text) == result
    assert all(type(v) is int for row in result["confusion_matrix"] for v in row)
    with pytest.raises(ValueError, match="class names"):
        metrics_dict(cm, names[:3])
