"""Retrieval metrics against a slow reference: a full sort and a Python loop over queries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lookalike.distances import create_distance
from lookalike.metrics import RetrievalReport, metric_names, rank_metrics, retrieval_metrics


def reference_metrics(
    q: np.ndarray,
    ql: np.ndarray,
    g: np.ndarray,
    gl: np.ndarray,
    ks: tuple[int, ...],
    *,
    distance: str,
    qids: np.ndarray | None = None,
    gids: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """One query at a time: full distance row, stable sort, drop self, count by the definitions."""
    d = create_distance(distance)
    full = d(torch.from_numpy(q).double(), torch.from_numpy(g).double()).numpy()
    out: dict[str, list[float]] = {name: [] for name in metric_names(ks)}
    for a in range(len(q)):
        key = -full[a] if d.higher_is_closer else full[a]
        order = [j for j in np.argsort(key, kind="stable") if qids is None or gids[j] != qids[a]]
        rel = [bool(gl[j] == ql[a]) for j in order]
        n_rel = sum(rel)
        if n_rel == 0:
            for name in out:
                out[name].append(math.nan)
            continue
        for k in ks:
            ke = min(k, len(order))
            hits = sum(rel[:ke])
            out[f"hit_rate@{k}"].append(float(hits > 0))
            out[f"recall@{k}"].append(hits / n_rel)
            out[f"precision@{k}"].append(hits / ke)
            ap = sum(sum(rel[: i + 1]) / (i + 1) for i in range(ke) if rel[i])
            out[f"map@{k}"].append(ap / min(ke, n_rel))
        r = n_rel
        out["r_precision"].append(sum(rel[:r]) / r)
        out["map@r"].append(sum(sum(rel[: i + 1]) / (i + 1) for i in range(r) if rel[i]) / r)
    return out


def clustered_integers(n: int, labels: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Small integer vectors (exact dot products: many ties) loosely clustered by label."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(-2, 3, size=(int(labels.max()) + 1, dim))
    return (centres[labels] + rng.integers(-2, 3, size=(n, dim))).astype(np.float32)


def varied_classes(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gallery classes of sizes 1..40 (bigger and smaller than k), queries incl. absent classes."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 41, size=15)
    gl = np.repeat(np.arange(15), sizes)
    rng.shuffle(gl)
    ql = rng.integers(0, 18, size=90)  # classes 15..17 are absent from the gallery
    g = clustered_integers(len(gl), gl, 5, seed + 1)
    q = clustered_integers(len(ql), ql, 5, seed + 2)
    return q, ql, g, gl


def assert_matches_reference(report: RetrievalReport, ref: dict[str, list[float]]) -> None:
    assert report.per_query is not None
    for name, values in ref.items():
        np.testing.assert_allclose(report.per_query[name], values, rtol=1e-9, atol=1e-12, err_msg=name)
        expected = np.nanmean(values) if not np.isnan(values).all() else math.nan
        assert report.metrics[name] == pytest.approx(expected, nan_ok=True), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_query_gallery_against_reference(seed: int) -> None:
    q, ql, g, gl = varied_classes(seed)
    ks = (1, 3, 10, 25, 5000)
    report = retrieval_metrics(q, ql, g, gl, ks=ks, distance="dot", per_query=True, gallery_chunk_size=97)
    ref = reference_metrics(q, ql, g, gl, ks, distance="dot")
    assert_matches_reference(report, ref)
    absent = np.flatnonzero(ql >= 15)
    assert report.n_queries_without_gallery == len(absent) > 0
    assert report.queries_without_gallery.tolist() == absent.tolist()
    assert report.ks == ks and report.effective_ks == (1, 3, 10, 25, len(gl))
    assert report.clamped_ks == (5000,)
    assert list(report.metrics) == metric_names(ks)


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "squared_euclidean"])
def test_float_distances_against_reference(distance: str) -> None:
    rng = np.random.default_rng(7)
    gl = np.repeat(np.arange(20), rng.integers(2, 30, size=20))
    ql = rng.integers(0, 22, size=60)
    centres = rng.standard_normal((22, 12))
    g = (centres[gl] + 0.8 * rng.standard_normal((len(gl), 12))).astype(np.float32)
    q = (centres[ql] + 0.8 * rng.standard_normal((60, 12))).astype(np.float32)
    ks = (1, 5, 50)
    report = retrieval_metrics(q, ql, g, gl, ks=ks, distance=distance, per_query=True)
    assert_matches_reference(report, reference_metrics(q, ql, g, gl, ks, distance=distance))


def test_leave_one_out_with_duplicates() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(12), rng.integers(1, 9, size=12))  # some singletons: no other item
    x = clustered_integers(len(labels), labels, 4, 5)
    x[5] = x[6]  # exact duplicates (possibly of different classes)
    x[10] = x[30]
    ks = (1, 4, 1000)
    report = retrieval_metrics(x, labels, ks=ks, distance="dot", leave_one_out=True, per_query=True)
    ids = np.arange(len(labels))
    ref = reference_metrics(x, labels, x, labels, ks, distance="dot", qids=ids, gids=ids)
    assert_matches_reference(report, ref)
    singletons = np.flatnonzero(np.bincount(labels)[labels] == 1)
    assert report.queries_without_gallery.tolist() == singletons.tolist()
    assert report.effective_ks == (1, 4, len(labels) - 1)


def test_row_ids_exclude_self_only() -> None:
    """Queries are a subset of the gallery (same ids) plus outside queries."""
    q, ql, g, gl = varied_classes(4)
    q_all = np.concatenate([q, g[:30]])
    ql_all = np.concatenate([ql, gl[:30]])
    qids = np.concatenate([np.arange(1000, 1000 + len(q)), np.arange(30)])
    gids = np.arange(len(g))
    ks = (1, 10, 100)
    report = retrieval_metrics(
        q_all, ql_all, g, gl, ks=ks, distance="dot", query_ids=qids, gallery_ids=gids, per_query=True
    )
    assert_matches_reference(
        report, reference_metrics(q_all, ql_all, g, gl, ks, distance="dot", qids=qids, gids=gids)
    )


def test_string_labels_and_torch_inputs() -> None:
    q, ql, g, gl = varied_classes(5)
    names = np.array([f"class-{c}" for c in range(20)])
    r1 = retrieval_metrics(
        torch.from_numpy(q), names[ql], torch.from_numpy(g), names[gl], ks=(1, 5), distance="dot"
    )
    r2 = retrieval_metrics(q, torch.from_numpy(ql), g, torch.from_numpy(gl), ks=(1, 5), distance="dot")
    assert r1.metrics == r2.metrics
    assert r1.per_query is None


def test_faiss_backend_gives_the_same_metrics() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(8)
    gl = rng.integers(0, 30, 600)
    ql = rng.integers(0, 30, 100)
    g = rng.standard_normal((600, 16)).astype(np.float32)
    q = rng.standard_normal((100, 16)).astype(np.float32)
    a = retrieval_metrics(q, ql, g, gl, ks=(1, 10))
    b = retrieval_metrics(q, ql, g, gl, ks=(1, 10), backend="faiss")
    for name in a.metrics:
        assert a.metrics[name] == pytest.approx(b.metrics[name], abs=1e-3)


def test_perfect_ranking_scores_one() -> None:
    labels = np.repeat(np.arange(5), [1, 3, 7, 20, 2])
    x = np.eye(5, dtype=np.float32)[labels] * 10
    g_labels = labels
    ql = np.arange(5)
    q = np.eye(5, dtype=np.float32)
    report = retrieval_metrics(q, ql, x, g_labels, ks=(1, 5, 100))
    for name in (
        "hit_rate@1",
        "map@1",
        "map@5",
        "map@100",
        "map@r",
        "r_precision",
        "recall@100",
        "hit_rate@100",
    ):
        assert report.metrics[name] == pytest.approx(1.0), name
    assert report.metrics["recall@5"] == pytest.approx(np.mean([1, 1, 5 / 7, 5 / 20, 1]))
    assert report.metrics["precision@5"] == pytest.approx(np.mean([1 / 5, 3 / 5, 1, 1, 2 / 5]))


def test_no_query_has_gallery_items() -> None:
    q = np.ones((3, 2), dtype=np.float32)
    report = retrieval_metrics(q, np.array([1, 1, 1]), q, np.array([2, 2, 2]), ks=(1,))
    assert report.n_queries_without_gallery == 3
    assert all(math.isnan(v) for v in report.metrics.values())


def test_rank_metrics_small_example() -> None:
    rel = np.array([[True, False, True, False], [False, False, False, True]])
    out = rank_metrics(rel, np.array([2, 3]), ks=[1, 3])
    assert out["hit_rate@1"].tolist() == [1.0, 0.0]
    assert out["precision@3"].tolist() == pytest.approx([2 / 3, 0.0])
    assert out["map@3"].tolist() == pytest.approx([(1 + 2 / 3) / 2, 0.0])
    assert out["r_precision"].tolist() == pytest.approx([1 / 2, 0.0])
    assert out["map@r"].tolist() == pytest.approx([1 / 2, 0.0])


def test_errors() -> None:
    x = np.zeros((4, 2), dtype=np.float32)
    y = np.arange(4)
    with pytest.raises(ValueError, match=r"every k must be a positive integer, got 0"):
        retrieval_metrics(x, y, x, y, ks=(1, 0))
    with pytest.raises(ValueError, match="ks must be a non-empty sequence"):
        retrieval_metrics(x, y, x, y, ks=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leave_one_out=True uses the queries"):
        retrieval_metrics(x, y, x, y, leave_one_out=True)
    with pytest.raises(ValueError, match="give gallery and gallery_labels"):
        retrieval_metrics(x, y)
    with pytest.raises(ValueError, match=r"query_labels must have shape \(4,\)"):
        retrieval_metrics(x, y[:3], x, y)
    with pytest.raises(ValueError, match="both query_ids and gallery_ids"):
        retrieval_metrics(x, y, x, y, query_ids=y)
