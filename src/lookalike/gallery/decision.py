"""The match decision and the records it answers with: :class:`Neighbour`, :class:`SearchResult`.

For each query, a *decision score* (:mod:`lookalike.metrics.identification`: the nearest distance,
the ratio of the nearest distance to the nearest of another label, or a cohort z-norm) computed
from the query's neighbours (nearest first, as deep as the search went), and a decision:

- ``"match"``: the score is within the threshold (``score <= threshold``); ``label`` is the
  nearest item's label and ``margin = threshold - score`` is positive (or zero).
- ``"no match"``: the score is above the threshold (``margin`` negative), or there is no neighbour.
- ``"no threshold"``: no threshold was given; ``label`` is the nearest item's label, ``margin`` is
  None.
- ``"error"``: the query could not be read (:func:`error_result`; ``error`` says why).

:func:`decide` decides one query from its neighbours; :func:`decide_all` decides a whole batched
search (a store's ``(distances, ids)`` and the found items' rows) with one score computation for
the batch, and answers exactly what :func:`decide` answers query by query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DECISIONS",
    "Neighbour",
    "SearchResult",
    "decide",
    "decide_all",
    "error_result",
    "kept_ids",
    "neighbour",
]

DECISIONS: tuple[str, ...] = ("match", "no match", "no threshold", "error")


@dataclass(frozen=True)
class Neighbour:
    """One gallery item found for a query: its ``rank`` (1 = nearest), ``id``, ``label``, the
    ``distance`` to the query, its source ``path`` (None when unknown) and free ``metadata``."""

    rank: int
    id: str
    label: str
    distance: float
    path: str | None
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain python values, NaN as None."""
        return {
            "rank": int(self.rank),
            "id": str(self.id),
            "label": str(self.label),
            "distance": _plain(self.distance),
            "path": self.path,
            "metadata": {str(k): _plain(v) for k, v in self.metadata.items()},
        }


@dataclass(frozen=True)
class SearchResult:
    """The answer for one query; see the module docstring for ``decision``.

    ``distance`` is the nearest item's distance (None when there is none), ``score`` the decision
    score (of kind ``score_name``; None without a neighbour), ``margin`` is ``threshold - score``
    (positive: inside the threshold; None without a threshold or a neighbour), ``error`` says why a
    query could not be answered (``decision == "error"``).
    """

    query: str
    neighbours: list[Neighbour]
    decision: str
    label: str | None
    distance: float | None
    threshold: float | None
    margin: float | None
    error: str | None = None
    score: float | None = None
    score_name: str = "nearest"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (one JSON Lines record of ``lookalike search --json``)."""
        return {
            "query": self.query,
            "decision": self.decision,
            "label": self.label,
            "distance": _plain(self.distance),
            "score": _plain(self.score),
            "score_name": self.score_name,
            "threshold": _plain(self.threshold),
            "margin": _plain(self.margin),
            "error": self.error,
            "neighbours": [n.to_dict() for n in self.neighbours],
        }


def decide(
    query: str,
    neighbours: Sequence[Neighbour],
    threshold: float | None,
    *,
    score: str = "nearest",
    k: int | None = None,
) -> SearchResult:
    """The match decision from ``neighbours`` (nearest first, as deep as the search went; may be
    empty): ``score`` (a name of :data:`lookalike.metrics.identification.SCORES`) computed from them,
    a match when it is at most ``threshold``. ``k``: how many neighbours the result keeps (all)."""
    from lookalike.metrics.identification import decision_scores

    neighbours = list(neighbours)
    t = _check_threshold(threshold)
    _check_kept(k)
    if not neighbours:
        return _result(query, [], math.inf, t, score=score)
    labels = np.asarray([[n.label for n in neighbours]], dtype=object)
    distances = np.asarray([[n.distance for n in neighbours]], dtype=np.float64)
    value = float(decision_scores(labels, distances, score=score)[0])
    return _result(query, neighbours if k is None else neighbours[:k], value, t, score=score)


def decide_all(
    names: Sequence[str],
    distances: np.ndarray,
    ids: np.ndarray,
    labels: Mapping[str, str],
    rows: Mapping[str, Mapping[str, Any]],
    threshold: float | None,
    *,
    score: str = "nearest",
    k: int | None = None,
) -> list[SearchResult]:
    """One result per query of a batched search: ``distances`` and ``ids`` (Q, n) as a store's
    ``search`` returns them (nearest first; an id of None is padding: an approximate index found
    fewer), ``labels`` the label of every id found, ``rows`` the item rows (label, path, metadata)
    of the neighbours the results keep (:func:`kept_ids`: the first ``k`` of each search). The
    decision scores of the whole batch come from one
    :func:`~lookalike.metrics.identification.decision_scores` call; each result is the one
    :func:`decide` gives for that query's neighbours."""
    from lookalike.metrics.identification import decision_scores

    t = _check_threshold(threshold)
    _check_kept(k)
    ids, dist = _padding_last(np.asarray(ids, dtype=object), np.asarray(distances, dtype=np.float64))
    if len(names) != len(ids):
        raise ValueError(f"got {len(names)} names for {len(ids)} searches")
    found = np.not_equal(ids, None)
    label_of = np.full(ids.shape, None, dtype=object)
    label_of[found] = [str(labels[str(i)]) for i in ids[found]]
    values = decision_scores(label_of, dist, score=score)
    kept = ids.shape[1] if k is None else k
    return [
        _result(str(name), _neighbours(ids[q, :kept], dist[q, :kept], rows), float(values[q]), t, score=score)
        for q, name in enumerate(names)
    ]


def kept_ids(ids: np.ndarray, k: int | None) -> list[str]:
    """The distinct ids of the neighbours that :func:`decide_all`'s results keep: the first ``k`` found
    (all when None) of each search in (Q, n) ``ids``, padding (None) left out."""
    ids = _padding_last(np.asarray(ids, dtype=object))[0]
    kept = ids[:, :k] if k is not None else ids
    return list(dict.fromkeys(str(i) for i in kept.reshape(-1) if i is not None))


def _neighbours(
    ids: np.ndarray, distances: np.ndarray, rows: Mapping[str, Mapping[str, Any]]
) -> list[Neighbour]:
    """One search's neighbours (padding last, left out), ranked from 1."""
    return [
        neighbour(rank + 1, str(i), float(d), rows[str(i)])
        for rank, (i, d) in enumerate(zip(ids, distances, strict=True))
        if i is not None
    ]


def _padding_last(ids: np.ndarray, distances: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Q, n) ids and distances (zeros when None) with each row's padding (id None) moved after its
    neighbours, whose order is kept: :mod:`lookalike.metrics.identification` reads a row's neighbours
    from its start (its label array gets None there, the padding it knows)."""
    distances = np.zeros(ids.shape) if distances is None else distances
    if ids.ndim != 2 or ids.shape != distances.shape:
        raise ValueError(
            f"ids and distances must both be (Q, n), got shapes {ids.shape} and {distances.shape}"
        )
    missing = np.equal(ids, None)
    if not missing.any():
        return ids, distances
    order = np.argsort(missing, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    return ids, np.take_along_axis(distances, order, axis=1)


def _result(query: str, kept: list[Neighbour], value: float, t: float | None, *, score: str) -> SearchResult:
    """The record of one decision: score ``value`` against threshold ``t``; ``kept``: the neighbours
    the result lists (the nearest first; empty when the search found none)."""
    if not kept:  # empty gallery: nothing is known
        decision = "no threshold" if t is None else "no match"
        return SearchResult(query, [], decision, None, None, t, None, score_name=score)
    nearest = kept[0]
    d1 = float(nearest.distance)
    common = {"score": value, "score_name": score}
    if t is None:
        return SearchResult(query, kept, "no threshold", nearest.label, d1, None, None, **common)
    if value <= t:
        return SearchResult(query, kept, "match", nearest.label, d1, t, t - value, **common)
    return SearchResult(query, kept, "no match", None, d1, t, t - value, **common)


def error_result(query: str, error: str, threshold: float | None) -> SearchResult:
    """The result of a query that could not be answered (unreadable image, ...)."""
    return SearchResult(query, [], "error", None, None, _opt_float(threshold), None, error=error)


def neighbour(rank: int, item_id: str, distance: float, row: Mapping[str, Any]) -> Neighbour:
    """A :class:`Neighbour` from a store's item row (id, label, path, metadata...)."""
    path = row.get("path")
    path = None if path is None or (isinstance(path, float) and math.isnan(path)) else str(path)
    metadata = {k: v for k, v in row.items() if k not in ("id", "label", "path")}
    return Neighbour(rank, item_id, str(row.get("label")), distance, path, metadata)


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return _opt_float(threshold)


def _check_kept(k: int | None) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
        raise ValueError(f"k (the neighbours a result keeps) must be a positive integer or None, got {k!r}")


def _opt_float(x: float | None) -> float | None:
    return None if x is None else float(x)


def _plain(value: Any) -> Any:
    """A JSON-ready python value: numpy scalars unwrapped, NaN/inf as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
