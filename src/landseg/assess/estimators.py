"""Design-based estimators of map accuracy and class area from a probability sample of reference points.

These are the general stratified estimators of Stehman (2014, "Estimating area and map accuracy for
stratified random sampling when the strata are different from the map classes", IJRS 35:4923-4939).
Every quantity is a population total of an indicator ``y`` per sample point, estimated stratum by
stratum as ``T = sum_h N_h * mean_h(y)`` (his eq. 2), or a ratio of two such totals (user's and
producer's accuracies, eq. 27); variances are his eqs. 25 and 28, with the finite population correction
``1 - n_h / N_h`` when the strata's pixel counts are known. When the strata are the map classes they are
Olofsson et al. (2014, "Good practices for estimating area and assessing accuracy of land change", RSE
148:42-57) formulas (eqs. 2-11, which omit the finite population correction); a simple random or
systematic sample is the case of a single stratum.

A stratum's size may be counted in pixels (as in both papers) or in square metres. On grids whose pixels
differ in ground area, ``point_weights`` carries each point's pixel area divided by the mean pixel area of
its stratum: the totals then estimate ground area rather than pixel counts, and all weights equal to 1
give the papers' estimators exactly.

Everything here works on plain numpy arrays and mappings: no files, no rasters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from landseg.errors import DataError

Z95 = 1.959963984540054
"""The standard normal quantile of 0.975: the half-width of a 95 % interval in standard errors."""

ALLOCATIONS = ("proportional", "equal", "olofsson")
MIN_PER_STRATUM = 2
"""A stratum's sample variance needs at least two points."""


@dataclass(frozen=True)
class Estimate:
    """An estimate with its standard error; the interval is the normal 95 % one (estimate ± 1.96 SE)."""

    value: float
    se: float

    @property
    def half_width(self) -> float:
        return Z95 * self.se

    @property
    def ci95(self) -> tuple[float, float]:
        return self.value - self.half_width, self.value + self.half_width

    def scaled(self, factor: float) -> Estimate:
        return Estimate(float(self.value * factor), float(self.se * factor))

    def to_dict(self) -> dict:
        low, high = self.ci95
        return {"estimate": _plain(self.value), "se": _plain(self.se), "ci95": [_plain(low), _plain(high)]}


def _plain(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class AccuracyEstimates:
    """The error matrix in estimated area proportions and everything derived from it.

    Rows of the matrices are map classes, columns reference classes, both in the order of ``classes``.
    """

    classes: tuple
    overall: Estimate
    users: tuple[Estimate, ...]
    producers: tuple[Estimate, ...]
    proportions: tuple[Estimate, ...]
    """Estimated share of the total size whose reference class is each class."""
    error_matrix: np.ndarray
    """``(K, K)`` estimated proportions of the total size in each (map, reference) cell; sums to 1."""
    error_matrix_se: np.ndarray
    sample_counts: np.ndarray
    """``(K, K)`` sample points in each (map, reference) cell."""
    total_size: float
    """Sum of the stratum sizes (pixels, or m² when the strata were given in m²)."""

    def areas(self, unit: float = 1.0) -> tuple[Estimate, ...]:
        """Estimated size of each reference class, in stratum-size units divided by ``unit``."""
        return tuple(p.scaled(self.total_size / unit) for p in self.proportions)


def stratified_estimates(
    strata: Sequence | np.ndarray,
    map_class: Sequence | np.ndarray,
    reference: Sequence | np.ndarray,
    stratum_sizes: Mapping[Any, float],
    *,
    classes: Sequence | None = None,
    stratum_pixels: Mapping[Any, float] | None = None,
    point_weights: Sequence[float] | np.ndarray | None = None,
) -> AccuracyEstimates:
    """Stehman's (2014) estimators from one stratum label, map class and reference class per point.

    ``stratum_sizes`` maps every stratum label to its size (pixels or m²); ``stratum_pixels`` (pixel
    counts) adds the finite population correction, and is taken to be ``stratum_sizes`` when omitted
    only if those are pixel counts: pass ``stratum_pixels=stratum_sizes`` for the papers' estimators with
    the correction, leave it out for Olofsson's formulas without it. ``classes`` orders the classes
    (default: sorted labels found in the map and reference columns).

    A stratum with fewer than two points, or a point in a stratum that has no size, raises ``DataError``.
    """
    strata, map_class, reference = (np.asarray(a) for a in (strata, map_class, reference))
    if not len(strata) == len(map_class) == len(reference):
        raise ValueError(
            f"strata, map_class and reference differ in length: {len(strata)}, {len(map_class)}, {len(reference)}"
        )
    labels = [s for s, size in stratum_sizes.items() if size > 0]
    stratum = _positions(strata, labels, "stratum")
    sizes = np.array([float(stratum_sizes[s]) for s in labels])
    counts = np.bincount(stratum, minlength=len(labels))
    _check_counts(labels, counts)
    correction = np.ones(len(labels))
    if stratum_pixels is not None:
        pixels = np.array([float(stratum_pixels[s]) for s in labels])
        correction = 1.0 - counts / pixels
    weights = np.ones(len(strata)) if point_weights is None else np.asarray(point_weights, dtype=np.float64)
    order = list(classes) if classes is not None else sorted(set(map_class.tolist()) | set(reference.tolist()))
    k = len(order)
    m = _positions(map_class, order, "map class")
    r = _positions(reference, order, "reference class")
    design = _Design(stratum, sizes, counts, correction)

    correct = (m == r).astype(np.float64) * weights
    in_reference = np.eye(k)[r] * weights[:, None]
    in_map = np.eye(k)[m] * weights[:, None]
    diagonal = in_map * (m == r)[:, None]
    cells = (np.eye(k * k)[m * k + r]) * weights[:, None]

    total = sizes.sum()
    overall = design.total(correct[:, None])[0].scaled(1 / total)
    proportions = tuple(e.scaled(1 / total) for e in design.total(in_reference))
    cell_estimates = design.total(cells)
    matrix = np.array([e.value for e in cell_estimates]).reshape(k, k) / total
    matrix_se = np.array([e.se for e in cell_estimates]).reshape(k, k) / total
    users = design.ratio(diagonal, in_map)
    producers = design.ratio(diagonal, in_reference)
    sample_counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(sample_counts, (m, r), 1)
    return AccuracyEstimates(
        tuple(order), overall, users, producers, proportions, matrix, matrix_se, sample_counts, total
    )


@dataclass(frozen=True)
class _Design:
    stratum: np.ndarray
    """Stratum position of each point."""
    sizes: np.ndarray
    counts: np.ndarray
    correction: np.ndarray

    def _moments(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-stratum means ``(H, C)`` and deviations of each point from its stratum's mean ``(n, C)``."""
        sums = np.zeros((len(self.sizes), values.shape[1]))
        np.add.at(sums, self.stratum, values)
        means = sums / self.counts[:, None]
        return means, values - means[self.stratum]

    def _covariance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Within-stratum sample covariances ``(H, C)`` of two deviation arrays."""
        products = np.zeros((len(self.sizes), a.shape[1]))
        np.add.at(products, self.stratum, a * b)
        return products / (self.counts[:, None] - 1)

    def _variance_factor(self) -> np.ndarray:
        return (self.sizes**2 * self.correction / self.counts)[:, None]

    def total(self, values: np.ndarray) -> list[Estimate]:
        """Stehman's eq. 2 (times N) and eq. 25 for each column of ``values``."""
        means, deviations = self._moments(values)
        totals = self.sizes @ means
        variances = (self._variance_factor() * self._covariance(deviations, deviations)).sum(axis=0)
        return [Estimate(float(t), math.sqrt(max(v, 0.0))) for t, v in zip(totals, variances, strict=True)]

    def ratio(self, numerator: np.ndarray, denominator: np.ndarray) -> tuple[Estimate, ...]:
        """Stehman's eqs. 27-28: ratios of two estimated totals, column by column; NaN where the
        denominator's estimate is zero (a class no point was mapped or found as)."""
        y_means, y_dev = self._moments(numerator)
        x_means, x_dev = self._moments(denominator)
        y_total, x_total = self.sizes @ y_means, self.sizes @ x_means
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(x_total > 0, y_total / np.where(x_total > 0, x_total, 1), np.nan)
            spread = (
                self._covariance(y_dev, y_dev)
                + ratio**2 * self._covariance(x_dev, x_dev)
                - 2 * ratio * self._covariance(y_dev, x_dev)
            )
            variance = (self._variance_factor() * spread).sum(axis=0) / x_total**2
        return tuple(
            Estimate(float(q), math.sqrt(max(float(v), 0.0)) if math.isfinite(q) else math.nan)
            for q, v in zip(ratio, variance, strict=True)
        )


def _positions(values: np.ndarray, labels: Sequence, what: str) -> np.ndarray:
    """Each value's position in ``labels``; ``DataError`` listing values that are not there."""
    lookup = {label: i for i, label in enumerate(labels)}
    unknown: dict = {}
    positions = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values.tolist()):
        found = lookup.get(value)
        if found is None:
            unknown[value] = unknown.get(value, 0) + 1
            found = 0
        positions[i] = found
    if unknown:
        listed = ", ".join(f"{v!r} ({n} points)" for v, n in sorted(unknown.items(), key=lambda item: -item[1]))
        raise DataError(f"sample points in a {what} the design does not know: {listed}")
    return positions


def _check_counts(labels: list, counts: np.ndarray) -> None:
    few = [(label, int(n)) for label, n in zip(labels, counts, strict=True) if n < MIN_PER_STRATUM]
    if few:
        listed = ", ".join(f"{label!r} has {n}" for label, n in few)
        raise DataError(
            f"every stratum needs at least {MIN_PER_STRATUM} sample points, since a stratum's variance is "
            f"undefined with fewer: stratum {listed}"
        )


# -- planning a sample -----------------------------------------------------------------------------------


def sample_size_for_overall_accuracy(
    map_shares: Sequence[float], expected_users: Sequence[float], target_se: float
) -> int:
    """Olofsson et al. (2014) eq. 13: the sample size for a target standard error of overall accuracy.

    ``map_shares`` are the strata's (map classes') shares of the map, ``expected_users`` the user's
    accuracies anticipated for them. The formula ignores the finite population correction."""
    shares, users = np.asarray(map_shares, dtype=np.float64), np.asarray(expected_users, dtype=np.float64)
    if shares.shape != users.shape:
        raise ValueError("map_shares and expected_users must have one value per stratum")
    if not 0 < target_se < 1:
        raise DataError(f"the target standard error must be between 0 and 1, got {target_se}")
    if np.any((users < 0) | (users > 1)):
        raise DataError(f"anticipated user's accuracies must be in 0..1, got {users.tolist()}")
    spread = float(np.sum(shares / shares.sum() * np.sqrt(users * (1 - users))))
    return max(MIN_PER_STRATUM, math.ceil((spread / target_se) ** 2 - 1e-9))


def sample_size_for_users_accuracy(expected_user: float, target_se: float) -> int:
    """Points a stratum needs for a target standard error of its user's accuracy: ``U(1-U)/SE² + 1``
    (the variance of a proportion estimated from ``n`` points is ``U(1-U)/(n-1)``)."""
    if not 0 < target_se < 1:
        raise DataError(f"the target standard error must be between 0 and 1, got {target_se}")
    return max(MIN_PER_STRATUM, math.ceil(expected_user * (1 - expected_user) / target_se**2 + 1 - 1e-9))


def allocate(
    total: int, stratum_pixels: Sequence[float] | np.ndarray, rule: str = "proportional", minimum: int = 50
) -> np.ndarray:
    """Share ``total`` sample points among strata of the given pixel counts.

    ``proportional`` to size; ``equal``; ``olofsson``: every stratum whose proportional share falls
    short of ``minimum`` gets ``minimum``, the rest is shared proportionally among the others (Olofsson
    et al. 2014, section 5.1.2). Every stratum gets at least two points (its variance needs them) and
    no more than it has pixels, so the result may differ slightly from ``total``."""
    pixels = np.asarray(stratum_pixels, dtype=np.float64)
    if rule not in ALLOCATIONS:
        raise DataError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {rule!r}")
    if total < 1:
        raise DataError(f"the sample size must be at least 1, got {total}")
    if rule == "equal":
        sizes = _round_shares(total, np.ones_like(pixels))
    elif rule == "proportional":
        sizes = _round_shares(total, pixels)
    else:
        fixed = np.zeros(len(pixels), dtype=bool)
        while True:
            rest = total - minimum * fixed.sum()
            share = np.where(fixed, 0.0, pixels)
            proportional = rest * share / share.sum() if share.sum() > 0 else np.zeros_like(pixels)
            short = ~fixed & (proportional < minimum)
            if not short.any() or fixed.sum() + short.sum() == len(pixels):
                fixed |= short
                break
            fixed |= short
        sizes = np.where(fixed, minimum, 0)
        rest = max(0, total - int(sizes.sum()))
        if (~fixed).any():
            sizes[~fixed] = _round_shares(rest, pixels[~fixed])
    sizes = np.maximum(sizes, MIN_PER_STRATUM)
    return np.minimum(sizes, pixels.astype(np.int64))


def _round_shares(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` into integers that sum to it (largest remainders)."""
    exact = total * weights / weights.sum()
    sizes = np.floor(exact).astype(np.int64)
    short = total - int(sizes.sum())
    if short > 0:
        sizes[np.argsort(-(exact - sizes), kind="stable")[:short]] += 1
    return sizes
