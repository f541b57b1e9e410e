"""The gallery store protocol: a persistent set of embeddings with ids, labels, paths and metadata.

A gallery answers ``search(queries, k) -> (distances, ids)`` (nearest first) over the items added
to it, and remembers which model made its embeddings (:class:`GalleryHeader`), so that a search
with another model is refused instead of silently returning nonsense.

Two backends share the protocol (:class:`GalleryStore`), chosen by the location string
(:mod:`lookalike.gallery.location`; :mod:`lookalike.gallery.opening` creates and opens them):

- a folder path: the embedded default, a FAISS index + a Parquet item table + a JSON header in a
  folder (:mod:`lookalike.gallery.faiss_store`);
- ``milvus-lite:PATH.db[#collection]`` (embedded Milvus Lite) or ``milvus://HOST:PORT/COLLECTION``
  (a Milvus server or cluster): :mod:`lookalike.gallery.milvus_store`.

This module is the protocol only and imports no backend; what the backends share lives in
:mod:`lookalike.gallery.backend` and :mod:`lookalike.gallery.items`.

Distances: :data:`lookalike.protocol.GALLERY_DISTANCES`, defined there with their units and
conversions; smaller is closer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DISTANCES",
    "GalleryError",
    "GalleryHeader",
    "GalleryLockedError",
    "GalleryStore",
    "check_k",
    "check_model",
    "index_recall",
]

from lookalike.protocol import GALLERY_DISTANCES as DISTANCES

FORMAT_VERSION = 1
#: Item columns every store keeps; any other column of ``items`` is free metadata.
ITEM_COLUMNS = ("id", "label", "path")


class GalleryError(ValueError):
    """A missing or foreign gallery, a dimension or model mismatch: the message says what was wrong
    and what would be right."""


class GalleryLockedError(GalleryError):
    """Another writer holds the gallery (one writer at a time)."""


@dataclass(frozen=True)
class GalleryHeader:
    """What a gallery knows about itself: how its embeddings were made and how to compare them."""

    embed_dim: int
    distance: str = "euclidean"
    model_fingerprint: str | None = None
    preprocessing: dict | None = None
    model_source: str | None = None
    threshold: float | None = None
    calibration: dict | None = None
    index_factory: str = "Flat"
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.embed_dim, bool) or not isinstance(self.embed_dim, int | np.integer):
            raise GalleryError(f"embed_dim must be a positive integer, got {self.embed_dim!r}")
        if self.embed_dim < 1:
            raise GalleryError(f"embed_dim must be a positive integer, got {self.embed_dim}")
        if self.distance not in DISTANCES:
            raise GalleryError(f"unknown distance {self.distance!r}; valid: {', '.join(DISTANCES)}")
        if self.threshold is not None and not math.isfinite(float(self.threshold)):
            raise GalleryError(f"threshold must be a finite number or None, got {self.threshold!r}")
        if not isinstance(self.index_factory, str) or not self.index_factory.strip():
            raise GalleryError(
                f"index_factory must be a FAISS factory string such as 'Flat' or 'HNSW32', "
                f"got {self.index_factory!r}"
            )
        if self.format_version > FORMAT_VERSION:
            raise GalleryError(
                f"gallery format version {self.format_version} is newer than this lookalike reads "
                f"(<= {FORMAT_VERSION}); upgrade lookalike"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "header") -> GalleryHeader:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise GalleryError(
                f"{source}: unknown header field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))} "
                "(written by a newer lookalike?)"
            )
        if "embed_dim" not in data:
            raise GalleryError(f"{source}: the header has no embed_dim")
        return cls(**data)

    @property
    def is_exact(self) -> bool:
        return self.index_factory.replace(" ", "") in ("Flat", "IDMap,Flat", "IDMap2,Flat")


@runtime_checkable
class GalleryStore(Protocol):
    """The protocol both backends implement (see the module docstring)."""

    header: GalleryHeader

    def add(self, embeddings: np.ndarray, items: pd.DataFrame) -> list[str]:
        """Add (N, D) float32 ``embeddings`` with their N ``items`` rows (columns id (optional: generated
        when absent or empty), label, path (optional), + metadata). Returns the ids. A duplicate id
        (within the batch or already stored) raises ValueError naming it, and nothing changes."""
        ...

    def remove(self, ids: Sequence[str]) -> int:
        """Remove items by id; returns how many. An unknown id raises KeyError naming it, nothing changes."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> ((Q, k') float32 distances ascending, (Q, k') object array of str ids),
        k' = min(k, len(self))."""
        ...

    def items(self, ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows in the order of ``ids`` (all, in insertion order, when None): id, label, path, + metadata."""
        ...

    def labels(self, ids: Sequence[str] | None = None) -> pd.Series:
        """Labels (str) indexed by id (str), in the order of ``ids`` (all, in insertion order, the order
        of ``items()`` and ``vectors()``, when None): the labels-only read, which reads no path or
        metadata. An unknown id raises KeyError naming it."""
        ...

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """The stored (L2-normalised) embeddings, (len(ids), D) float32, in the order of ``ids``."""
        ...

    def set_threshold(self, threshold: float | None, calibration: dict | None = None) -> None: ...

    def refresh(self) -> bool:
        """Move to what another process has published since this store was opened (a reader of a
        folder store keeps its snapshot until then); True when something changed."""
        ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> GalleryStore: ...

    def __exit__(self, *exc: object) -> None: ...


# ---------------------------------------------------------------------------------------------
# functions of the protocol


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_model(header: GalleryHeader, fingerprint: str) -> None:
    """Raise :class:`GalleryError` when ``fingerprint`` is not the model the gallery was built with.

    A gallery without a recorded fingerprint (built from bare embeddings) accepts any model.
    """
    if header.model_fingerprint is None or header.model_fingerprint == fingerprint:
        return
    built = header.model_source or "an unrecorded model"
    raise GalleryError(
        f"this gallery was built with another model ({built}, fingerprint {header.model_fingerprint[:12]}), "
        f"not the one given (fingerprint {fingerprint[:12]}); search it with the same model and "
        "preprocessing, or rebuild it with `lookalike index build`"
    )


def index_recall(store: GalleryStore, sample: int = 1000, k: int = 10, seed: int = 0) -> float:
    """Recall@k of the store's (approximate) index against exact search, on ``sample`` stored items
    used as queries (each query's own item left out of both result lists). 1.0 for an exact index.

    The exact reference is :func:`lookalike.knn.topk` over all stored vectors.
    """
    from lookalike.knn import topk

    k = check_k(k)
    n = len(store)
    if n < 2:
        return 1.0
    all_ids = store.labels().index.to_numpy(dtype=object)  # in the order of vectors()
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n, size=min(int(sample), n), replace=False))
    gallery = store.vectors()
    queries = gallery[chosen]
    k_eff = min(k, n - 1)
    metric = "euclidean" if store.header.distance == "euclidean" else "cosine"
    _, exact_rows = topk(queries, gallery, k_eff, distance=metric, query_ids=chosen, gallery_ids=np.arange(n))
    exact_rows = exact_rows.numpy()
    _, approx_ids = store.search(queries, k_eff + 1)
    hits = 0
    for row, q in enumerate(chosen):
        own = all_ids[q]
        approx = [i for i in approx_ids[row] if i is not None and i != own][:k_eff]
        exact = {all_ids[j] for j in exact_rows[row] if j >= 0}
        hits += len(exact.intersection(approx))
    return hits / (len(chosen) * k_eff)
