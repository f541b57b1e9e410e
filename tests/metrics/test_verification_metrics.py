"""Verification metrics against scikit-learn and slow loops; threshold calibration; open set."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.metrics import (
    Threshold,
    calibrate_threshold,
    eer,
    nearest_neighbour_matches,
    open_set_evaluation,
    roc_auc,
    roc_curve,
    tar_at_far,
)

sk = pytest.importorskip("sklearn.metrics")


def pairs(seed: int, n: int = 2000, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = rng.random(n) < 0.3
    d = rng.normal(np.where(m, 0.6, 1.1), 0.25)
    if ties:
        d = np.round(d, 1)
    return d, m


def slow_rates(d: np.ndarray, m: np.ndarray, t: float) -> tuple[float, float]:
    acc = [x <= t for x in d]
    far = sum(a and not y for a, y in zip(acc, m, strict=True)) / sum(not y for y in m)
    tar = sum(a and y for a, y in zip(acc, m, strict=True)) / sum(m)
    return far, tar


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_roc_auc_and_curve_match_sklearn(seed: int, ties: bool) -> None:
    d, m = pairs(seed, ties=ties)
    assert roc_auc(d, m) == pytest.approx(sk.roc_auc_score(m, -d), abs=1e-12)
    assert roc_auc(-d, m, higher_is_closer=True) == pytest.approx(sk.roc_auc_score(m, -d), abs=1e-12)
    fpr, tpr, thr = sk.roc_curve(m, -d, drop_intermediate=False)
    curve = roc_curve(d, m)
    np.testing.assert_allclose(curve.far, fpr)
    np.testing.assert_allclose(curve.tar, tpr)
    np.testing.assert_allclose(curve.thresholds[1:], -thr[1:])


def test_eer_is_where_far_meets_frr() -> None:
    d, m = pairs(2, n=5000)
    e = eer(d, m)
    fpr, tpr, _ = sk.roc_curve(m, -d)
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert e == pytest.approx((fpr[i] + 1 - tpr[i]) / 2, abs=2e-3)
    # perfectly separated: 0; always wrong: 1
    assert eer([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert eer([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == pytest.approx(1.0)


def test_tar_at_far_against_slow_loop() -> None:
    d, m = pairs(3, n=600, ties=True)
    fars = [0.0, 0.01, 0.1, 0.5, 1.0]
    got = tar_at_far(d, m, fars)
    for far, tar in zip(fars, got, strict=True):
        best = 0.0
        for t in np.unique(d):
            f, a = slow_rates(d, m, t)
            if f <= far:
                best = max(best, a)
        assert tar == pytest.approx(best), far


@pytest.mark.parametrize("target", [0.0, 0.001, 0.01, 0.05, 0.2])
def test_calibrated_threshold_keeps_far_on_calibration_set(target: float) -> None:
    d, m = pairs(4)
    th = calibrate_threshold(d, m, target_far=target)
    far, tar = slow_rates(d, m, th.value)
    assert far <= target
    assert (far, tar) == pytest.approx((th.far, th.tar))
    assert th.frr == pytest.approx(1 - th.tar)
    assert th.method == "far" and th.target_far == target and not th.higher_is_closer
    # loosest such threshold: the next larger value breaks the promise (or accepts nothing more)
    larger = np.sort(d[d > th.value])
    if len(larger):
        assert slow_rates(d, m, larger[0])[0] > target
    assert th.accepts(d).sum() == round(th.tar * m.sum() + th.far * (~m).sum())


def test_calibrate_for_similarities() -> None:
    d, m = pairs(5)
    th = calibrate_threshold(-d, m, target_far=0.05, higher_is_closer=True)
    assert th.far <= 0.05
    assert th.accepts(-d).tolist() == (d <= -th.value).tolist()


def test_best_f1_threshold() -> None:
    d, m = pairs(6, n=500)
    th = calibrate_threshold(d, m)
    best = max(sk.f1_score(m, d <= t) for t in np.unique(d))
    assert th.f1 == pytest.approx(best)
    assert th.method == "f1"


def test_errors() -> None:
    with pytest.raises(ValueError, match="both matching and non-matching"):
        roc_auc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="target_far must be in"):
        calibrate_threshold([0.1, 0.2], [True, False], target_far=1.5)
    with pytest.raises(ValueError, match="is_match must have the shape"):
        eer([0.1, 0.2], [True])
    with pytest.raises(ValueError, match=r"fars must be .* \[0, 1\], got \[2.0\]"):
        tar_at_far([0.1, 0.2], [True, False], [2.0])


def test_open_set_rejects_unknown_classes() -> None:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((30, 32)) * 3
    gl = np.repeat(np.arange(20), 5)  # classes 20..29 are unknown
    g = centres[gl] + 0.3 * rng.standard_normal((100, 32))
    val_l = rng.integers(0, 30, 300)
    val = centres[val_l] + 0.3 * rng.standard_normal((300, 32))
    test_l = rng.integers(0, 30, 300)
    test = centres[test_l] + 0.3 * rng.standard_normal((300, 32))
    # calibrate on validation nearest neighbours: a match is a known query with the right class
    values, _, is_match = nearest_neighbour_matches(val, val_l, g, gl)
    th = calibrate_threshold(values, is_match, target_far=0.05)
    assert isinstance(th, Threshold)
    rep = open_set_evaluation(test, test_l, g, gl, threshold=th)
    known = test_l < 20
    assert rep.n_known == known.sum() and rep.n_unknown == (~known).sum()
    assert rep.known.tolist() == known.tolist()
    expected_far = float((rep.accepted & ~known).mean() / (~known).mean())
    assert rep.false_accept_rate == pytest.approx(expected_far)
    assert rep.false_accept_rate < 0.15
    assert rep.correct_accept_rate > 0.8
    total = rep.correct_accept_rate + rep.wrong_accept_rate + rep.false_reject_rate
    assert total == pytest.approx(1.0)
    assert rep.true_reject_rate == pytest.approx(1 - rep.false_accept_rate)
    with pytest.raises(ValueError, match="higher_is_closer"):
        open_set_evaluation(test, test_l, g, gl, threshold=th, distance="cosine")
    # a plain number works, accepting everything
    assert open_set_evaluation(test, test_l, g, gl, threshold=10.0).false_accept_rate == 1.0
