"""hit_rate@1, r_precision and map@r against pytorch-metric-learning's AccuracyCalculator."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.metrics import retrieval_metrics

pytest.importorskip("pytorch_metric_learning")
pytest.importorskip("faiss")
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

PML_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def data(seed: int, n_q: int, n_g: int, n_classes: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes + 3, 16))
    # uneven class sizes; classes n_classes..n_classes+2 only among queries (absent from gallery)
    p = rng.dirichlet(np.full(n_classes, 0.7))
    gl = rng.choice(n_classes, size=n_g, p=p)
    ql = rng.integers(0, n_classes + 3, size=n_q)
    g = centres[gl] + rng.standard_normal((n_g, 16))
    q = centres[ql] + rng.standard_normal((n_q, 16))
    # PML ranks by L2 on the raw vectors: hand it normalised ones, like our default.
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.astype(np.float32), ql, g.astype(np.float32), gl


def compare(ours: dict[str, float], pml: dict[str, float]) -> None:
    assert ours["hit_rate@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_query_gallery_matches_pml(seed: int) -> None:
    q, ql, g, gl = data(seed, 300, 2000, 40)
    calc = AccuracyCalculator(include=PML_METRICS, k=None, avg_of_avgs=False)
    pml = calc.get_accuracy(q, ql, g, gl, ref_includes_query=False)
    compare(retrieval_metrics(q, ql, g, gl, ks=(1,)).metrics, pml)


def test_leave_one_out_matches_pml_ref_includes_query() -> None:
    q, ql, _, _ = data(2, 1200, 10, 60)
    calc = AccuracyCalculator(include=PML_METRICS, k=None, avg_of_avgs=False)
    pml = calc.get_accuracy(q, ql)  # reference=None: the query set, self excluded
    ours = retrieval_metrics(q, ql, ks=(1,), leave_one_out=True)
    compare(ours.metrics, pml)
    # PML drops the "lone" queries (no other item of their class), as we do
    assert ours.n_queries_without_gallery == int((np.bincount(ql)[ql] == 1).sum())
