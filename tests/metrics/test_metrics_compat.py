"""NumPy 1.x compatibility, the one list of metric names, and the shared array checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike import _arrays
from lookalike.config import EvalConfig
from lookalike.distances import EuclideanDistance
from lookalike.knn import topk
from lookalike.metrics import (
    METRICS_AT_K,
    METRICS_WHOLE_RANKING,
    metric_names,
    nearest_neighbour_matches,
    retrieval_metrics,
    roc_auc,
)

sk = pytest.importorskip("sklearn.metrics")


def _trapz_1x(y, x):
    """NumPy 1.x's np.trapz, written out."""
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def test_roc_auc_works_without_np_trapezoid(monkeypatch) -> None:
    """On NumPy 1.x (pyproject allows numpy>=1.24) there is no np.trapezoid, only np.trapz."""
    rng = np.random.default_rng(0)
    m = rng.random(500) < 0.3
    d = rng.normal(np.where(m, 0.6, 1.1), 0.25)
    calls = []
    monkeypatch.delattr(np, "trapezoid", raising=False)
    monkeypatch.setattr(np, "trapz", lambda y, x: calls.append(1) or _trapz_1x(y, x), raising=False)
    assert roc_auc(d, m) == pytest.approx(sk.roc_auc_score(m, -d), abs=1e-12)
    assert calls == [1]


def test_one_list_of_metric_names_for_reports_and_config() -> None:
    ks = [1, 5]
    names = metric_names(ks)
    assert names == [f"{m}@{k}" for k in ks for m in METRICS_AT_K] + list(METRICS_WHOLE_RANKING)
    rng = np.random.default_rng(0)
    report = retrieval_metrics(rng.normal(size=(12, 4)), np.arange(12) % 3, leave_one_out=True, ks=ks)
    assert list(report.metrics) == names
    for name in names:  # every reported name may select the best checkpoint, and nothing else
        assert EvalConfig(ks=ks, metric=name).metric == name
    with pytest.raises(ValueError, match=r"eval\.metric 'map@7' is not computed; valid: hit_rate@1"):
        EvalConfig(ks=ks, metric="map@7")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: topk(np.zeros(4), np.zeros((3, 4)), 1), r"queries must be a 2-D \(N, D\) array"),
        (lambda: topk(np.zeros((2, 4)), np.zeros((1, 3, 4)), 1), r"gallery must be a 2-D \(N, D\) array"),
        (
            lambda: retrieval_metrics(np.zeros((2, 4, 1)), [0, 1], leave_one_out=True),
            r"queries must be a 2-D \(N, D\) array",
        ),
        (lambda: EuclideanDistance()(torch.zeros(3)), r"x must be a 2-D \(N, D\) array"),
        (
            lambda: retrieval_metrics(np.zeros((3, 2)), [0, 1], np.zeros((2, 2)), [0, 1]),
            r"query_labels must have shape \(3,\) to match queries, got \(2,\)",
        ),
        (
            lambda: nearest_neighbour_matches(np.zeros((2, 2)), [0, 1], np.zeros((3, 2)), [0, 1]),
            r"gallery_labels must have shape \(3,\) to match gallery, got \(2,\)",
        ),
        (
            lambda: nearest_neighbour_matches(np.zeros((2, 2)), [0, 1], np.zeros((0, 2)), []),
            "the gallery is empty",
        ),
        (
            lambda: topk(np.zeros((2, 2)), np.zeros((3, 2)), 1, query_ids=[0, 1], gallery_ids=[0, 1]),
            r"gallery_ids must have shape \(3,\), got \(2,\)",
        ),
        (
            lambda: topk("not an array", np.zeros((3, 2)), 1),
            "queries must be a torch.Tensor, numpy array or sequence",
        ),
    ],
)
def test_shape_errors_name_the_argument_and_the_shape(call, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_array_likes_are_accepted_alike() -> None:
    """A tensor, a numpy array and nested lists give the same top-k."""
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)
    ref = topk(torch.from_numpy(q), torch.from_numpy(g), 3)
    for qq, gg in ((q, g), (q.tolist(), g.tolist())):
        v, i = topk(qq, gg, 3)
        assert torch.equal(i, ref[1])
        torch.testing.assert_close(v, ref[0])
    assert _arrays.as_embeddings([[1, 2], [3, 4]], "x").dtype == torch.float32
