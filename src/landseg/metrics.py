"""Segmentation metrics from one confusion matrix.

Every number (IoU, F1, precision, recall, pixel accuracy, ...) is derived from a single ``K x K``
matrix of pixel counts accumulated over a whole evaluation set, rows = truth, columns = prediction.
Averaging per-batch or per-image scores instead would weight small images like large ones and give a
different, usually higher, mIoU than the benchmark protocol asks for.

Conventions:

- Pixels whose *target* is ``ignore_index`` are not counted at all.
- A ratio whose denominator is zero is ``NaN`` (never a warning): IoU and F1 of a class absent from
  both truth and prediction, precision of a class never predicted, recall of a class never present.
- Means (``miou``, ``mean_f1``) skip NaN classes, so a class that appears in neither truth nor
  prediction does not count; a class present in truth but never predicted counts with IoU 0.

The training loop keeps one ``ConfusionMatrix`` per validation epoch and calls ``update`` with the
argmax of each batch; the counting runs on the batch's device and only the ``K x K`` counts move to
the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray
NormalizeAxis = Literal["true", "pred", "all"]


def _ratio(numerator: np.ndarray | int, denominator: np.ndarray | int) -> np.ndarray:
    """Elementwise ``numerator / denominator`` as float64, NaN where the denominator is zero."""
    top = np.asarray(numerator, dtype=np.float64)
    bottom = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast_shapes(top.shape, bottom.shape), np.nan)
    np.divide(top, bottom, out=out, where=bottom != 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without numpy's empty-slice warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _as_index_tensor(values: ArrayLike, role: str) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(values)) if isinstance(values, np.ndarray) else values
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{role} must be a torch tensor or numpy array, got {type(values).__name__}")
    if tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"{role} must hold integer class indices, got dtype {tensor.dtype}; take the argmax first")
    return tensor.reshape(-1).to(torch.int64)


class ConfusionMatrix:
    """Pixel counts of (true class, predicted class) pairs, accumulated over many batches."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._counts = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @classmethod
    def from_matrix(cls, matrix: ArrayLike | Sequence[Sequence[int]], ignore_index: int = 255) -> ConfusionMatrix:
        """Rebuild from saved counts (e.g. ``metrics_dict(...)["confusion_matrix"]``) or a gathered tensor."""
        if isinstance(matrix, torch.Tensor):
            matrix = matrix.detach().cpu().numpy()
        counts = np.asarray(matrix)
        if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
            raise ValueError(f"confusion matrix must be square, got shape {counts.shape}")
        if not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
            raise ValueError("confusion matrix must hold non-negative integer counts")
        cm = cls(counts.shape[0], ignore_index)
        cm._counts = counts.astype(np.int64, copy=True)
        return cm

    # -- accumulation ------------------------------------------------------------------------------
    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Count one batch: ``pred`` and ``target`` are class indices of the same (any) shape.

        Only pixels whose target is not ``ignore_index`` are counted; at those pixels both arrays must
        hold values in ``0..K-1`` or ``ValueError`` is raised (nothing is counted then).
        """
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
        pred_t = _as_index_tensor(pred, "prediction")
        target_t = _as_index_tensor(target, "target")
        if pred_t.device != target_t.device:
            pred_t = pred_t.to(target_t.device)
        keep = target_t != self.ignore_index
        pred_t, target_t = pred_t[keep], target_t[keep]
        if target_t.numel() == 0:
            return
        k = self.num_classes
        for role, values in (("target", target_t), ("prediction", pred_t)):
            low, high = int(values.min()), int(values.max())
            if low < 0 or high >= k:
                raise ValueError(
                    f"{role} holds class index {low if low < 0 else high}; expected 0..{k - 1}"
                    + (f" or ignore_index {self.ignore_index}" if role == "target" else "")
                )
        counts = torch.bincount(target_t * k + pred_t, minlength=k * k)
        self._counts += counts.reshape(k, k).cpu().numpy()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts into this matrix (in place) and return self."""
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) into a "
                f"{self.num_classes}-class one (ignore {self.ignore_index})"
            )
        self._counts += other._counts
        return self

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return self.copy().merge(other)

    __iadd__ = merge

    def copy(self) -> ConfusionMatrix:
        return ConfusionMatrix.from_matrix(self._counts, self.ignore_index)

    def reset(self) -> None:
        self._counts[:] = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        return self.ignore_index == other.ignore_index and np.array_equal(self._counts, other._counts)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, total={self.total}, miou={self.miou:.4f})"

    # -- counts ------------------------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """``K x K`` int64 counts, rows = truth, columns = prediction (a copy)."""
        return self._counts.copy()

    @property
    def total(self) -> int:
        return int(self._counts.sum())

    @property
    def true_positives(self) -> np.ndarray:
        return np.diag(self._counts).copy()

    @property
    def support(self) -> np.ndarray:
        """Pixels of each class in the truth."""
        return self._counts.sum(axis=1)

    @property
    def predicted(self) -> np.ndarray:
        """Pixels predicted as each class."""
        return self._counts.sum(axis=0)

    @property
    def false_positives(self) -> np.ndarray:
        return self.predicted - self.true_positives

    @property
    def false_negatives(self) -> np.ndarray:
        return self.support - self.true_positives

    # -- per-class scores --------------------------------------------------------------------------
    @property
    def iou(self) -> np.ndarray:
        """TP / (TP + FP + FN); NaN for a class absent from truth and prediction."""
        tp = self.true_positives
        return _ratio(tp, tp + self.false_positives + self.false_negatives)

    @property
    def f1(self) -> np.ndarray:
        """Dice: 2 TP / (2 TP + FP + FN); 0 (not NaN) for a class present but never predicted."""
        tp = self.true_positives
        return _ratio(2 * tp, 2 * tp + self.false_positives + self.false_negatives)

    dice = f1

    @property
    def precision(self) -> np.ndarray:
        """TP / predicted; NaN for a class never predicted."""
        return _ratio(self.true_positives, self.predicted)

    @property
    def recall(self) -> np.ndarray:
        """TP / support (per-class accuracy); NaN for a class absent from the truth."""
        return _ratio(self.true_positives, self.support)

    # -- summaries ---------------------------------------------------------------------------------
    @property
    def pixel_accuracy(self) -> float:
        return float(_ratio(self._counts.trace(), self.total))

    @property
    def miou(self) -> float:
        """Mean IoU over classes present in truth or prediction (NaN classes excluded)."""
        return _nanmean(self.iou)

    @property
    def mean_f1(self) -> float:
        return _nanmean(self.f1)

    @property
    def frequency_weighted_iou(self) -> float:
        """Sum over classes of (support share) x IoU; classes without support weigh nothing."""
        if self.total == 0:
            return float("nan")
        weights = self.support / self.total
        return float(np.sum(weights[weights > 0] * self.iou[weights > 0]))

    def normalized(self, axis: NormalizeAxis = "true") -> np.ndarray:
        """Float matrix: ``"true"`` rows sum to 1 (recall on the diagonal), ``"pred"`` columns sum to 1
        (precision on the diagonal), ``"all"`` everything sums to 1. Empty rows/columns are NaN."""
        counts = self._counts
        if axis == "true":
            return _ratio(counts, counts.sum(axis=1, keepdims=True))
        if axis == "pred":
            return _ratio(counts, counts.sum(axis=0, keepdims=True))
        if axis == "all":
            return _ratio(counts, counts.sum())
        raise ValueError(f"axis must be 'true', 'pred' or 'all', got {axis!r}")


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def metrics_dict(cm: ConfusionMatrix, class_names: Sequence[str]) -> dict:
    """All scores as a JSON-ready dict; NaN becomes ``None`` (``null`` in JSON).

    Shape: ``{"miou", "mean_f1", "pixel_accuracy", "fw_iou", "per_class": {name: {"iou", "f1",
    "precision", "recall", "support"}}, "confusion_matrix": [[int]], "class_names": [str]}``.
    """
    names = [str(name) for name in class_names]
    if len(names) != cm.num_classes:
        raise ValueError(f"{len(names)} class names for a {cm.num_classes}-class confusion matrix")
    if len(set(names)) != len(names):
        raise ValueError(f"class names repeat: {names}")
    iou, f1, precision, recall, support = cm.iou, cm.f1, cm.precision, cm.recall, cm.support
    return {
        "miou": _json_float(cm.miou),
        "mean_f1": _json_float(cm.mean_f1),
        "pixel_accuracy": _json_float(cm.pixel_accuracy),
        "fw_iou": _json_float(cm.frequency_weighted_iou),
        "per_class": {
            name: {
                "iou": _json_float(iou[i]),
                "f1": _json_float(f1[i]),
                "precision": _json_float(precision[i]),
                "recall": _json_float(recall[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": cm.matrix.tolist(),
        "class_names": names,
    }
