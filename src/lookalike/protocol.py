"""The retrieval protocol, once: which rows of a split are queries and gallery, and in which
distance a gallery answers.

Everything that evaluates, calibrates or fills a gallery from a split manifest asks this module:

- :func:`split_of` gives every row of one split, :func:`split_rows` its ``(queries, gallery)``
  rows (``queries="roles"``: the rows whose role is query; ``"all"``: every image of the split
  is a query against the others);
  :func:`union_rows` joins them so that an image that is both is embedded once; :func:`role_rows`
  keeps the rows of one role (``gallery``, ``query``, ``all``). Frames keep the manifest's index,
  which is the row id: an image is never compared with itself.
- Gallery distances (:data:`GALLERY_DISTANCES`): ``"euclidean"`` is the true Euclidean distance
  between L2-normalised embeddings (not its square), in [0, 2]; ``"cosine"`` is 1 - cosine
  similarity, in [0, 2]. Either way smaller is closer, and a decision score at or under the
  threshold is a match. :func:`gallery_topk` searches embeddings exactly and answers in these
  units (whereas :func:`lookalike.knn.topk` answers in the distance object's own values:
  similarities for cosine); :func:`from_backend` converts a search backend's raw scores
  (squared L2, inner product) and :func:`from_values` a distance object's values.

This module sits low: it imports the data roles, the distances and the exact search, never the
models, embedding, gallery or training code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from lookalike.data.roles import is_gallery, is_query
from lookalike.distances import BaseDistance, create_distance
from lookalike.knn import topk

if TYPE_CHECKING:
    import pandas as pd

    from lookalike._arrays import ArrayLike

__all__ = [
    "GALLERY_DISTANCES",
    "ROLE_CHOICES",
    "ProtocolError",
    "QueryMode",
    "check_gallery_distance",
    "from_backend",
    "from_values",
    "gallery_topk",
    "role_rows",
    "split_of",
    "split_rows",
    "union_rows",
]

#: The distances a gallery compares by and a threshold is set in (see the module doc).
GALLERY_DISTANCES: tuple[str, ...] = ("euclidean", "cosine")
#: What :func:`role_rows` keeps.
ROLE_CHOICES: tuple[str, ...] = ("gallery", "query", "all")
QueryMode = Literal["all", "roles"]


class ProtocolError(ValueError):
    """A manifest or option the protocol cannot use; the message names the value and what is valid."""


def split_rows(
    frame: pd.DataFrame, split: str, *, queries: QueryMode = "roles", require: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(queries, gallery)`` rows of ``split`` of a split manifest.

    ``queries="roles"``: rows whose role is query (or query+gallery); ``"all"``: every query or
    gallery row of the split (each image a query against the other gallery images). In
    leave-one-out manifests the same rows are both. ``require``: a split with no rows raises
    :class:`ProtocolError` naming the splits present (else two empty frames).
    """
    if queries not in ("all", "roles"):
        raise ProtocolError(f"queries must be 'all' or 'roles', got {queries!r}")
    rows = split_of(frame, split, require=require)
    gallery_mask = is_gallery(rows)
    query_mask = is_query(rows) | gallery_mask if queries == "all" else is_query(rows)
    return rows[query_mask], rows[gallery_mask]


def split_of(frame: pd.DataFrame, split: str, *, require: bool = True) -> pd.DataFrame:
    """Every row of ``split``. A manifest without a ``split`` column, or (``require``) without rows
    of ``split``, raises :class:`ProtocolError` naming the splits present."""
    if "split" not in frame.columns:
        raise ProtocolError("the manifest has no 'split' column: run `lookalike split` on it first")
    rows = frame[frame["split"].astype(str) == split]
    if len(rows) == 0 and require:
        present = sorted(frame["split"].dropna().astype(str).unique())
        raise ProtocolError(f"the manifest has no rows of split {split!r}; splits present: {present}")
    return rows


def union_rows(queries: pd.DataFrame, gallery: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``queries`` then the gallery rows not among them (by index): each image once."""
    if queries.index.equals(gallery.index):
        return queries
    import pandas as pd

    return pd.concat([queries, gallery[~gallery.index.isin(queries.index)]])


def role_rows(frame: pd.DataFrame, role: str) -> pd.DataFrame:
    """The rows of ``frame`` with ``role``: ``gallery`` / ``query`` (leave-one-out rows are both) or
    ``all`` (every row)."""
    if role not in ROLE_CHOICES:
        raise ProtocolError(f"role must be one of {', '.join(ROLE_CHOICES)}, got {role!r}")
    if role == "all":
        return frame
    return frame[is_gallery(frame) if role == "gallery" else is_query(frame)]


def check_gallery_distance(distance: str) -> str:
    """``distance`` when it is one of :data:`GALLERY_DISTANCES`, else :class:`ProtocolError`."""
    if distance not in GALLERY_DISTANCES:
        raise ProtocolError(f"unknown distance {distance!r}; valid: {', '.join(GALLERY_DISTANCES)}")
    return distance


def from_values(values: np.ndarray | torch.Tensor, distance: BaseDistance | str) -> np.ndarray:
    """A distance object's values (similarities for cosine) -> gallery distances (float64)."""
    name = distance if isinstance(distance, str) else distance.name
    check_gallery_distance(name)
    out = np.asarray(values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values)
    out = out.astype(np.float64)
    return 1.0 - out if name == "cosine" else out


def from_backend(raw: np.ndarray, distance: str, *, squared_l2: bool = True) -> np.ndarray:
    """A search backend's raw scores -> gallery distances (float32): squared L2 -> its square
    root (``squared_l2=False``: already a distance), inner product -> 1 - similarity."""
    raw = np.asarray(raw, dtype=np.float32)
    if check_gallery_distance(distance) == "euclidean":
        return np.sqrt(np.maximum(raw, 0.0), dtype=np.float32) if squared_l2 else raw
    return (1.0 - raw).astype(np.float32)


def gallery_topk(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    distance: str = "euclidean",
    query_ids: ArrayLike | None = None,
    gallery_ids: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k in gallery distances: ``(distances float64 (Nq, k), rows int64 (Nq, k))``,
    nearest first; padding (fewer than k items, or a query's own row excluded by the ids) has row
    -1 and distance inf. See :func:`lookalike.knn.topk` for the ids."""
    values, rows = topk(
        queries,
        gallery,
        k,
        distance=create_distance(check_gallery_distance(distance)),
        query_ids=query_ids,
        gallery_ids=gallery_ids,
    )
    rows_np = rows.cpu().numpy()
    out = from_values(values, distance)
    out[rows_np < 0] = np.inf
    return out, rows_np
