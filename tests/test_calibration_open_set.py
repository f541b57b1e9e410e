"""The open-set calibration: the size model against the closed form, the threshold table, the record
(and the older dicts it still reads), the score choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.calibration import (
    CalibrationRecord,
    calibrate_open_set,
    choose_score,
    read_calibration,
    write_checkpoint_calibration,
)
from lookalike.calibration.size_model import object_profiles, simulated_scores, size_table
from lookalike.metrics.identification import threshold_for_size


def _clusters(classes: int, per: int, seed: int, spread: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.repeat(rng.normal(size=(classes, 12)), per, axis=0) + spread * rng.normal(size=(classes * per, 12))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(classes), per).astype(str)


def test_object_profiles_against_a_slow_loop():
    rng = np.random.default_rng(0)
    labels = np.array(list("aabbbcd"))
    dist = rng.random((7, 7))
    got = object_profiles(dist, labels, labels)
    for q in range(7):
        slow = sorted(min(dist[q, j] for j in range(7) if labels[j] == c) for c in "abcd" if c != labels[q])
        np.testing.assert_allclose(got[q], slow)
    with pytest.raises(ValueError, match="'z' is not among"):
        object_profiles(dist[:1], labels, np.array(["z"]))


def _cdf(profile: np.ndarray, t: float) -> float:
    """The size model's per-object CDF: piecewise linear between the points at levels (i + .5) / M,
    and below the first point along the first two points' slope."""
    m = len(profile)
    levels = (np.arange(m) + 0.5) / m
    if t < profile[0]:
        slope = (profile[1] - profile[0]) / (levels[1] - levels[0])
        return max(levels[0] - (profile[0] - t) / slope, 0.0)
    return float(np.interp(t, profile, levels))


@pytest.mark.parametrize("n", [3, 10, 40])
def test_nearest_score_matches_the_closed_form(n):
    rng = np.random.default_rng(1)
    profiles = np.sort(rng.uniform(0.3, 1.2, size=(30, 50)), axis=1)
    scores = simulated_scores(profiles, n, score="nearest", repeats=400, seed=2)
    for t in (0.4, 0.5, 0.7):
        closed = 1.0 - np.mean([(1.0 - _cdf(p, t)) ** n for p in profiles])  # 1 - mean_s (1 - p_s(T))^n
        assert np.mean(scores <= t) == pytest.approx(closed, abs=0.01)


def test_threshold_table_keeps_the_target_and_interpolates_in_log_size():
    rng = np.random.default_rng(3)
    profiles = np.sort(rng.uniform(0.3, 1.2, size=(40, 60)), axis=1)
    table, _ = size_table(profiles, 0.05, score="nearest", sizes=(1, 4, 16, 64), repeats=50)
    values = [t for _, t in table]
    assert values == sorted(values, reverse=True)  # a bigger gallery never gets a looser threshold
    for n, t in table:
        closed = 1.0 - np.mean([(1.0 - _cdf(p, t)) ** n for p in profiles])
        assert closed == pytest.approx(0.05, abs=0.012)
    assert threshold_for_size(table, 16) == values[2]
    assert threshold_for_size(table, 8) == pytest.approx((values[1] + values[2]) / 2)  # halfway in log size
    assert threshold_for_size(table, 10**6) == values[-1] and threshold_for_size(table, 0) == values[0]


def test_ratio_threshold_rises_with_size():
    rng = np.random.default_rng(4)
    profiles = np.sort(rng.uniform(0.3, 1.2, size=(40, 60)), axis=1)
    table, _ = size_table(profiles, 0.05, score="ratio", sizes=(2, 16, 128), repeats=50)
    assert table[0][1] < table[1][1] < table[2][1] < 1.0


def test_calibrate_open_set_record_and_score_choice():
    x, y = _clusters(16, 6, seed=5)
    record = calibrate_open_set(x, y, target_fpir=0.1, seed=1)
    assert record.method == "object-profiles" and record.target_fpir == 0.1
    assert record.size_range == (1, 2 * 16) and record.figures["calibration_objects"] == 16
    assert set(record.figures["fnir_at_target"]) == {"nearest", "ratio", "znorm"}
    assert record.score == choose_score(record.figures["fnir_at_target"])
    assert calibrate_open_set(x, y, target_fpir=0.1, score="znorm").score == "znorm"
    with pytest.raises(ValueError, match="at least 4 classes"):
        calibrate_open_set(x[:18], y[:18])
    with pytest.raises(ValueError, match="target_fpir must be a rate"):
        calibrate_open_set(x, y, target_fpir=1.0)


def test_choose_score_prefers_the_simpler_on_a_tie():
    assert choose_score({"nearest": 0.305, "ratio": 0.30, "znorm": 0.5}) == "nearest"
    assert choose_score({"nearest": 0.35, "ratio": 0.30, "znorm": 0.31}) == "ratio"
    assert choose_score({"nearest": 0.35, "ratio": 0.34, "znorm": 0.2}) == "znorm"


def test_record_round_trip_and_older_dicts():
    record = CalibrationRecord(
        method="object-profiles",
        target_fpir=0.05,
        thresholds=((1, 0.9), (8, 0.7), (64, 0.5)),
        score="ratio",
        size_range=(1, 80),
        figures={"split": "val"},
    )
    assert read_calibration(record.to_dict()) == record
    assert record.threshold_for(8) == 0.7 and record.covers(80) and not record.covers(81)
    assert "holds 81 objects, outside the 1-80 objects" in record.range_warning(81)
    older = {"threshold": {"value": 0.42, "far": 0.05}, "target_far": 0.05, "roc_auc": 0.9}
    fixed = read_calibration(older)
    assert fixed.method == "fixed" and fixed.threshold_for(10**6) == 0.42 and fixed.size_range is None
    assert fixed.to_dict() == older  # written back in the shape older lookalikes read
    given = read_calibration({"method": "given"}, threshold=0.3)
    assert given.method == "given" and given.threshold_for(5) == 0.3
    assert read_calibration({"method": "given"}) is None and read_calibration(None) is None
    with pytest.raises(ValueError, match="unknown decision score 'closest'"):
        CalibrationRecord(method="object-profiles", target_fpir=0.05, thresholds=((1, 0.5),), score="closest")


def test_write_checkpoint_calibration_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"weights": 1}, path)
    record = CalibrationRecord(method="given", target_fpir=None, thresholds=((1, 0.3),))
    with pytest.raises(ValueError, match="is not a lookalike checkpoint"):
        write_checkpoint_calibration(path, record, out=tmp_path / "y.pt")
    assert not (tmp_path / "y.pt").exists()
