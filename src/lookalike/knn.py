"""Exact k-nearest-neighbour search, chunked so that memory stays bounded.

:func:`topk` compares every query with every gallery item, but never holds the
(n_queries, n_gallery) matrix: it walks over blocks of queries and blocks of the gallery, keeps
a running top-k per query and merges each block's top-k into it. Memory is
O(query_chunk_size x gallery_chunk_size + n_queries x k).

The result follows the faiss vocabulary: ``(values, ids)`` of shape (n_queries, k), nearest
first. ``values`` are in the convention of the distance object: distances (smallest first) for
Euclidean, similarities (largest first) for cosine and dot product; they are distances only for
Euclidean. :func:`lookalike.protocol.gallery_topk` answers in gallery distances (1 - similarity
for cosine) for everything that sets or applies a match threshold.

Fewer than k gallery items is handled, never an error, and the shape is always (n_queries, k), as
faiss does: where a query has fewer than k neighbours (a small gallery, or its own item excluded),
the row ends with padding, id ``-1`` and the worst value (``inf`` for distances, ``-inf`` for
similarities). Both backends follow this one convention.

Ties are broken by gallery index: of two items at the same distance, the one with the smaller
row index in ``gallery`` ranks first, and is the one kept at the k-th place (torch backend).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from lookalike._arrays import ArrayLike, as_embeddings, as_vector
from lookalike.distances import (
    BaseDistance,
    CosineSimilarity,
    DotProductSimilarity,
    EuclideanDistance,
    resolve_distance,
)

__all__ = ["PAD_ID", "topk"]

#: The id of a padding entry: the row has fewer than k neighbours.
PAD_ID = -1
Backend = Literal["torch", "faiss"]
_BACKENDS = ("torch", "faiss")


def topk(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    distance: BaseDistance | str | None = None,
    query_ids: ArrayLike | None = None,
    gallery_ids: ArrayLike | None = None,
    backend: Backend = "torch",
    device: torch.device | str | None = None,
    query_chunk_size: int | None = None,
    gallery_chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest gallery items of every query, exactly.

    Args:
        queries: (Nq, D) embeddings (torch tensor on any device, or numpy array).
        gallery: (Ng, D) embeddings. It may stay on the CPU while ``device`` is a GPU: it is moved
            there one chunk at a time.
        k: how many neighbours per query (>= 1). The result always has k columns; a query with
            fewer than k neighbours (k > Ng, or its own item excluded) has its row padded at the end
            with id -1 (:data:`PAD_ID`) and the worst value (inf, or -inf for similarities).
        distance: a distance object or name; default Euclidean on L2-normalised embeddings.
        query_ids, gallery_ids: (Nq,), (Ng,) integer row ids. When both are given, a gallery item
            whose id equals the query's id is never returned for that query (an item that is both
            query and gallery is not its own neighbour); the row is padded as above.
        backend: ``"torch"`` (default) or ``"faiss"`` (``faiss.IndexFlatL2``/``IndexFlatIP``, CPU;
            needs ``pip install faiss-cpu``; ties follow faiss's order).
        device: where to compute (torch backend); default the device of ``queries``.
        query_chunk_size, gallery_chunk_size: block sizes; the scratch matrix is their product
            (float32). Default (None): 1024 x 32768 for k <= 64,
            512 x 65536 for larger k (fewer, wider selections); 128 MiB either way.

    Returns:
        ``(values, ids)``: float32 (Nq, k) and int64 (Nq, k) tensors, nearest first, padding
        last; ``values`` in the distance object's convention (similarities for cosine and dot).
        ``ids[ids >= 0]`` are the real neighbours.
    """
    dist = resolve_distance(distance)
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(_BACKENDS)}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    auto_q, auto_g = (1024, 32768) if k <= 64 else (512, 65536)
    query_chunk_size = auto_q if query_chunk_size is None else query_chunk_size
    gallery_chunk_size = auto_g if gallery_chunk_size is None else gallery_chunk_size
    for name, size in (("query_chunk_size", query_chunk_size), ("gallery_chunk_size", gallery_chunk_size)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size!r}")
    q = as_embeddings(queries, "queries")
    g = as_embeddings(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"embedding sizes differ: queries have D={q.shape[1]}, gallery has D={g.shape[1]}")
    n_q, n_g = q.shape[0], g.shape[0]
    dev = torch.device(device) if device is not None else q.device
    k = int(k)
    k_out = min(k, n_g)
    if n_q == 0 or n_g == 0:
        empty = torch.empty((n_q, 0), dtype=torch.float32, device=dev)
        return _pad(empty, empty.to(torch.int64), k, dist)
    exclude = _exclusion(query_ids, gallery_ids, n_q, n_g)
    extra = 0 if exclude is None else exclude[2]
    k_search = min(k_out + extra, n_g)
    if backend == "faiss":
        values, ids = _faiss_topk(q, g, k_search, dist)
        values, ids = values.to(dev), ids.to(dev)
    else:
        values, ids = _torch_topk(q, g, k_search, dist, dev, query_chunk_size, gallery_chunk_size)
    if exclude is not None:
        values, ids = _drop_excluded(values, ids, exclude[0].to(dev), exclude[1].to(dev), k_out, dist)
    return _pad(values, ids, k, dist)


def _pad(
    values: torch.Tensor, ids: torch.Tensor, k: int, dist: BaseDistance
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (Nq, k') results to k columns with id PAD_ID and the worst value."""
    missing = k - values.shape[1]
    if missing <= 0:
        return values, ids
    worst = float("-inf") if dist.higher_is_closer else float("inf")
    shape = (values.shape[0], missing)
    return (
        torch.cat([values, torch.full(shape, worst, dtype=values.dtype, device=values.device)], dim=1),
        torch.cat([ids, torch.full(shape, PAD_ID, dtype=ids.dtype, device=ids.device)], dim=1),
    )


# ---------------------------------------------------------------------------------------------
# torch backend


def _torch_topk(
    q: torch.Tensor,
    g: torch.Tensor,
    k: int,
    dist: BaseDistance,
    dev: torch.device,
    qc: int,
    gc: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    n_q, n_g = q.shape[0], g.shape[0]
    out_v = torch.empty((n_q, k), dtype=torch.float32, device=dev)
    out_i = torch.empty((n_q, k), dtype=torch.int64, device=dev)
    qc = min(qc, n_q)
    gc = min(gc, n_g)
    buf = torch.empty((qc, gc), dtype=torch.float32, device=dev)
    for qs in range(0, n_q, qc):
        qb = q[qs : qs + qc].to(device=dev, dtype=torch.float32)
        qb = _prepare(qb, dist, check=True)
        run_v: torch.Tensor | None = None
        run_i: torch.Tensor | None = None
        for gs in range(0, n_g, gc):
            gb = _prepare(g[gs : gs + gc].to(device=dev, dtype=torch.float32), dist, check=qs == 0)
            scores = _scores(qb, gb, dist, buf[: qb.shape[0], : gb.shape[0]])
            v, i = _block_topk(scores, k, gs)
            if run_v is None or run_i is None:
                run_v, run_i = v, i
            elif v.shape[1] > 0:
                run_v, run_i = _select(torch.cat([run_v, v], dim=1), torch.cat([run_i, i], dim=1), k)
        assert run_v is not None and run_i is not None
        run_v, run_i = _order(run_v, run_i)
        out_v[qs : qs + qc] = _to_distance(run_v, qb, dist)
        out_i[qs : qs + qc] = run_i
    return out_v, out_i


def _is_plain(dist: BaseDistance) -> bool:
    return type(dist) in (EuclideanDistance, CosineSimilarity, DotProductSimilarity)


def _prepare(x: torch.Tensor, dist: BaseDistance, *, check: bool) -> torch.Tensor:
    if check and not bool(torch.isfinite(x).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    return dist.normalize(x) if _is_plain(dist) else x


def _scores(qb: torch.Tensor, gb: torch.Tensor, dist: BaseDistance, out: torch.Tensor) -> torch.Tensor:
    """A "higher is closer" ranking key for a block: (qc, D) x (gc, D) -> (qc, gc), written into ``out``."""
    if isinstance(dist, EuclideanDistance) and _is_plain(dist) and not dist.normalize_embeddings:
        # ||q - g||^2 = ||q||^2 - (2 q.g - ||g||^2); rank by the bracket.
        norms = (gb * gb).sum(dim=1)
        return torch.addmm(norms.neg().unsqueeze(0), qb, gb.T, alpha=2.0, out=out)
    if _is_plain(dist):
        return torch.mm(qb, gb.T, out=out)
    d = dist(qb, gb)
    return d if dist.higher_is_closer else d.neg()


def _to_distance(key: torch.Tensor, qb: torch.Tensor, dist: BaseDistance) -> torch.Tensor:
    """Turn the ranking key of the selected items back into the distance's own values."""
    if not _is_plain(dist):
        return key if dist.higher_is_closer else key.neg()
    if isinstance(dist, EuclideanDistance):
        qn = (qb * qb).sum(dim=1, keepdim=True) if not dist.normalize_embeddings else 2.0
        sq = 2.0 - 2.0 * key if dist.normalize_embeddings else qn - key
        sq = sq.clamp_min(0.0)
        finite = torch.isfinite(key)
        sq = torch.where(finite, sq, torch.full_like(sq, float("inf")))
        return sq if dist.squared else sq.sqrt()
    return key


def _block_topk(scores: torch.Tensor, k: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact top-k of one block of scores (qc, w), with global ids (column + ``offset``).

    ``torch.topk`` over a wide row costs a selection over every entry. Instead, split each row
    into n runs of b entries (run r holds columns r, r + n, r + 2n, ...: an elementwise maximum of
    b contiguous slices, one cheap vectorised pass): the k+1 best entries of the row lie in the
    k+1 runs with the largest maxima, so a selection over those (k+1) x b entries suffices. Rows
    where a tie straddles the k-th place are redone over the full row.
    """
    n, w = scores.shape
    fit = math.isqrt(w // (k + 1))  # b ~ sqrt(w / k) minimises runs + kept entries (~2 sqrt(w k))
    if fit < 2:
        return _select(scores, None, k, offset=offset)
    b = min(64, 1 << (fit.bit_length() - 1))
    n_runs = w // b
    run_max = scores[:, : n_runs * b].unflatten(1, (b, n_runs)).amax(dim=1)
    runs = torch.topk(run_max, k + 1, dim=1, largest=True, sorted=False).indices
    cols = (runs.unsqueeze(2) + torch.arange(b, device=scores.device) * n_runs).flatten(1)
    if n_runs * b < w:  # the columns after the last whole run are always candidates
        rest = torch.arange(n_runs * b, w, device=scores.device).expand(n, -1)
        cols = torch.cat([cols, rest], dim=1)
    vals = scores.gather(1, cols)
    tv, tc, tie = _pick(vals, k)
    sel = cols.gather(1, tc) + offset
    if bool(tie.any()):
        rows = tie.nonzero().squeeze(1)
        tv[rows], sel[rows] = _select(scores[rows], None, k, offset=offset)
    return tv, sel


def _pick(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k largest of each row (w > k), unordered, their columns, and the rows where a tie
    straddles the k-th place (there the choice among equal values is arbitrary)."""
    tv, tc = torch.topk(values, k + 1, dim=1, largest=True, sorted=False)
    low_v, low_pos = torch.topk(tv, 2, dim=1, largest=False, sorted=True)
    tie = low_v[:, 0] == low_v[:, 1]
    # Drop the smallest of the k+1: move the last column into its place, then cut the last column.
    pos = low_pos[:, :1]
    tv.scatter_(1, pos, tv[:, k:].clone())
    tc.scatter_(1, pos, tc[:, k:].clone())
    return tv[:, :k], tc[:, :k], tie


def _select(
    values: torch.Tensor, ids: torch.Tensor | None, k: int, *, offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best (largest) values of each row, ties at the k-th place resolved by smaller id.

    ``ids`` are the global ids of the columns (None: column index + ``offset``). The result is
    not ordered.
    """
    n, w = values.shape
    if w <= k:
        # A block's scores live in a reused buffer: copy them out.
        return (values.clone() if ids is None else values), _col_ids(ids, n, w, offset, values.device)
    tv, tc, tie = _pick(values, k)
    sel_ids = tc + offset if ids is None else ids.gather(1, tc)
    if bool(tie.any()):
        rows = tie.nonzero().squeeze(1)
        row_ids = _col_ids(None if ids is None else ids[rows], rows.numel(), w, offset, values.device)
        ev, ei = _lexsort(values[rows], row_ids)
        tv[rows] = ev[:, :k]
        sel_ids[rows] = ei[:, :k]
    return tv, sel_ids


def _col_ids(ids: torch.Tensor | None, n: int, w: int, offset: int, device: torch.device) -> torch.Tensor:
    if ids is not None:
        return ids
    return (torch.arange(w, device=device) + offset).unsqueeze(0).expand(n, w)


def _lexsort(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort rows by value descending, then id ascending."""
    by_id = torch.argsort(ids, dim=1, stable=True)
    v = values.gather(1, by_id)
    i = ids.gather(1, by_id)
    order = torch.argsort(v, dim=1, descending=True, stable=True)
    return v.gather(1, order), i.gather(1, order)


def _order(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Order each row nearest first (largest key first), equal keys by smaller id."""
    v, order = torch.sort(values, dim=1, descending=True)
    i = ids.gather(1, order)
    dup = (
        (v[:, 1:] == v[:, :-1]).any(dim=1) if v.shape[1] > 1 else torch.zeros_like(v[:, 0], dtype=torch.bool)
    )
    if bool(dup.any()):
        rows = dup.nonzero().squeeze(1)
        v[rows], i[rows] = _lexsort(v[rows], i[rows])
    return v, i


# ---------------------------------------------------------------------------------------------
# excluding self matches


def _exclusion(
    query_ids: ArrayLike | None, gallery_ids: ArrayLike | None, n_q: int, n_g: int
) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """(query ids, gallery ids, the most gallery items any query can lose) or None."""
    if (query_ids is None) != (gallery_ids is None):
        raise ValueError("give both query_ids and gallery_ids, or neither")
    if query_ids is None or gallery_ids is None:
        return None
    qi = _as_ids(query_ids, n_q, "query_ids")
    gi = _as_ids(gallery_ids, n_g, "gallery_ids")
    g_unique, g_counts = np.unique(gi, return_counts=True)
    pos = np.clip(np.searchsorted(g_unique, qi), 0, max(len(g_unique) - 1, 0))
    hit = g_unique[pos] == qi
    extra = int(g_counts[pos][hit].max()) if bool(hit.any()) else 0
    return torch.from_numpy(qi), torch.from_numpy(gi), extra


def _as_ids(ids: ArrayLike, n: int, what: str) -> np.ndarray:
    arr = as_vector(ids, what, n=n)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _drop_excluded(
    values: torch.Tensor,
    ids: torch.Tensor,
    query_ids: torch.Tensor,
    gallery_ids: torch.Tensor,
    k_out: int,
    dist: BaseDistance,
) -> tuple[torch.Tensor, torch.Tensor]:
    valid = ids >= 0
    same = valid & (gallery_ids[ids.clamp_min(0)] == query_ids.unsqueeze(1))
    drop = same | ~valid
    # Stable sort puts kept entries first, in their ranked order.
    order = torch.argsort(drop.to(torch.uint8), dim=1, stable=True)[:, :k_out]
    v = values.gather(1, order)
    i = ids.gather(1, order)
    dropped = drop.gather(1, order)
    worst = float("-inf") if dist.higher_is_closer else float("inf")
    v = v.masked_fill(dropped, worst)
    i = i.masked_fill(dropped, PAD_ID)
    return v, i


# ---------------------------------------------------------------------------------------------
# faiss backend


def _faiss_topk(
    q: torch.Tensor, g: torch.Tensor, k: int, dist: BaseDistance
) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='faiss' needs faiss; install it with `pip install faiss-cpu` "
            "(or `pip install lookalike[faiss]`), or use backend='torch'"
        ) from e
    if not _is_plain(dist):
        raise ValueError(
            f"backend='faiss' supports euclidean, squared_euclidean, cosine and dot, not {dist!r}"
        )
    qn = np.ascontiguousarray(dist.normalize(q.detach().to("cpu", torch.float32)).numpy())
    gn = np.ascontiguousarray(dist.normalize(g.detach().to("cpu", torch.float32)).numpy())
    d = qn.shape[1]
    index = faiss.IndexFlatL2(d) if isinstance(dist, EuclideanDistance) else faiss.IndexFlatIP(d)
    index.add(gn)
    values, ids = index.search(qn, k)
    v = torch.from_numpy(values)
    if isinstance(dist, EuclideanDistance) and not dist.squared:
        v = v.clamp_min(0.0).sqrt()
    return v, torch.from_numpy(ids).to(torch.int64)
