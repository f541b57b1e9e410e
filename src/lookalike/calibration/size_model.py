"""The non-mated decision score at any gallery size, from per-object distance profiles.

A non-mated search (its object not enrolled) meets n enrolled objects. What decides its score is
the distance to each object's nearest image (the per-object distance). For a calibration search
we know its per-object distances to every other calibration object (its *profile*); a gallery of
n objects is modelled as n objects drawn at random from that profile. The k smallest of n draws
come straight from uniform order statistics (Rényi's representation), so any n costs the same:

    U_(j) = 1 - exp(-sum_{i<=j} E_i / (n - i + 1)),  E_i ~ Exp(1);   x_j = F_s^-1(U_(j))

where F_s^-1 is the search's empirical quantile function, linear between the profile's points at
levels (i + 0.5) / M and continued below the first point along the first two points' slope
(floored at 0). The search's top-k is then ``x_1 <= x_2 <= ...``, each of another object, and the
decision score follows (:func:`lookalike.metrics.identification.decision_scores`). For the nearest
distance this is the per-search form of ``FPIR(n, T) = 1 - mean_s (1 - p_s(T))^n``; for the ratio
it is exact as well (the nearest other label is the second object); the z-norm cohort is taken as
the other objects of the simulated top-k.

:func:`size_table` gives the threshold for a target FPIR on a grid of gallery sizes (in objects),
and the non-mated score distribution at each; :func:`lookalike.metrics.identification.threshold_for_size`
interpolates the threshold in log size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lookalike.metrics.identification import decision_scores, threshold_at_fpir, threshold_for_size

__all__ = [
    "CURVE_LEVELS",
    "SIZE_GRID",
    "object_profiles",
    "simulated_scores",
    "size_table",
    "threshold_for_size",
]

#: Gallery sizes (objects) the threshold table is computed at: 1, 2, 3, 4, 6, 8, ... up to 2^20.
SIZE_GRID: tuple[int, ...] = tuple(sorted({round(2 ** (i / 2)) for i in range(0, 41)}))
#: The FPIR levels at which the non-mated score distribution of each size is kept (its lower part, where
#: any useful threshold lies): 33 levels, geometric from 1e-4 to 0.5.
CURVE_LEVELS: tuple[float, ...] = tuple(float(x) for x in np.geomspace(1e-4, 0.5, 33))


def object_profiles(distances: np.ndarray, labels: np.ndarray, query_labels: np.ndarray) -> np.ndarray:
    """Per-object distance profiles: (Q, C - 1) sorted rows, row q holding the distance from query q
    to the nearest image of each object other than its own.

    ``distances`` (Q, N) gallery distances from Q queries to N images with ``labels`` (N,);
    ``query_labels`` (Q,), each one of ``labels``: every query's own object is left out (its search
    is non-mated).
    """
    labels = np.asarray(labels).astype(str)
    query_labels = np.asarray(query_labels).astype(str)
    classes, inverse = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"object profiles need at least 2 objects, found {len(classes)}")
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(classes)))
    per_object = np.minimum.reduceat(np.asarray(distances, np.float64)[:, order], starts, axis=1)
    own = np.searchsorted(classes, query_labels)
    known = (own < len(classes)) & (classes[np.minimum(own, len(classes) - 1)] == query_labels)
    if not known.all():
        raise ValueError(f"query label {str(query_labels[~known][0])!r} is not among the objects' labels")
    per_object[np.arange(len(own)), own] = np.inf
    per_object.sort(axis=1)
    return per_object[:, : len(classes) - 1]


def _quantiles(profiles: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Each row's empirical quantile function at levels ``u`` (Q, R, K) -> (Q, R, K)."""
    q, m = profiles.shape
    levels = (np.arange(m) + 0.5) / m
    pos = np.clip(u * m - 0.5, 0.0, m - 1.0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, m - 1)
    rows = np.arange(q)[:, None, None]
    frac = pos - lo
    out = profiles[rows, lo] * (1 - frac) + profiles[rows, hi] * frac
    if m >= 2:  # below the first point: along the first two points' slope, floored at 0
        slope = ((profiles[:, 1] - profiles[:, 0]) / (levels[1] - levels[0]))[:, None, None]
        below = u < levels[0]
        tail = np.maximum(profiles[:, :1, None] - slope * (levels[0] - u), 0.0)
        out = np.where(below, tail, out)
    return out


def simulated_scores(
    profiles: np.ndarray, n_objects: int, *, score: str, depth: int = 32, repeats: int = 8, seed: int = 0
) -> np.ndarray:
    """(Q * repeats,) decision scores of non-mated searches on galleries of ``n_objects`` objects,
    ``repeats`` draws per profile row, each with a top-``depth`` of distinct objects."""
    if n_objects < 1:
        raise ValueError(f"a gallery size must be at least 1 object, got {n_objects}")
    profiles = np.asarray(profiles, dtype=np.float64)
    k = int(min(depth, n_objects))
    rng = np.random.default_rng(seed)
    e = rng.exponential(size=(len(profiles), repeats, k))
    u = 1.0 - np.exp(-np.cumsum(e / (n_objects - np.arange(k)), axis=2))
    dist = _quantiles(profiles, u).reshape(-1, k)
    labels = np.broadcast_to(np.arange(k).astype(str).astype(object), dist.shape)
    return decision_scores(labels, dist, score=score)


def size_table(
    profiles: np.ndarray,
    target_fpir: float,
    *,
    score: str,
    sizes: Sequence[int] = SIZE_GRID,
    depth: int = 32,
    repeats: int = 8,
    seed: int = 0,
) -> tuple[list[tuple[int, float]], list[tuple[int, tuple[float, ...]]]]:
    """``(thresholds, curves)`` from one simulation per size: ``[(n_objects, threshold)]``, for each
    size the threshold whose simulated FPIR is ``target_fpir``, made non-increasing in size for the
    nearest distance (a bigger gallery never deserves a looser one; the ratio's threshold rises with
    size, as the nearest objects crowd); and for each size the simulated non-mated scores at the
    FPIR levels :data:`CURVE_LEVELS` (the score at or under which that share of non-mated searches
    falls), which a gallery pools with its own non-mated scores
    (:mod:`lookalike.calibration.adaptive`)."""
    thresholds, curves = [], []
    for n in sizes:
        s = simulated_scores(profiles, int(n), score=score, depth=depth, repeats=repeats, seed=seed)
        thresholds.append((int(n), threshold_at_fpir(s, target_fpir)))
        finite = s[np.isfinite(s)]
        curves.append((int(n), tuple(float(x) for x in np.quantile(finite, CURVE_LEVELS))))
    if score == "nearest":
        running = np.minimum.accumulate([t for _, t in thresholds])
        thresholds = [(n, float(t)) for (n, _), t in zip(thresholds, running, strict=True)]
    return thresholds, curves
