"""The gallery store on Milvus: a Milvus server or cluster, or the embedded Milvus Lite, via pymilvus.

Locations:

- ``milvus-lite:PATH.db`` or ``milvus-lite:PATH.db#COLLECTION``: Milvus Lite, a local file;
- ``milvus://HOST:PORT/COLLECTION`` (``milvus://USER:PASSWORD@HOST:PORT/COLLECTION`` with
  authentication): a Milvus server or cluster. ``LOOKALIKE_MILVUS_TOKEN`` in the environment is
  used as the token when the location has no user.

One gallery is one collection with the fields ``id`` (VARCHAR primary key), ``label``, ``path``
(JSON ``{"v": path or null}``), ``seq`` (insertion order), ``meta`` (JSON: the metadata columns)
and ``vector``.
The header, the metadata columns' dtypes and the commit mark live in the collection's properties.

Crash safety: Milvus has no multi-request transaction, so ``add`` inserts its rows with ``seq`` at or
above the committed mark and then moves the mark past them (one property update); every read
filters ``seq < mark``. A writer killed half-way leaves invisible rows, which the next writer deletes
when it opens the gallery. ``remove`` is one delete request.

Distances follow :mod:`lookalike.gallery.store`: Milvus' L2 is squared (its square root is taken),
its inner product on normalised vectors is the cosine similarity (1 - it is returned).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd

from lookalike.gallery.backend import WriterLock, check_embeddings, to_distance
from lookalike.gallery.items import check_column_count, check_id, prepare_items
from lookalike.gallery.location import MILVUS_LITE_PREFIX, MILVUS_PREFIX
from lookalike.gallery.store import GalleryError, GalleryHeader, check_k

__all__ = ["DEFAULT_COLLECTION", "MilvusLocation", "MilvusStore", "milvus_index_params", "parse_location"]

DEFAULT_COLLECTION = "lookalike_gallery"
FORMAT_NAME = "lookalike-gallery"
_PROP_FORMAT = "lookalike.format"
_PROP_HEADER = "lookalike.header"
_PROP_COLUMNS = "lookalike.columns"
_PROP_COMMITTED = "lookalike.committed"
_RESERVED = ("seq", "meta", "vector")
_MAX_ID, _MAX_LABEL = 512, 1024
_CHUNK = 2000  # rows per insert / ids per query expression
# queries per search request: Milvus Lite 3.x was seen to allocate gigabytes for 64 queries at once
# (20,000 x 384 FLAT collection) and to answer 16 or 32 normally
_SEARCH_CHUNK = 16
_MAX_TOPK = 16384  # Milvus' limit on k (and on rows per query)
_SEQ_RANGE = 10000  # rows per query when reading everything (Milvus returns at most 16384)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_NEW, _OLD = "__new", "__old"  # suffixes of a replacement being built / of the gallery it replaces


@dataclasses.dataclass(frozen=True)
class MilvusLocation:
    uri: str  # a file path (Milvus Lite) or http://HOST:PORT
    collection: str
    token: str = ""
    lite: bool = False

    def __str__(self) -> str:
        if self.lite:
            return f"{MILVUS_LITE_PREFIX}{self.uri}#{self.collection}"
        return f"{MILVUS_PREFIX}{self.uri.removeprefix('http://')}/{self.collection}"


def parse_location(location: str) -> MilvusLocation:
    """``milvus-lite:PATH.db[#collection]`` or ``milvus://[USER:PASSWORD@]HOST:PORT/COLLECTION``."""
    if location.startswith(MILVUS_LITE_PREFIX):
        rest = location[len(MILVUS_LITE_PREFIX) :]
        path, _, collection = rest.partition("#")
        if not path.endswith(".db"):
            raise GalleryError(
                f"Milvus Lite location {location!r}: the file name must end in .db, "
                "e.g. milvus-lite:gallery.db"
            )
        return MilvusLocation(
            str(Path(path).expanduser().absolute()),
            _collection(collection or DEFAULT_COLLECTION, location),
            lite=True,
        )
    parts = urlsplit(location)
    collection = parts.path.strip("/")
    if parts.scheme != "milvus" or not parts.hostname or not parts.port or not collection:
        raise GalleryError(f"Milvus location {location!r} must look like milvus://HOST:PORT/COLLECTION")
    token = (
        f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        if parts.username
        else os.environ.get("LOOKALIKE_MILVUS_TOKEN", "")
    )
    return MilvusLocation(
        f"http://{parts.hostname}:{parts.port}", _collection(collection, location), token=token
    )


def _collection(name: str, location: str) -> str:
    if not _NAME.fullmatch(name):
        raise GalleryError(
            f"Milvus collection name {name!r} in {location!r} is invalid; "
            "use letters, digits and underscores, starting with a letter or underscore"
        )
    return name


def milvus_index_params(factory: str) -> tuple[str, dict[str, int], dict[str, int]]:
    """A FAISS factory string -> (Milvus index type, build params, search params)."""
    spec = factory.replace(" ", "")
    if spec == "Flat":
        return "FLAT", {}, {}
    if m := re.fullmatch(r"HNSW(\d+)(,Flat)?", spec):
        return "HNSW", {"M": int(m.group(1)), "efConstruction": 200}, {"ef": 128}
    if m := re.fullmatch(r"IVF(\d+)(,Flat|,SQ8|,PQ(\d+)(x8)?)?", spec):
        nlist = int(m.group(1))
        search = {"nprobe": int(min(nlist, max(16, nlist // 8)))}
        if m.group(3):
            return "IVF_PQ", {"nlist": nlist, "m": int(m.group(3)), "nbits": 8}, search
        if m.group(2) == ",SQ8":
            return "IVF_SQ8", {"nlist": nlist}, search
        return "IVF_FLAT", {"nlist": nlist}, search
    raise GalleryError(
        f"index factory {factory!r} has no Milvus equivalent; "
        "use one of 'Flat', 'HNSW<M>', 'IVF<nlist>,Flat', 'IVF<nlist>,SQ8', 'IVF<nlist>,PQ<m>'"
    )


_LITE_OPEN: dict[str, int] = {}  # Milvus Lite file -> stores of this process that have it open
_LITE_MUTEX = threading.Lock()


def _release_lite(path: str) -> None:
    """Stop this process's Milvus Lite server for ``path`` when its last store closes, so that another
    process can open the file (Milvus Lite allows one process per file)."""
    with _LITE_MUTEX:
        _LITE_OPEN[path] = _LITE_OPEN.get(path, 1) - 1
        if _LITE_OPEN[path] > 0:
            return
        del _LITE_OPEN[path]
    with contextlib.suppress(Exception):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)


def _client(loc: MilvusLocation) -> Any:
    client = _connect(loc)
    if loc.lite:
        with _LITE_MUTEX:
            _LITE_OPEN[loc.uri] = _LITE_OPEN.get(loc.uri, 0) + 1
    return client


def _connect(loc: MilvusLocation) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as e:  # pragma: no cover - depends on the install
        raise GalleryError(
            f"gallery {loc} needs pymilvus (and milvus-lite for a .db file): pip install 'lookalike[milvus]'"
        ) from e
    try:
        return MilvusClient(uri=loc.uri, token=loc.token) if loc.token else MilvusClient(uri=loc.uri)
    except Exception as e:
        if loc.lite:
            raise GalleryError(
                f"cannot open the Milvus Lite file {loc.uri} ({e}): Milvus Lite lets one process at a time "
                "open a file; if another process has it open (a running `lookalike serve`, another "
                "`lookalike index` command), stop it or wait for it, or use a Milvus server (milvus://...)"
            ) from e
        raise GalleryError(f"cannot connect to Milvus at {loc.uri}: {e}") from e


class MilvusStore:
    """A gallery in a Milvus collection (see the module docstring)."""

    def __init__(self, loc: MilvusLocation, client: Any, *, writable: bool, lock: WriterLock | None) -> None:
        self.location = loc
        self._client = client
        self._lock = lock
        self._read_only = not writable
        self._mutex = threading.RLock()
        self._closed = False
        self._load()

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        location: str,
        header: GalleryHeader,
        *,
        overwrite: bool = False,
        embeddings: np.ndarray | None = None,
        items: pd.DataFrame | None = None,
    ) -> MilvusStore:
        """A new gallery collection. With ``overwrite`` an existing gallery is replaced only once the
        new one is complete: it is built in ``COLLECTION__new`` (with ``embeddings`` and ``items`` when
        given) and then renamed into place; a failure before that leaves the old one as it was."""
        loc = parse_location(location)
        milvus_index_params(header.index_factory)  # a clear error before anything is touched
        if loc.lite:
            Path(loc.uri).parent.mkdir(parents=True, exist_ok=True)
        lock, client = _lock(loc), None
        try:
            client = _client(loc)
            _recover(client, loc.collection)
            replacing = _check_replace(client, loc, overwrite=overwrite)
            target = f"{loc.collection}{_NEW}" if replacing else loc.collection
            if client.has_collection(target):  # the remains of an interrupted --overwrite
                client.drop_collection(target)
            _create_collection(client, target, header)
            store = cls(dataclasses.replace(loc, collection=target), client, writable=True, lock=lock)
        except BaseException:
            _give_up(loc, client, lock)
            raise
        try:
            if embeddings is not None or items is not None:
                store.add(embeddings, items)
            if replacing:
                store._swap_in(loc)
        except BaseException:
            store._abandon(target, loc.collection)  # a new gallery, or the replacement: not the old one
            raise
        return store

    def _abandon(self, built: str | None, name: str) -> None:
        """A failed create: drop what it built, put the old gallery back if a swap began, and close."""
        with contextlib.suppress(Exception):
            if built is not None and self._client.has_collection(built):
                self._client.drop_collection(built)
            _recover(self._client, name)
        self.close()

    def _swap_in(self, loc: MilvusLocation) -> None:
        """Rename the complete new collection into place: old -> __old, __new -> name, drop __old.
        A process killed between the renames leaves __old, which the next open renames back."""
        client, name = self._client, loc.collection
        client.rename_collection(name, f"{name}{_OLD}")
        client.rename_collection(f"{name}{_NEW}", name)
        client.drop_collection(f"{name}{_OLD}")
        client.load_collection(name)  # a renamed collection comes back released
        self.location = loc

    @classmethod
    def open(cls, location: str, *, writable: bool = False) -> MilvusStore:
        loc = parse_location(location)
        if loc.lite and not Path(loc.uri).exists():
            raise GalleryError(
                f"Milvus Lite file {loc.uri} does not exist; build a gallery with `--store {location}`"
            )
        lock, client = (_lock(loc) if writable else None), None
        try:
            client = _client(loc)
            if writable:
                _recover(client, loc.collection)
            if not client.has_collection(loc.collection):
                names = client.list_collections()
                raise GalleryError(
                    f"no gallery at {loc}: the collection {loc.collection!r} does not exist "
                    f"(collections there: {', '.join(names) or 'none'})"
                )
            if _properties(client, loc.collection).get(_PROP_FORMAT) != FORMAT_NAME:
                raise GalleryError(f"{loc} is a Milvus collection but not a lookalike gallery")
            # a collection is "released" in a process that did not create or load it: load it to search
            client.load_collection(loc.collection)
            store = cls(loc, client, writable=writable, lock=lock)
        except BaseException:
            _give_up(loc, client, lock)
            raise
        if writable:
            store._drop_uncommitted()
        return store

    def _load(self) -> None:
        props = _properties(self._client, self.location.collection)
        self.header = GalleryHeader.from_dict(json.loads(props[_PROP_HEADER]), source=str(self.location))
        self._columns: dict[str, str] = json.loads(props.get(_PROP_COLUMNS, "{}"))
        self._committed = int(props.get(_PROP_COMMITTED, "0"))
        self._search_params = milvus_index_params(self.header.index_factory)[2]
        self._count = self._query_count()

    def refresh(self) -> bool:
        """Re-read the header and the commit mark; True when they changed."""
        with self._mutex:
            before = (self.header, self._committed, self._count)
            self._load()
            return before != (self.header, self._committed, self._count)

    def _query_count(self) -> int:
        rows = self._client.query(
            self.location.collection, filter=self._visible(), output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def _visible(self) -> str:
        return f"seq < {self._committed}"

    def _drop_uncommitted(self) -> None:
        """Rows of an add that was killed before it committed."""
        self._client.delete(self.location.collection, filter=f"seq >= {self._committed}")

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = check_embeddings(queries, self.header, what="queries")
        with self._mutex:
            self._check_open()
            kk = min(k, len(self))
            if kk > _MAX_TOPK:
                raise ValueError(
                    f"k={k}: Milvus returns at most {_MAX_TOPK} neighbours per query; ask for fewer"
                )
            distances = np.full((q.shape[0], kk), np.inf, dtype=np.float32)
            ids = np.full((q.shape[0], kk), None, dtype=object)
            if kk == 0 or q.shape[0] == 0:
                return distances, ids
            params = {"metric_type": _metric(self.header), "params": dict(self._search_params)}
            if "ef" in params["params"]:
                params["params"]["ef"] = max(params["params"]["ef"], kk)
            for start in range(0, q.shape[0], _SEARCH_CHUNK):
                block = q[start : start + _SEARCH_CHUNK]
                hits = self._client.search(
                    self.location.collection,
                    data=block.tolist(),
                    limit=kk,
                    filter=self._visible(),
                    anns_field="vector",
                    search_params=params,
                    output_fields=[],
                )
                for row, found in enumerate(hits):
                    if not found:
                        continue
                    raw = np.array([h["distance"] for h in found], dtype=np.float32)
                    d = to_distance(raw, self.header.distance)
                    order = np.argsort(d, kind="stable")
                    distances[start + row, : len(found)] = d[order]
                    ids[start + row, : len(found)] = np.array([str(h["id"]) for h in found], dtype=object)[
                        order
                    ]
        return distances, ids

    def items(self, ids: Sequence[str] | None = None) -> pd.DataFrame:
        rows = self._rows(ids, ["id", "label", "path", "seq", "meta"])
        return self._frame(rows)

    def labels(self, ids: Sequence[str] | None = None) -> pd.Series:
        """Labels by id: queries of the id and label fields only (all: and seq, which orders the rows and
        pages the query), never the path, metadata or vector."""
        rows = self._rows(ids, ["id", "label"] if ids is not None else ["id", "label", "seq"])
        index = pd.Index([str(r["id"]) for r in rows], dtype=object, name="id")
        return pd.Series([str(r["label"]) for r in rows], index=index, name="label", dtype=object)

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        rows = self._rows(ids, ["id", "seq", "vector"])
        if not rows:
            return np.empty((0, self.header.embed_dim), dtype=np.float32)
        return np.asarray([r["vector"] for r in rows], dtype=np.float32)

    def _rows(self, ids: Sequence[str] | None, fields: list[str]) -> list[dict[str, Any]]:
        with self._mutex:
            self._check_open()
            col = self.location.collection
            if ids is None:
                out: list[dict[str, Any]] = []
                for lo in range(0, self._committed, _SEQ_RANGE):  # seq ranges: no iterator, insertion order
                    hi = min(lo + _SEQ_RANGE, self._committed)
                    out.extend(
                        self._client.query(col, filter=f"seq >= {lo} and seq < {hi}", output_fields=fields)
                    )
                return sorted(out, key=lambda r: r["seq"])
            if isinstance(ids, str):
                raise TypeError("ids must be a sequence of ids, not one string; wrap it in a list")
            keys = [str(i) for i in ids]
            found = self._get(keys, fields)
            for key in keys:
                if key not in found:
                    raise KeyError(f"unknown id {key!r}: no such item in gallery {self.location}")
            return [found[key] for key in keys]

    def _get(self, keys: Sequence[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        unique = [key for key in dict.fromkeys(keys) if _storable(key)]  # others cannot be here
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            # Milvus Lite has no expression templates: JSON string literals, with the characters as they are
            expr = f"id in {json.dumps(chunk, ensure_ascii=False)} and {self._visible()}"
            for row in self._client.query(
                self.location.collection, filter=expr, output_fields=list(dict.fromkeys([*fields, "id"]))
            ):
                found[str(row["id"])] = row
        return found

    def _frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        data: dict[str, Any] = {
            "id": pd.Series([str(r["id"]) for r in rows], dtype=object),
            "label": pd.Series([r["label"] for r in rows], dtype=object),
            "path": pd.Series([(r["path"] or {}).get("v") for r in rows], dtype=object),
        }
        for col, dtype in self._columns.items():
            values = [(r.get("meta") or {}).get(col) for r in rows]
            data[col] = _restore(values, dtype)
        return pd.DataFrame(data)

    # -- writing ------------------------------------------------------------------------------

    def add(self, embeddings: np.ndarray, items: pd.DataFrame) -> list[str]:
        with self._mutex:
            self._check_writable()
            x = check_embeddings(embeddings, self.header)
            new = prepare_items(items, x.shape[0], reserved=_RESERVED)
            if len(new) == 0:
                return []
            for column, limit in (("id", _MAX_ID), ("label", _MAX_LABEL)):
                for row, value in enumerate(new[column]):
                    if value is not None and len(value.encode()) > limit:
                        raise ValueError(
                            f"items row {row}: the {column} {value[:40]!r}... is longer than {limit} bytes, "
                            f"the most this Milvus gallery stores"
                        )
            existing = self._get(new["id"].tolist(), ["id"])
            if existing:
                dup = next(i for i in new["id"] if i in existing)
                raise ValueError(
                    f"duplicate id {dup!r}: already in gallery {self.location}; ids must be unique"
                )
            meta_cols = [c for c in new.columns if c not in ("id", "label", "path")]
            columns = _merged_columns(self._columns, new[meta_cols], has_rows=self._count > 0)
            metas = _json_rows(new[meta_cols])
            start = self._committed
            ids, labels, paths = new["id"].tolist(), new["label"].tolist(), new["path"].tolist()
            col = self.location.collection
            try:
                for s in range(0, len(new), _CHUNK):
                    rows = [
                        {
                            "id": ids[i],
                            "label": labels[i],
                            "path": {"v": paths[i]},
                            "seq": start + i,
                            "meta": metas[i],
                            "vector": x[i],
                        }
                        for i in range(s, min(s + _CHUNK, len(new)))
                    ]
                    self._client.insert(col, rows)
                # sealed and persisted before they count: Milvus indexes sealed segments (growing ones are
                # searched by brute force, which is slow and memory-hungry in Milvus Lite)
                self._client.flush(col)
                # the commit: one property update makes the rows visible, with their metadata dtypes
                self._client.alter_collection_properties(
                    col,
                    properties={_PROP_COLUMNS: json.dumps(columns), _PROP_COMMITTED: str(start + len(new))},
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    self._drop_uncommitted()
                raise
            self._columns, self._committed = columns, start + len(new)
            self._count += len(new)
            return new["id"].tolist()

    def remove(self, ids: Sequence[str]) -> int:
        with self._mutex:
            self._check_writable()
            if isinstance(ids, str):
                raise TypeError("ids must be a sequence of ids, not one string; wrap it in a list")
            keys = list(dict.fromkeys(str(i) for i in ids))
            found = self._get(keys, ["id"])
            for key in keys:
                if key not in found:
                    raise KeyError(f"unknown id {key!r}: no such item in gallery {self.location}")
            if not keys:
                return 0
            for start in range(0, len(keys), _CHUNK):  # pymilvus' ids= does not escape quotes: our literal
                chunk = json.dumps(keys[start : start + _CHUNK], ensure_ascii=False)
                self._client.delete(self.location.collection, filter=f"id in {chunk}")
            self._client.flush(self.location.collection)
            self._count -= len(keys)
            return len(keys)

    def set_threshold(self, threshold: float | None, calibration: dict | None = None) -> None:
        with self._mutex:
            self._check_writable()
            header = dataclasses.replace(
                self.header,
                threshold=None if threshold is None else float(threshold),
                calibration=calibration,
            )
            self._client.alter_collection_properties(
                self.location.collection, properties={_PROP_HEADER: json.dumps(header.to_dict())}
            )
            self.header = header

    # -- life cycle ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryError(f"gallery {self.location} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._read_only:
            raise GalleryError(
                f"gallery {self.location} is open read-only; open it with writable=True to change it"
            )

    @property
    def writable(self) -> bool:
        return not self._read_only and not self._closed

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(Exception):
                self._client.close()
            if self.location.lite:
                _release_lite(self.location.uri)
            if self._lock is not None:
                self._lock.release()
            self._lock = None

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "closed" if self._closed else ("read-only" if self._read_only else "writable")
        return (
            f"MilvusStore({str(self.location)!r}, {len(self)} items, D={self.header.embed_dim}, "
            f"{self.header.distance}, {self.header.index_factory!r}, {mode})"
        )


def _give_up(loc: MilvusLocation, client: Any, lock: WriterLock | None) -> None:
    """Release what a failed create/open took: the client (and this process's Milvus Lite server)."""
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()
        if loc.lite:
            _release_lite(loc.uri)
    if lock is not None:
        lock.release()


def _storable(key: str) -> bool:
    """Whether ``key`` follows the id rule (any other cannot be stored, and a NUL would break a filter)."""
    try:
        check_id(key)
    except ValueError:
        return False
    return True


def _lock(loc: MilvusLocation) -> WriterLock | None:
    if not loc.lite:
        return None
    return WriterLock(Path(f"{loc.uri}.{loc.collection}.lock"), f"gallery {loc}")


def _metric(header: GalleryHeader) -> str:
    return "L2" if header.distance == "euclidean" else "IP"


def _properties(client: Any, collection: str) -> dict[str, str]:
    return dict(client.describe_collection(collection).get("properties") or {})


def _check_replace(client: Any, loc: MilvusLocation, *, overwrite: bool) -> bool:
    """True when a gallery is there to be replaced; refuses to replace what is not ours."""
    if not client.has_collection(loc.collection):
        return False
    ours = _properties(client, loc.collection).get(_PROP_FORMAT) == FORMAT_NAME
    if not overwrite:
        what = "a gallery" if ours else "a collection (not a gallery)"
        raise GalleryError(f"{what} already exists at {loc}; pass overwrite=True (--overwrite) to replace it")
    if not ours:
        raise GalleryError(
            f"{loc} is a Milvus collection that lookalike did not create; refusing to replace it"
        )
    if len(loc.collection) + len(_NEW) > 255:
        raise GalleryError(
            f"collection name {loc.collection!r} is too long to be replaced safely (at most "
            f"{255 - len(_NEW)} characters); remove it first or use a shorter name"
        )
    return True


def _recover(client: Any, name: str) -> None:
    """Finish or undo a replacement that a killed process left half-done (see ``_swap_in``)."""
    old = f"{name}{_OLD}"
    if not client.has_collection(old):
        return
    if client.has_collection(name):
        client.drop_collection(old)
    else:
        client.rename_collection(old, name)


def _create_collection(client: Any, name: str, header: GalleryHeader) -> None:
    from pymilvus import DataType

    index_type, build, _ = milvus_index_params(header.index_factory)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, max_length=_MAX_ID, is_primary=True)
    schema.add_field("label", DataType.VARCHAR, max_length=_MAX_LABEL)
    schema.add_field("path", DataType.JSON)  # {"v": path or null}: JSON has no fixed width per row
    schema.add_field("seq", DataType.INT64)
    schema.add_field("meta", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=header.embed_dim)
    index_params = client.prepare_index_params()
    index_params.add_index("vector", index_type=index_type, metric_type=_metric(header), params=build)
    client.create_collection(name, schema=schema, index_params=index_params, consistency_level="Strong")
    client.alter_collection_properties(
        name,
        properties={
            _PROP_FORMAT: FORMAT_NAME,
            _PROP_HEADER: json.dumps(header.to_dict()),
            _PROP_COLUMNS: "{}",
            _PROP_COMMITTED: "0",
        },
    )


# ---------------------------------------------------------------------------------------------
# metadata <-> JSON


def _nullable(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "Int64"
    return str(dtype)


def _merged_columns(known: dict[str, str], new: pd.DataFrame, *, has_rows: bool) -> dict[str, str]:
    """Metadata column -> dtype after adding ``new``; a column absent on one side becomes nullable."""
    out = dict(known)
    for col in new.columns:
        dtype = str(new[col].dtype)
        if col not in known:
            out[col] = _nullable(new[col].dtype) if has_rows else dtype
        elif known[col] != dtype and _nullable(new[col].dtype) != known[col]:
            out[col] = "object"
    for col in known:
        if col not in new.columns:
            out[col] = (
                _nullable(pd.Series([], dtype=known[col]).dtype) if known[col] != "object" else "object"
            )
    check_column_count(list(out))
    return out


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


def _json_rows(meta: pd.DataFrame) -> list[dict[str, Any]]:
    cols = list(meta.columns)
    values = [meta[c].tolist() for c in cols]
    return [{c: _json_value(v[i]) for c, v in zip(cols, values, strict=True)} for i in range(len(meta))]


def _restore(values: list[Any], dtype: str) -> Any:
    series = pd.Series(values, dtype=object)
    if dtype == "object":
        return series.to_numpy(dtype=object)
    try:
        if dtype.startswith("datetime64"):
            return pd.to_datetime(series).astype(dtype).array
        if dtype in ("float64", "float32"):
            return series.astype("float64").astype(dtype).to_numpy()
        return series.astype(dtype).array
    except (TypeError, ValueError):
        return series.to_numpy(dtype=object)
