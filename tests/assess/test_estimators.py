"""The estimators on plain arrays: Stehman's (2014) and Olofsson et al.'s (2014) worked examples, the
reduction of the general estimators to Olofsson's closed forms, sample sizes and allocation rules."""

import numpy as np
import pytest

from landseg.assess.estimators import (
    allocate,
    sample_size_for_overall_accuracy,
    sample_size_for_users_accuracy,
    stratified_estimates,
)
from landseg.errors import DataError

# Stehman (2014), table 2: 40 points, 10 per stratum; strata 1-4 are not the map classes A-D.
STEHMAN_STRATA = [1] * 10 + [2] * 10 + [3] * 10 + [4] * 10
STEHMAN_MAP = list("AAAAAAABBB") + ["A"] + ["B"] * 11 + ["C"] * 6 + ["B", "B"] + ["D"] * 10
STEHMAN_REFERENCE = list("AAAAACBABCA") + ["B"] * 5 + list("AABB") + ["C"] * 5 + list("DDBBA") + ["D"] * 7 + list("CCB")
STEHMAN_SIZES = {1: 40000, 2: 30000, 3: 20000, 4: 10000}
# The R package mapac (aa_stratified, documented output for this example), which omits the finite
# population correction; the paper prints the same values rounded to two or three decimals.
MAPAC_USERS = [(0.7419355, 0.1645627), (0.5744681, 0.1248023), (0.5, 0.2151657), (0.7, 0.1527525)]
MAPAC_PRODUCERS = [(0.6571429, 0.1477318), (0.7941176, 0.1165671), (0.3, 0.1504438), (0.6363636, 0.1623242)]
MAPAC_AREAS = [(0.35, 0.08225975), (0.34, 0.07586538), (0.20, 0.06429101), (0.11, 0.03073181)]
MAPAC_OVERALL = (0.63, 0.08465617)

# Olofsson et al. (2014), table 8: sample counts, map classes in rows, reference in columns, and the
# mapped pixels (30 m) of deforestation, forest gain, stable forest, stable non-forest.
OLOFSSON_COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
OLOFSSON_PIXELS = np.array([200_000, 150_000, 3_200_000, 6_450_000])


def _olofsson_points():
    map_class, reference = np.nonzero(OLOFSSON_COUNTS)
    repeats = OLOFSSON_COUNTS[map_class, reference]
    return np.repeat(map_class, repeats), np.repeat(reference, repeats)


def test_stehman_example_matches_the_r_implementation():
    result = stratified_estimates(STEHMAN_STRATA, STEHMAN_MAP, STEHMAN_REFERENCE, STEHMAN_SIZES)
    assert result.classes == ("A", "B", "C", "D")
    assert result.overall.value == pytest.approx(MAPAC_OVERALL[0], abs=1e-7)
    assert result.overall.se == pytest.approx(MAPAC_OVERALL[1], abs=1e-7)
    for got, want in zip(result.users, MAPAC_USERS, strict=True):
        assert (got.value, got.se) == pytest.approx(want, abs=1e-7)
    for got, want in zip(result.producers, MAPAC_PRODUCERS, strict=True):
        assert (got.value, got.se) == pytest.approx(want, abs=1e-7)
    for got, want in zip(result.proportions, MAPAC_AREAS, strict=True):
        assert (got.value, got.se) == pytest.approx(want, abs=1e-7)
    # The paper's cell (B, C) of the error matrix (p. 4935): 0.08
    assert result.error_matrix[1, 2] == pytest.approx(0.08)
    assert result.error_matrix.sum() == pytest.approx(1.0)


def test_finite_population_correction_shrinks_each_variance_by_its_factor():
    plain = stratified_estimates(STEHMAN_STRATA, STEHMAN_MAP, STEHMAN_REFERENCE, STEHMAN_SIZES)
    corrected = stratified_estimates(
        STEHMAN_STRATA, STEHMAN_MAP, STEHMAN_REFERENCE, STEHMAN_SIZES, stratum_pixels=STEHMAN_SIZES
    )
    assert corrected.overall.value == plain.overall.value
    assert corrected.overall.se < plain.overall.se
    # Overall accuracy's variance is a sum over strata: with all n_h / N_h tiny the ratio is close to 1
    assert corrected.overall.se / plain.overall.se == pytest.approx(1.0, abs=2e-4)


def _olofsson_closed_forms(counts, shares):
    """Olofsson et al. (2014) eqs. 2-11 written out, as an independent check of the general estimators."""
    n_i = counts.sum(axis=1)
    p = shares[:, None] * counts / n_i[:, None]
    users = np.diag(counts) / n_i
    area = p.sum(axis=0)
    producers = np.diag(p) / area
    overall = np.trace(p)
    v_overall = np.sum(shares**2 * users * (1 - users) / (n_i - 1))
    v_users = users * (1 - users) / (n_i - 1)
    v_area = np.array([np.sum((shares * p[:, k] - p[:, k] ** 2) / (n_i - 1)) for k in range(len(shares))])
    sizes = shares * 1.0  # N_i up to a common factor, which cancels
    v_producers = []
    for j in range(len(shares)):
        n_hat_j = np.sum(sizes / n_i * counts[:, j])
        own = sizes[j] ** 2 * (1 - producers[j]) ** 2 * users[j] * (1 - users[j]) / (n_i[j] - 1)
        others = sum(
            sizes[i] ** 2 * counts[i, j] / n_i[i] * (1 - counts[i, j] / n_i[i]) / (n_i[i] - 1)
            for i in range(len(shares))
            if i != j
        )
        v_producers.append((own + producers[j] ** 2 * others) / n_hat_j**2)
    return overall, v_overall, users, v_users, producers, np.array(v_producers), area, v_area


def test_general_estimators_reduce_to_olofssons_formulas_when_strata_are_map_classes():
    map_class, reference = _olofsson_points()
    sizes = dict(enumerate(OLOFSSON_PIXELS.tolist()))
    result = stratified_estimates(map_class, map_class, reference, sizes)
    overall, v_o, users, v_u, producers, v_p, area, v_a = _olofsson_closed_forms(
        OLOFSSON_COUNTS, OLOFSSON_PIXELS / OLOFSSON_PIXELS.sum()
    )
    assert result.overall.value == pytest.approx(overall, rel=1e-12)
    assert result.overall.se == pytest.approx(np.sqrt(v_o), rel=1e-10)
    assert [u.value for u in result.users] == pytest.approx(users, rel=1e-12)
    assert [u.se for u in result.users] == pytest.approx(np.sqrt(v_u), rel=1e-10)
    assert [p.value for p in result.producers] == pytest.approx(producers, rel=1e-12)
    assert [p.se for p in result.producers] == pytest.approx(np.sqrt(v_p), rel=1e-10)
    assert [a.value for a in result.proportions] == pytest.approx(area, rel=1e-12)
    assert [a.se for a in result.proportions] == pytest.approx(np.sqrt(v_a), rel=1e-10)


def test_area_weights_of_one_give_the_unweighted_estimators_and_scale_with_pixel_area():
    map_class, reference = _olofsson_points()
    sizes = dict(enumerate(OLOFSSON_PIXELS.tolist()))
    plain = stratified_estimates(map_class, map_class, reference, sizes)
    weighted = stratified_estimates(map_class, map_class, reference, sizes, point_weights=np.ones(len(map_class)))
    assert weighted.overall == plain.overall
    in_m2 = stratified_estimates(map_class, map_class, reference, {k: v * 900.0 for k, v in sizes.items()})
    assert in_m2.areas(10_000)[0].value == pytest.approx(plain.areas()[0].value * 0.09)


def test_a_single_stratum_is_a_simple_random_sample():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 400)
    mapped = np.where(rng.random(400) < 0.8, truth, rng.integers(0, 3, 400))
    result = stratified_estimates(np.zeros(400), mapped, truth, {0: 1e9})
    accuracy = np.mean(mapped == truth)
    assert result.overall.value == pytest.approx(accuracy)
    assert result.overall.se == pytest.approx(np.sqrt(accuracy * (1 - accuracy) / 399))
    for k in range(3):
        assert result.proportions[k].value == pytest.approx(np.mean(truth == k))


def test_a_stratum_with_one_point_is_refused_by_name():
    with pytest.raises(DataError, match=r"stratum 2 has 1"):
        stratified_estimates([1, 1, 2], [0, 0, 1], [0, 1, 1], {1: 100, 2: 50})


def test_a_point_in_an_unknown_stratum_is_refused():
    with pytest.raises(DataError, match=r"stratum the design does not know: 9 \(1 points\)"):
        stratified_estimates([1, 1, 9], [0, 0, 1], [0, 1, 1], {1: 100})


def test_olofsson_sample_size_example():
    # Section 5.1.1: target SE 0.01, anticipated user's accuracies 0.7, 0.6, 0.9, 0.95 -> n = 641
    shares = OLOFSSON_PIXELS / OLOFSSON_PIXELS.sum()
    assert sample_size_for_overall_accuracy(shares, [0.7, 0.6, 0.9, 0.95], 0.01) == 641
    assert sample_size_for_users_accuracy(0.9, 0.05) == 37  # 0.9 * 0.1 / 0.05² + 1


def test_allocation_rules():
    pixels = [200_000, 150_000, 3_200_000, 6_450_000]
    proportional = allocate(641, pixels, "proportional")
    assert proportional.sum() == 641 and proportional.tolist() == [13, 10, 205, 413]
    assert allocate(640, pixels, "equal").tolist() == [160] * 4
    olofsson = allocate(641, pixels, "olofsson", minimum=75)
    assert olofsson[:2].tolist() == [75, 75]
    assert olofsson.sum() == 641
    assert olofsson[3] / olofsson[2] == pytest.approx(6_450_000 / 3_200_000, rel=0.01)
    # Never fewer than two per stratum, never more than its pixels
    assert allocate(10, [5, 1_000_000, 3], "proportional").tolist() == [2, 10, 2]
    with pytest.raises(DataError, match="allocation must be one of"):
        allocate(10, pixels, "random")
