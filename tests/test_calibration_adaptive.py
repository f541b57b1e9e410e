"""The gallery's own threshold (lookalike.calibration.adaptive): the probe searches against a slow loop,
the pooled FPIR against an independent reading of the formula, its limits, and the record's stored
non-mated scores through a dict and back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lookalike.calibration import calibrate_open_set, read_calibration
from lookalike.calibration.adaptive import (
    GALLERY_WEIGHT,
    MIN_EVENTS,
    adapts,
    choose_probes,
    fit_arrays,
    pooled_threshold,
    probe_depth,
    self_search_scores,
)
from lookalike.calibration.size_model import CURVE_LEVELS
from lookalike.metrics.identification import SCORES, decision_scores, threshold_at_fpir


def _clustered(n_classes: int, per_class: int, seed: int, d: int = 16, spread: float = 0.45):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), per_class)
    x = centres[labels] + spread * rng.normal(size=(len(labels), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.array([f"c{i:02d}" for i in labels])


@pytest.fixture(scope="module")
def record():
    emb, labels = _clustered(12, 6, seed=0)
    return calibrate_open_set(emb, labels, target_fpir=0.1, seed=0)


def test_the_record_keeps_its_non_mated_scores_and_reads_them_back(record):
    assert adapts(record) and record.non_mated_levels == CURVE_LEVELS
    assert [n for n, _ in record.non_mated] == [n for n, _ in record.thresholds]
    for _, scores in record.non_mated:  # a distribution: non-decreasing in the level
        assert np.all(np.diff(scores) >= -1e-12)
    back = read_calibration(record.to_dict())
    assert back.non_mated == record.non_mated and back.non_mated_levels == record.non_mated_levels
    old = {k: v for k, v in record.to_dict().items() if k != "non_mated"}  # an older lookalike's record
    assert not adapts(read_calibration(old))
    with pytest.raises(ValueError, match="one score per level"):
        type(record)(**{**record.__dict__, "non_mated_levels": CURVE_LEVELS[:3]})


def _slow_self_scores(labels, dist, own, score, depth):
    out = []
    for row_l, row_d, mine in zip(labels, dist, own, strict=True):
        keep = [(lab, d) for lab, d in zip(row_l, row_d, strict=True) if lab is not None and lab != mine]
        keep = keep[:depth]
        if not keep:
            continue
        la = np.array([[lab for lab, _ in keep]], dtype=object)
        da = np.array([[d for _, d in keep]])
        out.append(decision_scores(la, da, score=score)[0])
    return np.array(out)


@pytest.mark.parametrize("score", SCORES)
def test_probe_searches_skip_their_own_object_like_a_slow_loop(score):
    rng = np.random.default_rng(3)
    p, k, depth = 40, 12, 5
    dist = np.sort(rng.uniform(0.1, 2.0, size=(p, k)), axis=1)
    labels = rng.choice(["a", "b", "c", "d"], size=(p, k)).astype(object)
    labels[5, 9:] = None  # padding at the end of a short row
    dist[5, 9:] = np.inf
    own = rng.choice(["a", "b", "c", "d"], size=p).astype(object)
    labels[7] = own[7]  # a probe that found only its own object: dropped
    got = self_search_scores(labels, dist, own, score=score, depth=depth)
    want = _slow_self_scores(labels, dist, own, score, depth)
    assert len(got) == p - 1
    np.testing.assert_allclose(got, want)


def test_probes_and_their_depth():
    assert choose_probes(5, 10).tolist() == [0, 1, 2, 3, 4]
    picked = choose_probes(5000, 300, seed=2)
    assert len(picked) == 300 and len(set(picked.tolist())) == 300 and np.all(np.diff(picked) > 0)
    assert np.array_equal(picked, choose_probes(5000, 300, seed=2))
    assert probe_depth(np.array([3, 7, 2]), 32, 10_000) == 39
    assert probe_depth(np.array([3, 7, 2]), 32, 20) == 20  # never beyond the gallery
    assert probe_depth(np.array([50_000]), 32, 10**6) == 32 + 1024  # at most OWN_CAP past its own


def _pooled_fpir(record, n, scores, probe_objects, t):
    """The module doc's formula, read independently: the calibration's level at t from its stored
    scores (log-linear between levels), the gallery's share at or under t."""
    sizes = [m for m, _ in record.non_mated]
    table = np.array([s for _, s in record.non_mated])
    curve = np.array([np.interp(math.log(n), np.log(sizes), table[:, j]) for j in range(table.shape[1])])
    levels = np.array(record.non_mated_levels)
    if t < curve[0]:
        f_cal = 0.0
    elif t >= curve[-1]:
        f_cal = levels[-1]
    else:
        j = np.searchsorted(curve, t, side="right") - 1
        frac = (t - curve[j]) / (curve[j + 1] - curve[j])
        f_cal = math.exp(math.log(levels[j]) + frac * (math.log(levels[j + 1]) - math.log(levels[j])))
    f_gal = float(np.mean(np.asarray(scores) <= t))
    w_cal = record.figures["calibration_objects"]
    w_gal = GALLERY_WEIGHT * (probe_objects - 1) * min(1.0, len(scores) * record.target_fpir / MIN_EVENTS)
    return (w_cal * f_cal + w_gal * n / (n - 1) * f_gal) / (w_cal + w_gal)


@pytest.mark.parametrize("shift", [-0.15, 0.0, 0.2])
def test_pooled_threshold_is_the_loosest_at_the_target(record, shift):
    rng = np.random.default_rng(7)
    n = 20
    base = record.threshold_for(n)
    # the gallery's own scores put its target quantile at base + shift
    scores = np.sort(base + shift + 0.25 * (rng.normal(size=400) + 1.2816))
    fit = pooled_threshold(record, n, scores, probe_objects=20)
    target = record.target_fpir
    assert fit.gallery_weight == pytest.approx(GALLERY_WEIGHT * 19)
    assert _pooled_fpir(record, n, scores, 20, fit.threshold) <= target + 1e-9
    looser = fit.threshold + 2e-3
    assert _pooled_fpir(record, n, scores, 20, looser) > target
    # a gallery whose objects crowd closer (scores shifted down) gets a tighter threshold, and one whose
    # objects lie further apart a looser one
    if shift < 0:
        assert fit.threshold < base
    if shift > 0:
        assert fit.threshold > base


def test_pooled_threshold_limits(record):
    scores = np.linspace(0.2, 1.2, 300)
    # one object, or no probe: the record's own threshold for the size
    assert pooled_threshold(record, 1, scores, 1).threshold == record.threshold_for(1)
    assert pooled_threshold(record, 9, np.array([]), 0).threshold == record.threshold_for(9)
    # no calibration weight: the gallery alone, carried from n - 1 to n objects
    alone = type(record)(**{**record.__dict__, "figures": {**record.figures, "calibration_objects": 1e-12}})
    n = 10
    fit = pooled_threshold(alone, n, scores, probe_objects=n)
    carried = record.target_fpir * (n - 1) / n
    assert fit.threshold == pytest.approx(threshold_at_fpir(scores, carried), abs=1e-6)
    # too few probes to see the target rate: the gallery part is weighed down in proportion
    few = pooled_threshold(record, n, scores[:20], probe_objects=n)
    share = 20 * record.target_fpir / MIN_EVENTS
    assert few.gallery_weight == pytest.approx(GALLERY_WEIGHT * (n - 1) * share)


def test_fit_arrays_brute_force_on_a_small_gallery(record):
    emb, labels = _clustered(7, 5, seed=11)
    fit = fit_arrays(record, emb, labels)
    # every image searched against the others with its own object left out, top depth
    d = np.sqrt(np.maximum(2 - 2 * emb @ emb.T, 0)).astype(np.float64)
    rows_l, rows_d = [], []
    for i in range(len(emb)):
        order = [j for j in np.argsort(d[i], kind="stable") if labels[j] != labels[i]][: record.depth]
        rows_l.append(labels[order].astype(object))
        rows_d.append(d[i, order])
    scores = decision_scores(np.array(rows_l, dtype=object), np.array(rows_d), score=record.score)
    want = pooled_threshold(record, 7, scores, probe_objects=7)
    assert fit.probes == len(emb) and fit.objects == 7
    assert fit.threshold == pytest.approx(want.threshold, abs=1e-5)
    assert fit_arrays(record, emb[:5], labels[:5]).threshold == record.threshold_for(1)  # one object


def test_a_store_sets_and_re_derives_its_own_threshold(record, tmp_path):
    import pandas as pd

    from lookalike.gallery import GalleryHeader, create_gallery
    from lookalike.gallery.calibration import rederive_gallery_threshold, set_gallery_calibration

    emb, labels = _clustered(9, 4, seed=21)
    first = labels < "c05"
    store = create_gallery(tmp_path / "g", GalleryHeader(embed_dim=emb.shape[1]))
    store.add(emb[first], pd.DataFrame({"label": labels[first]}))
    threshold, n = set_gallery_calibration(store, record)
    assert n == 5 and threshold == pytest.approx(fit_arrays(record, emb[first], labels[first]).threshold)
    stored = read_calibration(store.header.calibration)
    assert stored.figures["gallery_objects"] == 5 and stored.figures["gallery_probes"] == int(first.sum())
    store.add(emb[~first], pd.DataFrame({"label": labels[~first]}))
    threshold, n = rederive_gallery_threshold(store)
    assert n == 9 and threshold == pytest.approx(fit_arrays(record, emb, labels).threshold)
    assert read_calibration(store.header.calibration).figures["gallery_objects"] == 9
    # a record of an older lookalike (no non-mated scores kept): its threshold for the size
    old = read_calibration({k: v for k, v in record.to_dict().items() if k != "non_mated"})
    threshold, n = set_gallery_calibration(store, old)
    assert threshold == old.threshold_for(9) and "gallery_probes" not in store.header.calibration
    store.close()


def test_small_changes_reuse_the_stored_probe_scores_without_a_search(record, tmp_path):
    import pandas as pd

    from lookalike.calibration.adaptive import GalleryFit
    from lookalike.gallery import GalleryHeader, create_gallery
    from lookalike.gallery.calibration import rederive_gallery_threshold, set_gallery_calibration

    emb, labels = _clustered(11, 4, seed=23)
    base = labels < "c09"  # 9 objects, 36 items
    store = create_gallery(tmp_path / "g", GalleryHeader(embed_dim=emb.shape[1]))
    store.add(emb[base], pd.DataFrame({"label": labels[base]}))
    set_gallery_calibration(store, record)
    stored = GalleryFit.stored(read_calibration(store.header.calibration).figures)
    assert stored.probed_objects == 9 and stored.probed_items == 36 and len(stored.scores) == 36
    searches = []
    search = store.search
    store.search = lambda *a, **k: searches.append(1) or search(*a, **k)
    # one more image of a known object (36 -> 37 items, 9 objects): the stored scores, no search
    extra = np.flatnonzero(labels == "c09")[:1]
    store.add(emb[extra], pd.DataFrame({"label": ["c00"]}))
    threshold, n = rederive_gallery_threshold(store)
    want = pooled_threshold(record, 9, np.array(stored.scores), stored.probe_objects, probed_objects=9)
    assert not searches and n == 9 and threshold == pytest.approx(want.threshold)
    # a tenth object (9 -> 10 objects, 11 %): searched again, carried from 10 - 1 objects
    new = np.flatnonzero(labels == "c10")
    store.add(emb[new], pd.DataFrame({"label": labels[new]}))
    threshold, n = rederive_gallery_threshold(store)
    assert searches and n == 10
    assert read_calibration(store.header.calibration).figures["gallery_probed_objects"] == 10
    store.close()
