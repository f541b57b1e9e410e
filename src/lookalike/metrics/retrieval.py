"""Retrieval metrics at k from one exact top-k pass.

For every query, C is its class's items in the gallery (excluding the query itself when it is
also a gallery item), and the ranking is the gallery ordered nearest first (ties by gallery
index). With ``hits(i)`` the number of C items in the first i places and ``rel(i)`` 1 when the
i-th place is of class C, and k' = min(k, ranking length) (the *effective* k):

=================  ===========================================================================
``hit_rate@k``     1 if hits(k') > 0 (DML papers' Recall@K, OML's CMC@k, PML's precision_at_1 at k=1)
``recall@k``       hits(k') / |C|
``precision@k``    hits(k') / k'. A k beyond the gallery is clamped, so precision@k is then
                   precision at the gallery size.
``map@k``          sum_{i<=k'} rel(i) hits(i) / i, divided by min(k', |C|) (so a perfect ranking
                   scores 1; OML divides by hits(k') instead, which ignores the missed items)
``map@r``          map@k with k = R = |C| (PML's mean_average_precision_at_r)
``r_precision``    hits(R) / R (PML's r_precision)
=================  ===========================================================================

Every value is computed per query and then averaged over queries. Queries whose class has no
item in the gallery have no defined value: they are counted (``n_queries_without_gallery``),
listed (``queries_without_gallery``), get NaN in ``per_query`` and are left out of the averages,
as pytorch-metric-learning and open-metric-learning do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lookalike._arrays import ArrayLike, as_vector, check_embeddings, to_numpy
from lookalike.distances import BaseDistance
from lookalike.knn import Backend, topk

__all__ = [
    "METRICS_AT_K",
    "METRICS_WHOLE_RANKING",
    "RetrievalReport",
    "metric_names",
    "rank_metrics",
    "retrieval_metrics",
]

#: The metric families computed at every k: ``hit_rate@k``, ``recall@k``, ``precision@k``, ``map@k``.
METRICS_AT_K: tuple[str, ...] = ("hit_rate", "recall", "precision", "map")
#: The metrics of the whole ranking of a query's class (R = |C|), whatever the ks.
METRICS_WHOLE_RANKING: tuple[str, ...] = ("map@r", "r_precision")


@dataclass(frozen=True)
class RetrievalReport:
    """The result of :func:`retrieval_metrics`.

    Attributes:
        metrics: flat ``{"hit_rate@1": ..., "recall@1": ..., "precision@1": ..., "map@1": ...,
            ..., "map@r": ..., "r_precision": ...}``, averaged over the queries that have at least
            one item of their class in the gallery (NaN when no query has).
        ks: the ks asked for, in the order given.
        effective_ks: each k clamped to the ranking length (the gallery size, less the excluded
            self match); equal to ``ks`` unless a k exceeds it.
        n_queries: all queries.
        n_queries_without_gallery: queries whose class has no gallery item (left out of ``metrics``).
        queries_without_gallery: their row indices in ``queries``.
        per_query: the same keys as ``metrics``, each a (n_queries,) float64 array (NaN for queries
            without gallery items), when asked for; else None.
    """

    metrics: dict[str, float]
    ks: tuple[int, ...]
    effective_ks: tuple[int, ...]
    n_queries: int
    n_queries_without_gallery: int
    queries_without_gallery: np.ndarray
    per_query: dict[str, np.ndarray] | None = None

    @property
    def clamped_ks(self) -> tuple[int, ...]:
        """The requested ks that were larger than the ranking and so were clamped."""
        return tuple(k for k, e in zip(self.ks, self.effective_ks, strict=True) if k != e)


def metric_names(ks: Sequence[int]) -> list[str]:
    """The metric keys for these ks, in report order: every family of :data:`METRICS_AT_K` at each k,
    then :data:`METRICS_WHOLE_RANKING`. The names a report has, and that a config may select."""
    return [f"{m}@{k}" for k in ks for m in METRICS_AT_K] + list(METRICS_WHOLE_RANKING)


def retrieval_metrics(
    queries: ArrayLike,
    query_labels: ArrayLike,
    gallery: ArrayLike | None = None,
    gallery_labels: ArrayLike | None = None,
    *,
    ks: Sequence[int] = (1, 10, 50, 1000),
    distance: BaseDistance | str | None = None,
    leave_one_out: bool = False,
    query_ids: ArrayLike | None = None,
    gallery_ids: ArrayLike | None = None,
    per_query: bool = False,
    backend: Backend = "torch",
    device: torch.device | str | None = None,
    query_chunk_size: int | None = None,
    gallery_chunk_size: int | None = None,
) -> RetrievalReport:
    """Retrieval metrics of queries against a gallery, from one exact top-k search.

    Args:
        queries: (Nq, D) embeddings.
        query_labels: (Nq,) class labels (integers or strings).
        gallery, gallery_labels: (Ng, D) and (Ng,). Both None with ``leave_one_out=True``.
        ks: cut-offs, each >= 1 (duplicates are dropped).
        distance: distance object or name; default Euclidean on L2-normalised embeddings.
        leave_one_out: the gallery is the query set and each query's own row is excluded from its
            ranking (the papers' protocol for CUB, Cars, SOP; PML's ``ref_includes_query``).
            Gallery arguments and ids must then be None.
        query_ids, gallery_ids: (Nq,), (Ng,) integer row ids; a gallery item with the query's id is
            the query itself and is excluded from its ranking and from its class count |C|.
        per_query: also return the per-query values.
        backend, device, query_chunk_size, gallery_chunk_size: passed to :func:`lookalike.knn.topk`.
    """
    ks_t = _check_ks(ks)
    if leave_one_out:
        if any(x is not None for x in (gallery, gallery_labels, query_ids, gallery_ids)):
            raise ValueError(
                "leave_one_out=True uses the queries as the gallery: pass gallery=None, gallery_labels=None "
                "and no query_ids/gallery_ids"
            )
        gallery, gallery_labels = queries, query_labels
        query_ids = gallery_ids = np.arange(len(query_labels), dtype=np.int64)
    elif gallery is None or gallery_labels is None:
        raise ValueError("give gallery and gallery_labels, or leave_one_out=True")
    n_q, n_g = check_embeddings(queries, "queries"), check_embeddings(gallery, "gallery")
    q_lab, g_lab = _encode_labels(query_labels, gallery_labels, n_q, n_g)
    n_rel, n_self, query_ids, gallery_ids = _class_sizes(q_lab, g_lab, query_ids, gallery_ids)
    ranking_len = n_g - int(n_self.min()) if n_q else n_g
    r_max = int(n_rel.max(initial=0))
    k_search = max(1, min(ranking_len, max(max(ks_t), r_max)))
    effective = tuple(max(1, min(k, ranking_len)) for k in ks_t)

    _, ids = topk(
        queries,
        gallery,
        k_search,
        distance=distance,
        query_ids=query_ids,
        gallery_ids=gallery_ids,
        backend=backend,
        device=device,
        query_chunk_size=query_chunk_size,
        gallery_chunk_size=gallery_chunk_size,
    )
    ids_np = ids.cpu().numpy()
    g_lab_pad = np.append(g_lab, -1)  # id -1 (padding) -> label -1, never relevant
    relevant = g_lab_pad[ids_np] == q_lab[:, None]
    values = rank_metrics(relevant, n_rel, ks=sorted(set(effective)))
    missing = n_rel == 0
    metrics, per = _averages(values, ks_t, effective, missing)
    return RetrievalReport(
        metrics=metrics,
        ks=ks_t,
        effective_ks=effective,
        n_queries=n_q,
        n_queries_without_gallery=int(missing.sum()),
        queries_without_gallery=np.flatnonzero(missing),
        per_query=per if per_query else None,
    )


def _class_sizes(
    q_lab: np.ndarray, g_lab: np.ndarray, query_ids: ArrayLike | None, gallery_ids: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, ArrayLike | None, ArrayLike | None]:
    """|C| per query (its class's gallery items, less the query's own item when it is in the
    gallery), how many gallery items are the query itself, and the ids as :func:`_self_counts`
    checked them."""
    class_count = np.bincount(g_lab, minlength=int(max(q_lab.max(initial=-1), g_lab.max(initial=-1))) + 1)
    n_rel = class_count[q_lab].astype(np.int64)
    n_self = np.zeros(len(q_lab), dtype=np.int64)
    if query_ids is not None or gallery_ids is not None:
        if query_ids is None or gallery_ids is None:
            raise ValueError("give both query_ids and gallery_ids, or neither")
        query_ids, gallery_ids, n_self, n_self_same = _self_counts(query_ids, gallery_ids, q_lab, g_lab)
        n_rel -= n_self_same
    return n_rel, n_self, query_ids, gallery_ids


def _averages(
    values: dict[str, np.ndarray], ks: tuple[int, ...], effective: tuple[int, ...], missing: np.ndarray
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The report's metrics (each k read at its effective k) averaged over the queries with a
    gallery item of their class, and per query (NaN for the ``missing`` ones)."""
    has_gallery = ~missing
    metrics: dict[str, float] = {}
    per: dict[str, np.ndarray] = {}
    sources = [(f"{m}@{k}", f"{m}@{e}") for k, e in zip(ks, effective, strict=True) for m in METRICS_AT_K]
    for name, source in [*sources, *((m, m) for m in METRICS_WHOLE_RANKING)]:
        arr = values[source].copy()
        arr[missing] = np.nan
        metrics[name] = float(arr[has_gallery].mean()) if bool(has_gallery.any()) else float("nan")
        per[name] = arr
    return metrics, per


def rank_metrics(relevant: np.ndarray, n_relevant: np.ndarray, *, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-query metrics from a ranked relevance matrix.

    Args:
        relevant: (Nq, K) bool, ``relevant[q, i]`` when the i-th nearest item is of the query's class.
            K must be at least max(ks) and at least max(n_relevant) (or the whole ranking).
        n_relevant: (Nq,) |C| per query (0: no gallery item of the class; its values are 0/NaN).
        ks: cut-offs; each is used as is (clamp beforehand).

    Returns:
        (Nq,) float64 arrays keyed as :func:`metric_names` (``"hit_rate@k"``, ..., ``"map@r"``,
        ``"r_precision"``), in that order.
    """
    rel = np.asarray(relevant, dtype=bool)
    n_q, width = rel.shape
    n_rel = np.asarray(n_relevant, dtype=np.int64)
    if n_rel.shape != (n_q,):
        raise ValueError(f"n_relevant must have shape ({n_q},), got {n_rel.shape}")
    out = {name: np.empty(n_q, dtype=np.float64) for name in metric_names(ks)}
    if width == 0 or n_q == 0:
        for arr in out.values():
            arr.fill(np.nan)
        return out
    if max(ks) > width:
        raise ValueError(f"relevance has {width} columns, fewer than the largest k ({max(ks)})")
    chunk = max(1, (1 << 22) // max(width, 1))
    ranks = np.arange(1, width + 1, dtype=np.float64)
    for s in range(0, n_q, chunk):
        r = rel[s : s + chunk]
        nr = n_rel[s : s + chunk]
        safe_nr = np.maximum(nr, 1)
        hits = np.cumsum(r, axis=1, dtype=np.int32)
        ap_terms = np.where(r, hits / ranks, 0.0)
        ap_cum = np.cumsum(ap_terms, axis=1)
        for k in ks:
            h = hits[:, k - 1]
            out[f"hit_rate@{k}"][s : s + chunk] = h > 0
            out[f"recall@{k}"][s : s + chunk] = h / safe_nr
            out[f"precision@{k}"][s : s + chunk] = h / k
            out[f"map@{k}"][s : s + chunk] = ap_cum[:, k - 1] / np.maximum(np.minimum(nr, k), 1)
        r_idx = np.clip(nr, 1, width) - 1
        rows = np.arange(len(nr))
        out["map@r"][s : s + chunk] = ap_cum[rows, r_idx] / safe_nr
        out["r_precision"][s : s + chunk] = hits[rows, r_idx] / safe_nr
    return out


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    if isinstance(ks, int) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    out: list[int] = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"every k must be a positive integer, got {k!r} in ks={tuple(ks)!r}")
        if int(k) not in out:
            out.append(int(k))
    return tuple(out)


def _encode_labels(
    query_labels: ArrayLike, gallery_labels: ArrayLike, n_q: int, n_g: int
) -> tuple[np.ndarray, np.ndarray]:
    ql = as_vector(query_labels, "query_labels", n=n_q, like="queries")
    gl = as_vector(gallery_labels, "gallery_labels", n=n_g, like="gallery")
    _, inverse = np.unique(np.concatenate([ql, gl]), return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    return inverse[:n_q], inverse[n_q:]


def _self_counts(
    query_ids: ArrayLike, gallery_ids: ArrayLike, q_lab: np.ndarray, g_lab: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer codes of the query and gallery ids, and per query: the gallery items with its id
    (any class), and those of them of its own class."""
    qi, gi = to_numpy(query_ids), to_numpy(gallery_ids)
    if qi.shape != q_lab.shape or gi.shape != g_lab.shape:
        raise ValueError(
            f"query_ids/gallery_ids must have shapes {q_lab.shape}/{g_lab.shape}, got {qi.shape}/{gi.shape}"
        )
    _, id_codes = np.unique(np.concatenate([qi, gi]), return_inverse=True)
    id_codes = id_codes.reshape(-1).astype(np.int64)
    q_id, g_id = id_codes[: len(qi)], id_codes[len(qi) :]
    n_ids = int(id_codes.max(initial=-1)) + 1
    any_count = np.bincount(g_id, minlength=n_ids)[q_id]
    n_labels = int(max(q_lab.max(initial=-1), g_lab.max(initial=-1))) + 1
    g_key = g_id * n_labels + g_lab
    q_key = q_id * n_labels + q_lab
    keys, counts = np.unique(g_key, return_counts=True)
    pos = np.clip(np.searchsorted(keys, q_key), 0, max(len(keys) - 1, 0))
    same = (
        np.where((len(keys) > 0) & (keys[pos] == q_key), counts[pos], 0)
        if len(keys)
        else np.zeros_like(q_key)
    )
    return q_id, g_id, any_count.astype(np.int64), same.astype(np.int64)
