"""Open-set identification metrics against hand counts and slow loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lookalike.metrics.identification import (
    SCORES,
    decision_scores,
    det_curve,
    fnir_at_fpir,
    identification_rates,
    other_label_distance,
    threshold_at_fpir,
    wilson_interval,
)

# six searches: four mated (query label enrolled), two non-mated
LABELS = np.array(
    [
        ["a", "a", "b"],  # mated a, right nearest
        ["c", "a", "a"],  # mated a, wrong nearest (c)
        ["b", "c", "a"],  # mated b, right
        ["d", "d", "d"],  # mated d, right, every retrieved item the same label
        ["a", "b", "c"],  # non-mated x
        ["b", "b", None],  # non-mated y, padded row
    ],
    dtype=object,
)
DIST = np.array(
    [
        [0.2, 0.3, 0.8],
        [0.5, 0.6, 0.7],
        [0.9, 1.0, 1.1],
        [0.1, 0.2, 0.4],
        [0.4, 1.6, 1.7],
        [0.7, 0.75, np.inf],
    ]
)
QUERY = np.array(["a", "a", "b", "d", "x", "y"], dtype=object)
MATED = np.array([True, True, True, True, False, False])


def test_rates_at_a_threshold_match_a_hand_count():
    scores = decision_scores(LABELS, DIST, score="nearest")
    np.testing.assert_allclose(scores, [0.2, 0.5, 0.9, 0.1, 0.4, 0.7])
    r = identification_rates(scores, LABELS[:, 0], QUERY, MATED, threshold=0.5)
    # accepted: rows 0 (a, right), 1 (c, wrong), 3 (d, right), 4 (non-mated); row 2 rejected
    assert (r.n_mated, r.n_non_mated) == (4, 2)
    assert (r.n_false_positive, r.n_false_negative, r.n_wrong_match) == (1, 2, 1)
    assert r.fpir == 0.5 and r.fnir == 0.5 and r.wrong_match_rate == 0.25


def test_rates_against_a_slow_loop_on_random_searches():
    rng = np.random.default_rng(3)
    n = 300
    scores = rng.random(n)
    predicted = rng.choice(list("abcd"), n).astype(object)
    truth = rng.choice(list("abcdxy"), n).astype(object)
    mated = np.isin(truth, list("abcd"))
    for t in (0.0, 0.1, 0.37, 0.5, 0.99):
        r = identification_rates(scores, predicted, truth, mated, threshold=t)
        fp = fn = wrong = 0
        for s, p, q, m in zip(scores, predicted, truth, mated, strict=True):
            accept = s <= t
            if not m and accept:
                fp += 1
            if m and not (accept and p == q):
                fn += 1
            if m and accept and p != q:
                wrong += 1
        assert (r.n_false_positive, r.n_false_negative, r.n_wrong_match) == (fp, fn, wrong)
        assert r.fpir == pytest.approx(fp / (~mated).sum()) and r.fnir == pytest.approx(fn / mated.sum())


def test_ratio_score_uses_the_nearest_other_label_and_the_last_item_when_all_agree():
    np.testing.assert_allclose(other_label_distance(LABELS, DIST), [0.8, 0.6, 1.0, 0.4, 1.6, 0.75])
    ratio = decision_scores(LABELS, DIST, score="ratio")
    np.testing.assert_allclose(ratio, [0.2 / 0.8, 0.5 / 0.6, 0.9 / 1.0, 0.1 / 0.4, 0.4 / 1.6, 0.7 / 0.75])


def test_ratio_of_a_zero_other_distance_is_one_and_an_empty_row_is_inf():
    labels = np.array([["a", "b"], [None, None]], dtype=object)
    dist = np.array([[0.0, 0.0], [np.inf, np.inf]])
    np.testing.assert_array_equal(decision_scores(labels, dist, score="ratio"), [1.0, np.inf])
    for score in SCORES:
        assert decision_scores(labels, dist, score=score)[1] == np.inf


def test_znorm_score_against_a_slow_loop():
    rng = np.random.default_rng(0)
    labels = rng.choice(list("abcde"), (40, 8)).astype(object)
    dist = np.sort(rng.random((40, 8)), axis=1)
    got = decision_scores(labels, dist, score="znorm")
    for q in range(40):
        cohort, seen = [], {labels[q, 0]}
        for j in range(1, 8):
            if labels[q, j] not in seen and len(cohort) < 4:
                seen.add(labels[q, j])
                cohort.append(dist[q, j])
        want = (dist[q, 0] - np.mean(cohort)) / np.std(cohort) if len(cohort) >= 2 else 0.0
        assert got[q] == pytest.approx(want)
    # fewer than two other labels in the top-k: 0
    assert decision_scores(LABELS[3:4], DIST[3:4], score="znorm")[0] == 0.0


def test_unknown_score_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="nearest, ratio, znorm"):
        decision_scores(LABELS, DIST, score="closest")


def test_threshold_at_fpir_is_the_loosest_within_the_target():
    non = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0])
    t = threshold_at_fpir(non, 0.2)  # 2 of 10 may be accepted: 0.1, 0.2
    assert 0.2 <= t < 0.3
    assert (non <= t).sum() == 2
    assert (non <= threshold_at_fpir(non, 0.05)).sum() == 0  # none may be: under the smallest
    # ties are not split: with 0.2 twice, only one would fit, so neither is accepted
    assert (np.array([0.1, 0.2, 0.2, 0.5]) <= threshold_at_fpir([0.1, 0.2, 0.2, 0.5], 0.5)).sum() == 1
    # an infinite score (no neighbour) counts in the denominator, never accepted
    assert (
        np.array([0.1, 0.2, np.inf, np.inf]) <= threshold_at_fpir([0.1, 0.2, np.inf, np.inf], 0.5)
    ).sum() == 2


def test_fnir_at_fpir_and_det_curve_agree_with_rates():
    rng = np.random.default_rng(1)
    n = 200
    truth = rng.choice(list("abcxyz"), n).astype(object)
    mated = np.isin(truth, list("abc"))
    predicted = np.where(rng.random(n) < 0.8, truth, "a").astype(object)
    predicted[~mated] = rng.choice(list("abc"), (~mated).sum())
    scores = rng.random(n) + (~mated) * 0.5
    fnir = fnir_at_fpir(scores, predicted, truth, mated, [0.1, 0.05])
    for target, value in zip([0.1, 0.05], fnir, strict=True):
        t = threshold_at_fpir(scores[~mated], target)
        r = identification_rates(scores, predicted, truth, mated, threshold=t)
        assert r.fpir <= target and value == r.fnir
    curve = det_curve(scores, predicted, truth, mated)
    for i in (0, 17, len(curve.thresholds) - 1):
        r = identification_rates(scores, predicted, truth, mated, threshold=curve.thresholds[i])
        assert curve.fpir[i] == pytest.approx(r.fpir) and curve.fnir[i] == pytest.approx(r.fnir)
    assert np.all(np.diff(curve.fpir) >= 0) and np.all(np.diff(curve.fnir) <= 0)


def test_wilson_interval_against_the_formula():
    lo, hi = wilson_interval(5, 100)
    # Wilson 95%: centre (p + z^2/2n) / (1 + z^2/n), half z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    z = 1.959963984540054
    p, n = 0.05, 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert lo == pytest.approx(0.02154, abs=1e-4) and hi == pytest.approx(0.11175, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="mated has 2 entries for 3 scores"):
        identification_rates([0.1, 0.2, 0.3], ["a", "b", "c"], ["a", "b", "c"], [True, False], threshold=0.2)
