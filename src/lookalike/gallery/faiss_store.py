"""The embedded gallery store: a folder holding a FAISS index, a Parquet item table and a JSON header.

Layout of a gallery folder::

    gallery.json              header + pointer to the current generation (replaced atomically)
    index-000007.faiss        the FAISS index of generation 7
    items-000007.parquet      its item table: id, label, path, metadata, and the FAISS id (_fid)
    vectors-000007.npy        the raw vectors (approximate indexes only; exact ones hold them)
    .lock                     the writer lock (flock; released by the OS when a writer dies)

Every ``add``/``remove`` writes a new generation's files next to the current ones, flushes them to
disk, then switches ``gallery.json`` to them with one ``os.replace``. A process killed at any point
leaves either the old pointer (old items, stray files of the unfinished generation are ignored and
cleaned up by the next writer) or the new one (new items, complete files): never a mix. Readers read
the pointer, then that generation's files, into memory, so a reader that opened generation N keeps
answering while a writer publishes N+1; the previous generation's files stay on disk until the
next switch, so a reader that has just read the pointer still finds them (and re-reads the pointer
if not). :meth:`FaissFolderStore.refresh` moves a reader to the newest generation.

Ids: FAISS holds int64 ids (``_fid``, increasing in insertion order, never reused); the item table
maps them to the string ids. Exact and HNSW/PQ-style indexes are wrapped in ``IndexIDMap2``; IVF
indexes store the ids themselves. Indexes that cannot remove vectors (HNSW) are rebuilt from the raw
vectors on ``remove``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.gallery.backend import WriterLock, check_embeddings, to_distance
from lookalike.gallery.items import merge_items, prepare_items
from lookalike.gallery.store import FORMAT_VERSION, GalleryError, GalleryHeader, check_k

__all__ = ["POINTER_FILE", "FaissFolderStore"]

POINTER_FILE = "gallery.json"
LOCK_FILE = ".lock"
FORMAT_NAME = "lookalike-gallery"
FID = "_fid"
_GENERATION_FILE = re.compile(r"^(index|items|vectors)-(\d+)\.(faiss|parquet|npy)$")
_HNSW_EF_SEARCH = 128
_OPEN_RETRIES = 20


def _crash_point(name: str) -> None:
    """A named point of a write (``add:start``, ``write:index``, ``write:items``, ``write:vectors``,
    ``publish:before``, ``publish:after``, ``cleanup:after``). Does nothing; the crash-safety tests
    replace it to kill the process exactly there."""


# ---------------------------------------------------------------------------------------------
# files


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        _fsync(folder)


def _write_pointer(folder: Path, pointer: dict[str, Any]) -> None:
    target = folder / POINTER_FILE
    tmp = folder / f".{POINTER_FILE}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(pointer, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        _crash_point("publish:before")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    _crash_point("publish:after")


def _read_pointer(folder: Path) -> dict[str, Any]:
    path = folder / POINTER_FILE
    if not folder.exists():
        raise GalleryError(
            f"gallery {folder} does not exist; build one with `lookalike index build --out {folder}`"
        )
    if not folder.is_dir():
        raise GalleryError(f"{folder} is a file, not a gallery folder (a folder holding {POINTER_FILE})")
    if not path.is_file():
        raise GalleryError(
            f"{folder} is not a lookalike gallery (no {POINTER_FILE} in it); "
            f"build one with `lookalike index build --out {folder}`"
        )
    try:
        pointer = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GalleryError(f"{path} is not valid JSON ({e}); it is not a lookalike gallery header") from e
    if not isinstance(pointer, dict) or pointer.get("format") != FORMAT_NAME:
        raise GalleryError(f'{path} is not a lookalike gallery header (expected "format": "{FORMAT_NAME}")')
    missing = [key for key in ("header", "generation", "index", "items", "next_fid") if key not in pointer]
    if missing:
        raise GalleryError(f"{path} lacks {', '.join(missing)}; the gallery header is damaged")
    return pointer


def _ours(name: str) -> bool:
    """A file this store writes: what an interrupted create may leave in a folder without a pointer."""
    temp = name.startswith(f".{POINTER_FILE}.") and name.endswith(".tmp")
    return name == LOCK_FILE or temp or _GENERATION_FILE.match(name) is not None


def _faiss_message(error: Exception) -> str:
    text = str(error).strip()
    if "failed: " in text:
        return text.split("failed: ", 1)[1]
    return text.rsplit(": ", 1)[-1] if text.startswith("Error in") else text


def _check_create(folder: Path, *, overwrite: bool) -> bool:
    """Whether a gallery is there (to be replaced); refuses a file, a gallery without ``overwrite``
    and a folder holding other things."""
    if folder.exists() and not folder.is_dir():
        raise GalleryError(f"{folder} is a file; a gallery is a folder: choose another path")
    exists = (folder / POINTER_FILE).is_file()
    if exists and not overwrite:
        raise GalleryError(
            f"a gallery already exists at {folder}; pass overwrite=True (--overwrite) to replace it"
        )
    if not exists and folder.is_dir() and any(not _ours(p.name) for p in folder.iterdir()):
        raise GalleryError(f"{folder} is a non-empty folder but not a gallery; choose a new or empty folder")
    return exists


# ---------------------------------------------------------------------------------------------
# the FAISS index


def _metric(header: GalleryHeader) -> int:
    return faiss.METRIC_L2 if header.distance == "euclidean" else faiss.METRIC_INNER_PRODUCT


def _new_index(header: GalleryHeader) -> faiss.Index:
    factory = header.index_factory
    if "IDMap" in factory:
        raise GalleryError(f"index factory {factory!r}: leave out IDMap, the store maps ids itself")
    try:
        index = faiss.index_factory(header.embed_dim, factory, _metric(header))
    except RuntimeError as e:
        raise GalleryError(
            f"invalid FAISS index factory {factory!r} for D={header.embed_dim}: {_faiss_message(e)}; "
            "examples: 'Flat' (exact), 'HNSW32', 'IVF1024,Flat', 'IVF1024,PQ32' (PQm needs D divisible by m)"
        ) from e
    if faiss.try_extract_index_ivf(index) is None:
        index = faiss.IndexIDMap2(index)
    _tune(index)
    return index


def _tune(index: faiss.Index) -> None:
    """Search-time settings for approximate indexes: HNSW efSearch, IVF nprobe (recall over speed)."""
    space = faiss.ParameterSpace()
    with contextlib.suppress(RuntimeError):
        space.set_index_parameter(index, "efSearch", _HNSW_EF_SEARCH)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = int(min(ivf.nlist, max(16, ivf.nlist // 8)))


def _train(index: faiss.Index, x: np.ndarray, factory: str) -> None:
    ivf = faiss.try_extract_index_ivf(index)
    need = int(ivf.nlist) if ivf is not None else 1
    if x.shape[0] < need:
        raise ValueError(
            f"index factory {factory!r} must be trained on the first add, which needs at least {need} "
            f"vectors (FAISS recommends {39 * need}), got {x.shape[0]}; add more at once, or use a "
            "smaller index (fewer IVF lists) or 'Flat'"
        )
    try:
        index.train(x)
    except RuntimeError as e:
        raise ValueError(
            f"index factory {factory!r} could not be trained on {x.shape[0]} vectors: {_faiss_message(e)}; "
            "add more vectors in the first add, or use a smaller index or 'Flat'"
        ) from e


def _flat_vectors(index: faiss.Index, n: int, d: int) -> np.ndarray:
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap2) else index)
    if n == 0:
        return np.empty((0, d), dtype=np.float32)
    return faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)


# ---------------------------------------------------------------------------------------------
# the store


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """One generation of a gallery, read into memory. Never changed once built: a write builds the
    next snapshot (on a copy of the index) and swaps the store's reference to it, so searches need no
    lock and never see a half-applied write."""

    header: GalleryHeader
    generation: int
    next_fid: int
    index: faiss.Index
    items: pd.DataFrame  # id, label, path, metadata..., _fid (ascending)
    vectors: np.ndarray | None  # (n, D) memory map, approximate indexes only
    files: dict[str, str | None]
    fids: np.ndarray = dataclasses.field(init=False)
    ids: np.ndarray = dataclasses.field(init=False)
    positions: pd.Index = dataclasses.field(init=False)
    # what search() asks: the index inside IndexIDMap2, whose labels are positions = item rows (the id map
    # would translate them in an OpenMP loop, which costs ~30 ms a query on a busy machine); IVF: itself
    searcher: faiss.Index = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        inner = faiss.downcast_index(self.index.index) if isinstance(self.index, faiss.IndexIDMap2) else None
        object.__setattr__(self, "searcher", self.index if inner is None else inner)
        ids = self.items["id"].to_numpy(dtype=object)
        object.__setattr__(self, "fids", self.items[FID].to_numpy(dtype=np.int64))
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "positions", pd.Index(ids, dtype=object))

    def rows(self, ids: Sequence[str], where: Path) -> np.ndarray:
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of ids, not one string; wrap it in a list")
        keys = [str(i) for i in ids]
        rows = self.positions.get_indexer(keys) if keys else np.empty(0, dtype=np.int64)
        if (rows < 0).any():
            unknown = keys[int(np.argmax(rows < 0))]
            raise KeyError(f"unknown id {unknown!r}: no such item in gallery {where}")
        return rows


class FaissFolderStore:
    """A gallery folder (see the module docstring). Open it with :func:`lookalike.gallery.open_gallery`
    or :func:`~lookalike.gallery.create_gallery`.

    Searches and reads may run from several threads at once, also while a write is in progress (they
    see the snapshot before it until it is published); writes are serialised.
    """

    def __init__(self, folder: Path, snapshot: _Snapshot, lock: WriterLock | None) -> None:
        self.folder = folder
        self._lock = lock
        self._mutex = threading.RLock()  # serialises writes and refreshes, never searches
        self._closed = False
        self._snap = snapshot

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        location: str | Path,
        header: GalleryHeader,
        *,
        overwrite: bool = False,
        embeddings: np.ndarray | None = None,
        items: pd.DataFrame | None = None,
    ) -> FaissFolderStore:
        """A new gallery in ``folder``, holding ``embeddings`` and ``items`` when given. The first
        generation is published complete or not at all: with ``overwrite``, the gallery it replaces is
        left byte-identical when building the new one fails (a bad index factory, too few vectors to
        train on, bad items)."""
        folder = Path(location)
        exists = _check_create(folder, overwrite=overwrite)
        index = _new_index(header)  # checks the factory string before anything is written
        folder.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(folder / LOCK_FILE, f"gallery {folder}")
        try:
            generation = 0
            if exists:
                with contextlib.suppress(GalleryError):
                    generation = int(_read_pointer(folder)["generation"])
            items_frame = pd.DataFrame(
                {
                    "id": pd.Series([], dtype=object),
                    "label": pd.Series([], dtype=object),
                    "path": pd.Series([], dtype=object),
                    FID: pd.Series([], dtype=np.int64),
                }
            )
            vectors = None if header.is_exact else np.empty((0, header.embed_dim), dtype=np.float32)
            store = cls(folder, _Snapshot(header, generation, 0, index, items_frame, vectors, {}), lock)
            if embeddings is not None or items is not None:
                store.add(embeddings, items)  # the new items and header published as one generation
            if not store._snap.files:  # nothing published yet: no items, or an empty batch
                store._publish(
                    index, _arrow_table(items_frame), items_frame, vectors, next_fid=0, header=header
                )
        except BaseException:
            lock.release()
            raise
        return store

    @classmethod
    def open(cls, location: str | Path, *, writable: bool = False) -> FaissFolderStore:
        folder = Path(location)
        _read_pointer(folder)  # a clear error for a missing/foreign gallery before anything else
        lock = WriterLock(folder / LOCK_FILE, f"gallery {folder}") if writable else None
        try:
            snapshot = cls._load(folder)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(folder, snapshot, lock)

    @staticmethod
    def _load(folder: Path) -> _Snapshot:
        last_error: Exception | None = None
        last_generation = None
        for _ in range(_OPEN_RETRIES):
            pointer = _read_pointer(folder)
            try:
                return FaissFolderStore._load_generation(folder, pointer)
            except FileNotFoundError as e:  # a writer switched generations and cleaned up meanwhile
                if pointer["generation"] == last_generation:
                    last_error = e
                    break
                last_generation, last_error = pointer["generation"], e
        raise GalleryError(
            f"gallery {folder} is damaged: generation {last_generation} lists a file that is missing "
            f"({last_error}); restore the folder from a backup or rebuild it"
        )

    @staticmethod
    def _load_generation(folder: Path, pointer: dict[str, Any]) -> _Snapshot:
        header = GalleryHeader.from_dict(pointer["header"], source=str(folder / POINTER_FILE))
        index_path = folder / pointer["index"]
        if not index_path.is_file():
            raise FileNotFoundError(index_path)
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as e:
            raise GalleryError(f"{index_path} is not a readable FAISS index ({_faiss_message(e)})") from e
        items = pq.read_table(folder / pointer["items"]).to_pandas()
        for col in ("id", "label", "path"):  # plain Python strings (None where missing), as they went in
            items[col] = pd.Series(
                [None if v is None or v != v else str(v) for v in items[col]], dtype=object
            )
        vectors = None
        if pointer.get("vectors"):
            vectors = np.load(folder / pointer["vectors"], mmap_mode="r")
        if (
            index.d != header.embed_dim
            or index.ntotal != len(items)
            or (vectors is not None and vectors.shape != (len(items), header.embed_dim))
        ):
            raise GalleryError(
                f"gallery {folder} is inconsistent: header D={header.embed_dim}, index D={index.d} with "
                f"{index.ntotal} vectors, {len(items)} items; rebuild it"
            )
        _tune(index)
        files = {"index": pointer["index"], "items": pointer["items"], "vectors": pointer.get("vectors")}
        return _Snapshot(
            header, int(pointer["generation"]), int(pointer["next_fid"]), index, items, vectors, files
        )

    @property
    def header(self) -> GalleryHeader:
        return self._snap.header

    @property
    def generation(self) -> int:
        """The generation this store reads (it grows by one with every published write)."""
        return self._snap.generation

    def refresh(self) -> bool:
        """Move to the newest published generation; True when it changed."""
        with self._mutex:
            self._check_open()
            pointer = _read_pointer(self.folder)
            if pointer["generation"] == self._snap.generation and pointer["header"] == self.header.to_dict():
                return False
            self._snap = self._load(self.folder)
            return True

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._snap.ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        snap = self._snap  # one consistent generation for the whole call
        self._check_open()
        k = check_k(k)
        q = check_embeddings(queries, snap.header, what="queries")
        kk = min(k, len(snap.ids))
        if kk == 0 or q.shape[0] == 0:
            return np.empty((q.shape[0], kk), dtype=np.float32), np.empty((q.shape[0], kk), dtype=object)
        raw, labels = snap.searcher.search(q, kk)
        distances = to_distance(raw, snap.header.distance)
        missing = labels < 0
        pos = labels if snap.searcher is not snap.index else np.searchsorted(snap.fids, labels)
        if missing.any():  # an approximate index may find fewer than k
            pos[missing] = 0
            ids = snap.ids[pos]
            ids[missing] = None
            distances[missing] = np.inf
            return distances, ids
        return distances, snap.ids[pos]

    def items(self, ids: Sequence[str] | None = None) -> pd.DataFrame:
        snap = self._snap
        rows = snap.items if ids is None else snap.items.iloc[snap.rows(ids, self.folder)]
        return rows.drop(columns=FID).reset_index(drop=True)

    def labels(self, ids: Sequence[str] | None = None) -> pd.Series:
        """Labels by id: the label column of the in-memory table, no path or metadata (all: the column
        itself, which pandas copies when the result is changed, so the gallery stays as it is)."""
        snap = self._snap
        if ids is None:
            return snap.items["label"].set_axis(snap.positions.rename("id"))
        column = snap.items["label"].to_numpy(dtype=object)
        rows = snap.rows(ids, self.folder)
        return pd.Series(column[rows], index=pd.Index(snap.ids[rows], name="id"), name="label", dtype=object)

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        snap = self._snap
        n, d = len(snap.ids), snap.header.embed_dim
        allv = _flat_vectors(snap.index, n, d) if snap.vectors is None else snap.vectors
        return np.array(allv if ids is None else allv[snap.rows(ids, self.folder)], dtype=np.float32)

    # -- writing ------------------------------------------------------------------------------

    def add(self, embeddings: np.ndarray, items: pd.DataFrame) -> list[str]:
        with self._mutex:
            self._check_writable()
            _crash_point("add:start")
            snap = self._snap
            x = check_embeddings(embeddings, snap.header)
            new = prepare_items(items, x.shape[0], reserved=(FID,))
            known = snap.positions.get_indexer(new["id"].tolist())
            if (known >= 0).any():
                dup = new["id"].iloc[int(np.argmax(known >= 0))]
                raise ValueError(
                    f"duplicate id {dup!r}: already in gallery {self.folder}; ids must be unique"
                )
            if len(new) == 0:
                return []
            fids = np.arange(snap.next_fid, snap.next_fid + len(new), dtype=np.int64)
            new[FID] = fids
            merged = merge_items(snap.items, new)
            table = _arrow_table(merged)  # refuses metadata Parquet cannot store, before any change
            index = faiss.clone_index(snap.index)  # the published snapshot stays untouched
            _tune(index)
            if not index.is_trained:
                _train(index, x, snap.header.index_factory)
            index.add_with_ids(x, fids)
            vectors = None if snap.vectors is None else _Concat(snap.vectors, x)
            self._publish(index, table, merged, vectors, next_fid=int(fids[-1]) + 1)
            return new["id"].tolist()

    def remove(self, ids: Sequence[str]) -> int:
        with self._mutex:
            self._check_writable()
            snap = self._snap
            rows = np.unique(snap.rows(ids, self.folder))
            if rows.size == 0:
                return 0
            keep = np.ones(len(snap.ids), dtype=bool)
            keep[rows] = False
            items = snap.items.iloc[keep].reset_index(drop=True)
            if snap.vectors is None or faiss.try_extract_index_ivf(snap.index) is not None:
                index = faiss.clone_index(snap.index)  # exact and IVF indexes remove in place
                _tune(index)
                index.remove_ids(np.ascontiguousarray(snap.fids[rows]))
            else:  # HNSW and the like cannot remove: rebuild from the raw vectors
                index = self._rebuilt(snap, keep)
            vectors = None if snap.vectors is None else _Take(snap.vectors, keep)
            self._publish(index, _arrow_table(items), items, vectors, next_fid=snap.next_fid)
            return int(rows.size)

    def set_threshold(self, threshold: float | None, calibration: dict | None = None) -> None:
        with self._mutex:
            self._check_writable()
            snap = self._snap
            header = dataclasses.replace(
                snap.header,
                threshold=None if threshold is None else float(threshold),
                calibration=calibration,
            )
            pointer = self._pointer(header, snap.generation, snap.files, snap.next_fid, len(snap.ids))
            _write_pointer(self.folder, pointer)
            self._snap = dataclasses.replace(snap, header=header)

    @staticmethod
    def _rebuilt(snap: _Snapshot, keep: np.ndarray) -> faiss.Index:
        assert snap.vectors is not None, "exact indexes remove in place"
        index = _new_index(snap.header)
        x = np.ascontiguousarray(snap.vectors[keep], dtype=np.float32)
        if x.shape[0] and not index.is_trained:
            _train(index, x, snap.header.index_factory)
        if x.shape[0]:
            index.add_with_ids(x, np.ascontiguousarray(snap.fids[keep]))
        return index

    def _pointer(
        self, header: GalleryHeader, generation: int, files: dict[str, str | None], next_fid: int, count: int
    ) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "header": header.to_dict(),
            "generation": generation,
            "count": count,
            "next_fid": next_fid,
            **files,
        }

    def _publish(
        self,
        index: faiss.Index,
        table: pa.Table,
        frame: pd.DataFrame,
        vectors: np.ndarray | _Concat | _Take | None,
        *,
        next_fid: int,
        header: GalleryHeader | None = None,
    ) -> None:
        """Write the next generation's files, switch the pointer to them, then clean up."""
        header = header or self.header
        generation = self._snap.generation + 1
        files: dict[str, str | None] = {
            "index": f"index-{generation:06d}.faiss",
            "items": f"items-{generation:06d}.parquet",
            "vectors": None if vectors is None else f"vectors-{generation:06d}.npy",
        }
        try:
            mapped = self._write_generation(index, table, vectors, files, header.embed_dim)
            _write_pointer(self.folder, self._pointer(header, generation, files, next_fid, int(index.ntotal)))
        except Exception:  # nothing was published: the folder is left as it was
            for name in files.values():
                if name is not None:
                    with contextlib.suppress(OSError):
                        (self.folder / name).unlink()
            raise
        self._snap = _Snapshot(header, generation, next_fid, index, frame, mapped, files)
        self._cleanup(keep={generation, generation - 1})
        _crash_point("cleanup:after")

    def _write_generation(
        self,
        index: faiss.Index,
        table: pa.Table,
        vectors: np.ndarray | _Concat | _Take | None,
        files: dict[str, str | None],
        d: int,
    ) -> np.ndarray | None:
        index_path = self.folder / str(files["index"])
        faiss.write_index(index, str(index_path))
        _fsync(index_path)
        _crash_point("write:index")
        items_path = self.folder / str(files["items"])
        pq.write_table(table, items_path)
        _fsync(items_path)
        _crash_point("write:items")
        if vectors is None:
            return None
        mapped = _write_vectors(self.folder / str(files["vectors"]), vectors, d)
        _crash_point("write:vectors")
        return mapped

    def _cleanup(self, *, keep: set[int]) -> None:
        for path in self.folder.iterdir():
            match = _GENERATION_FILE.match(path.name)
            stale_tmp = _ours(path.name) and path.name.endswith(".tmp")
            if stale_tmp or (match and int(match.group(2)) not in keep):
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- life cycle ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryError(f"gallery {self.folder} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._lock is None:
            raise GalleryError(
                f"gallery {self.folder} is open read-only; open it with writable=True to change it"
            )

    @property
    def writable(self) -> bool:
        return self._lock is not None and not self._closed

    def close(self) -> None:
        with self._mutex:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._closed = True

    def __enter__(self) -> FaissFolderStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._lock is not None:
                self._lock.release()

    def __repr__(self) -> str:
        mode = "closed" if self._closed else ("writable" if self._lock else "read-only")
        return (
            f"FaissFolderStore({str(self.folder)!r}, {len(self)} items, D={self.header.embed_dim}, "
            f"{self.header.distance}, {self.header.index_factory!r}, generation {self.generation}, {mode})"
        )


# ---------------------------------------------------------------------------------------------
# item table and raw vectors


def _arrow_table(items: pd.DataFrame) -> pa.Table:
    """The item table as Arrow; a metadata column Parquet cannot store is named in the error."""
    try:
        return pa.Table.from_pandas(items, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError) as e:
        for col in items.columns:
            try:
                pa.Table.from_pandas(items[[col]], preserve_index=False)
            except Exception as col_error:
                raise ValueError(
                    f"metadata column {col!r} cannot be stored in Parquet ({col_error}); give each metadata "
                    "column values of one type (numbers, strings, booleans, timestamps)"
                ) from e
        raise ValueError(f"the item table cannot be stored in Parquet: {e}") from e


class _Concat:
    """Old vectors followed by new ones, written without holding both in memory at once."""

    def __init__(self, old: np.ndarray, new: np.ndarray) -> None:
        self.parts = (old, new)
        self.shape = (old.shape[0] + new.shape[0], new.shape[1])

    def chunks(self) -> Iterator[np.ndarray]:
        for part in self.parts:
            yield from _chunked(part)


class _Take:
    """The rows of ``vectors`` where ``keep`` is True."""

    def __init__(self, vectors: np.ndarray, keep: np.ndarray) -> None:
        self.vectors, self.keep = vectors, keep
        self.shape = (int(keep.sum()), vectors.shape[1])

    def chunks(self) -> Iterator[np.ndarray]:
        step = 65536
        for start in range(0, self.vectors.shape[0], step):
            mask = self.keep[start : start + step]
            yield np.asarray(self.vectors[start : start + step])[mask]


def _chunked(x: np.ndarray, step: int = 65536) -> Iterator[np.ndarray]:
    for start in range(0, x.shape[0], step):
        yield np.asarray(x[start : start + step])


def _write_vectors(path: Path, vectors: np.ndarray | _Concat | _Take, d: int) -> np.ndarray:
    source = vectors if isinstance(vectors, _Concat | _Take) else None
    shape = vectors.shape
    if shape[0] == 0:
        with open(path, "wb") as f:
            np.save(f, np.empty((0, d), dtype=np.float32))
        _fsync(path)
        return np.load(path)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(shape[0], d))
    start = 0
    for chunk in source.chunks() if source is not None else _chunked(np.asarray(vectors)):
        out[start : start + chunk.shape[0]] = chunk
        start += chunk.shape[0]
    out.flush()
    del out
    _fsync(path)
    return np.load(path, mmap_mode="r")
