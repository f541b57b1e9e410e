"""The gallery store protocol: a persistent set of embeddings with ids, labels, paths and metadata.

A gallery answers ``search(queries, k) -> (distances, ids)`` (nearest first) over the items added
to it, and remembers which model made its embeddings (:class:`GalleryHeader`), so that a search
with another model is refused instead of silently returning nonsense.

Two backends share the protocol (:class:`GalleryStore`), chosen by the location string:

- a folder path: the embedded default, a FAISS index + a Parquet item table + a JSON header in a
  folder (:mod:`lookalike.gallery.faiss_store`);
- ``milvus-lite:PATH.db[#collection]`` (embedded Milvus Lite) or ``milvus://HOST:PORT/COLLECTION``
  (a Milvus server or cluster): :mod:`lookalike.gallery.milvus_store`.

Distances: :data:`lookalike.protocol.GALLERY_DISTANCES`, defined there with their units and
conversions; smaller is closer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = [
    "DISTANCES",
    "GalleryError",
    "GalleryHeader",
    "GalleryLockedError",
    "GalleryStore",
    "check_model",
    "create_gallery",
    "index_recall",
    "open_gallery",
]

from lookalike.protocol import GALLERY_DISTANCES as DISTANCES

FORMAT_VERSION = 1
#: Item columns every store keeps; any other column of ``items`` is free metadata.
ITEM_COLUMNS = ("id", "label", "path")
MILVUS_LITE_PREFIX = "milvus-lite:"
MILVUS_PREFIX = "milvus://"


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

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """The stored (L2-normalised) embeddings, (len(ids), D) float32, in the order of ``ids``."""
        ...

    def set_threshold(self, threshold: float | None, calibration: dict | None = None) -> None: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> GalleryStore: ...

    def __exit__(self, *exc: object) -> None: ...


# ---------------------------------------------------------------------------------------------
# opening


def _backend(location: str | Path) -> str:
    text = str(location)
    if text.startswith(MILVUS_LITE_PREFIX) or text.startswith(MILVUS_PREFIX):
        return "milvus"
    if "://" in text:
        raise GalleryError(
            f"unknown gallery location {text!r}; use a folder path, 'milvus-lite:PATH.db[#collection]' "
            "or 'milvus://HOST:PORT/COLLECTION'"
        )
    return "faiss"


def create_gallery(location: str | Path, header: GalleryHeader, *, overwrite: bool = False) -> GalleryStore:
    """Create an empty gallery at ``location`` and return it open for writing.

    An existing gallery there is refused unless ``overwrite`` (which replaces it atomically).
    """
    if not isinstance(header, GalleryHeader):
        raise TypeError(f"header must be a GalleryHeader, got {type(header).__name__}")
    if _backend(location) == "milvus":
        from lookalike.gallery.milvus_store import MilvusStore

        return MilvusStore.create(str(location), header, overwrite=overwrite)
    from lookalike.gallery.faiss_store import FaissFolderStore

    return FaissFolderStore.create(location, header, overwrite=overwrite)


def open_gallery(location: str | Path, *, writable: bool = False) -> GalleryStore:
    """Open an existing gallery. ``writable`` takes the gallery's writer lock (one writer at a time;
    a second one gets :class:`GalleryLockedError`); readers need no lock and see a consistent snapshot."""
    if _backend(location) == "milvus":
        from lookalike.gallery.milvus_store import MilvusStore

        return MilvusStore.open(str(location), writable=writable)
    from lookalike.gallery.faiss_store import FaissFolderStore

    return FaissFolderStore.open(location, writable=writable)


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


# ---------------------------------------------------------------------------------------------
# helpers shared by the backends


def check_embeddings(
    embeddings: np.ndarray, header: GalleryHeader, *, what: str = "embeddings"
) -> np.ndarray:
    """(N, D) float32, C-contiguous, L2-normalised; raises on a wrong shape, NaN/inf or zero rows."""
    x = np.asarray(embeddings)
    if x.ndim == 1 and x.size == header.embed_dim:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) array, got shape {x.shape}")
    if x.shape[1] != header.embed_dim:
        raise GalleryError(
            f"{what} have D={x.shape[1]} but the gallery holds D={header.embed_dim} embeddings; "
            "use the model the gallery was built with"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{what} must be real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)  # no copy when it already is
    if x.shape[0] == 0:
        return x
    squares = np.einsum("ij,ij->i", x, x)  # NaN/inf in a row make its sum NaN/inf
    bad = ~np.isfinite(squares)
    if bad.any():
        row = int(np.argmax(bad))
        what_is = (
            "NaN or infinite values" if not np.isfinite(x[row]).all() else "values too large for float32"
        )
        raise ValueError(f"{what} row {row} contains {what_is}")
    if (squares == 0).any():
        raise ValueError(f"{what} row {int(np.argmin(squares))} is all zeros and cannot be L2-normalised")
    if np.abs(squares - 1.0).max() <= 1e-5:  # already L2-normalised (a model's output): used as it is
        return x
    return x / np.sqrt(squares)[:, None]  # a new array: the caller's is never changed


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def prepare_items(items: pd.DataFrame, n: int, *, reserved: Sequence[str] = ()) -> pd.DataFrame:
    """Validate a batch of item rows: id (str; generated where absent/empty), label (str), path (str or
    None) first, then the metadata columns. Raises ValueError naming the row/column on bad input."""
    if not isinstance(items, pd.DataFrame):
        raise TypeError(f"items must be a pandas DataFrame, got {type(items).__name__}")
    if len(items) != n:
        raise ValueError(
            f"items has {len(items)} rows but there are {n} embeddings; give one row per embedding"
        )
    bad_names = [c for c in items.columns if not isinstance(c, str) or not c]
    if bad_names:
        raise ValueError(f"item column names must be non-empty strings, got {bad_names!r}")
    clash = [c for c in items.columns if c in reserved or c.startswith("_")]
    if clash:
        raise ValueError(f"item column(s) {', '.join(clash)} are reserved by the store; rename them")
    if items.columns.duplicated().any():
        dup = items.columns[items.columns.duplicated()].tolist()
        raise ValueError(f"item columns are duplicated: {dup}")
    if "label" not in items.columns:
        raise ValueError(f"items need a 'label' column; got columns {list(items.columns)}")
    df = items.reset_index(drop=True)
    ids = _clean_ids(df["id"] if "id" in df.columns else None, n)
    labels = df["label"]
    missing = labels.isna().to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(f"items row {row} (id {ids[row]!r}) has no label; every item needs one")
    # id, label and path stay plain Python strings (None where missing), not pandas' string dtype
    paths = _strings(df["path"].to_numpy(dtype=object)) if "path" in df.columns else [None] * n
    out = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype=object),
            "label": pd.Series(_strings(labels.to_numpy(dtype=object)), dtype=object),
            "path": pd.Series(paths, dtype=object),
        }
    )
    for col in df.columns:
        if col not in ITEM_COLUMNS:
            out[col] = (
                df[col].to_numpy()
                if not isinstance(df[col].dtype, pd.api.extensions.ExtensionDtype)
                else df[col].array
            )
    return out


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def _clean_ids(column: pd.Series | None, n: int) -> np.ndarray:
    values = np.full(n, None, dtype=object) if column is None else column.to_numpy(dtype=object)
    if n and pd.api.types.infer_dtype(values, skipna=False) == "string":  # the common case, vectorised
        ids = values.copy()
        for i in np.flatnonzero(pd.Series(values, dtype=object).str.strip().eq("").to_numpy()):
            ids[i] = uuid.uuid4().hex
    else:
        ids = np.empty(n, dtype=object)
        for i, value in enumerate(values):
            if _is_missing(value) or (isinstance(value, str) and not value.strip()):
                ids[i] = uuid.uuid4().hex
            elif isinstance(value, float) and value.is_integer():
                ids[i] = str(int(value))
            else:
                ids[i] = str(value)
    duplicated = pd.Index(ids, dtype=object).duplicated()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise ValueError(f"duplicate id {ids[row]!r} in the items (row {row}); ids must be unique")
    return ids


def _strings(values: np.ndarray) -> list:
    """Python strings, None where missing."""
    if len(values) and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.tolist()
    return [None if _is_missing(v) else str(v) for v in values]


def merge_items(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Append ``new`` rows to ``old``; a metadata column present on one side only becomes nullable on
    the other (ints -> Int64, bools -> boolean) instead of silently turning into floats."""
    if len(old) == 0:
        return new.reset_index(drop=True)
    old, new = old.copy(), new.copy()
    for a, b in ((old, new), (new, old)):
        for col in a.columns:
            if col in b.columns:
                continue
            dtype = a[col].dtype
            if pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.BooleanDtype):
                a[col] = a[col].astype("boolean")
            elif pd.api.types.is_integer_dtype(dtype) and not isinstance(
                dtype, pd.api.extensions.ExtensionDtype
            ):
                a[col] = a[col].astype("Int64")
    return pd.concat([old, new], ignore_index=True)


def to_distance(raw: np.ndarray, distance: str, *, squared_l2: bool = True) -> np.ndarray:
    """Backend scores -> lookalike distances: squared L2 -> sqrt; inner product -> 1 - similarity."""
    raw = np.asarray(raw, dtype=np.float32)
    if distance == "euclidean":
        return np.sqrt(np.maximum(raw, 0.0), dtype=np.float32) if squared_l2 else raw
    return (1.0 - raw).astype(np.float32)


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
    all_ids = store.items()["id"].to_numpy(dtype=object)
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


class WriterLock:
    """An exclusive, non-blocking lock on the file ``path``; the OS releases it if the writer dies."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_fd(self._fd)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip()
            os.close(self._fd)
            self._fd = None
            raise GalleryLockedError(
                f"{what} is being written by another process ({holder or 'unknown'}); "
                "one writer at a time: wait for it to finish, or open the gallery read-only"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()}".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


try:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _lock_fd(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
