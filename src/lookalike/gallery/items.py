"""The item rows of a gallery: ids, labels, source paths and free metadata, checked by one set of
rules for every store, the CLI and the service (which checks before it embeds).

The id rule (:func:`check_id`): 1 to 256 characters and at most 512 bytes in UTF-8, no control
characters (newline, tab, NUL, ...), no leading or trailing whitespace, not starting with ``.``,
``/`` or ``\\``; the whole id must match (``re.fullmatch``), so ``"a\\n"`` is refused.

The metadata rule (:func:`check_metadata`, and the columns of :func:`prepare_items`): at most
:data:`MAX_METADATA_KEYS` keys per item and :data:`MAX_GALLERY_COLUMNS` metadata columns per gallery;
a key is 1 to 64 characters, no control characters, not ``id``/``label``/``path``, not a name a store
keeps for itself (:data:`RESERVED_NAMES`, or starting with ``_``); a value is a string of at most
:data:`MAX_TEXT_CHARS` characters, a boolean, an integer within int64, a finite float, a timestamp,
or missing (None/NaN).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lookalike.gallery.store import ITEM_COLUMNS

__all__ = [
    "ID_RULE",
    "MAX_GALLERY_COLUMNS",
    "MAX_METADATA_KEYS",
    "MAX_TEXT_CHARS",
    "RESERVED_NAMES",
    "check_id",
    "check_metadata",
    "merge_items",
    "prepare_items",
]

ID_RULE = (
    "1 to 256 characters (at most 512 bytes in UTF-8), no control characters such as newline, tab or NUL, "
    "no leading or trailing whitespace, not starting with '.', '/' or '\\'"
)
_CONTROL = "\x00-\x1f\x7f-\x9f\u2028\u2029"
_ID = re.compile(f"[^{_CONTROL}\\s./\\\\](?:[^{_CONTROL}]{{0,254}}[^{_CONTROL}\\s])?")
_MAX_ID_BYTES = 512
_KEY = re.compile(f"[^{_CONTROL}]{{1,64}}")
MAX_METADATA_KEYS = 64
MAX_GALLERY_COLUMNS = 256
MAX_TEXT_CHARS = 1024
#: Column names a store keeps for itself (the Milvus fields), refused as metadata keys by every store.
RESERVED_NAMES = ("seq", "meta", "vector")
_INT64 = (-(2**63), 2**63 - 1)


def check_id(value: str) -> str:
    """``value`` when it follows the id rule (:data:`ID_RULE`), else ValueError saying what is wrong."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or len(value.encode()) > _MAX_ID_BYTES:
        raise ValueError(f"id {value!r} is not valid: an id is {ID_RULE}")
    return value


def check_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """One item's metadata (a mapping of key -> value) checked by the metadata rule (module docstring);
    ValueError naming the key and what would be right."""
    if not isinstance(meta, Mapping):
        raise ValueError(f"metadata must be an object of key -> value, got {type(meta).__name__}")
    _check_keys(list(meta))
    for key, value in meta.items():
        _check_value(key, value, where="")
    return dict(meta)


def _check_keys(keys: list[Any]) -> None:
    if len(keys) > MAX_METADATA_KEYS:
        raise ValueError(f"{len(keys)} metadata keys; at most {MAX_METADATA_KEYS} are accepted per item")
    for key in keys:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(
                f"metadata key {key!r} is not valid: use 1 to 64 characters without control characters"
            )
        if key in ITEM_COLUMNS or key in RESERVED_NAMES or key.startswith("_"):
            reserved = ", ".join((*ITEM_COLUMNS, *RESERVED_NAMES))
            raise ValueError(
                f"metadata key {key!r} is reserved ({reserved} and names starting with '_'); rename it"
            )


def _check_value(key: str, value: Any, *, where: str) -> None:
    if isinstance(value, np.generic):
        value = value.item()
    if _is_missing(value) or isinstance(value, bool | dt.datetime | dt.date | pd.Timestamp):
        return
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(
                f"metadata[{key!r}]{where} = {value} is outside the 64-bit integer range "
                f"[{_INT64[0]}, {_INT64[1]}]; store it as a string"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"metadata[{key!r}]{where} = {value}: numbers must be finite")
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(
                f"metadata[{key!r}]{where} is {len(value)} characters; at most {MAX_TEXT_CHARS} are stored"
            )
        return
    raise ValueError(
        f"metadata[{key!r}]{where} is a {type(value).__name__}; values must be strings, numbers, booleans "
        "or timestamps"
    )


def _check_column(df: pd.DataFrame, col: str) -> None:
    """A metadata column by the metadata rule: vectorised for typed columns, per value for objects."""
    values = df[col]
    if pd.api.types.is_float_dtype(values.dtype):
        bad = np.isinf(values.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            _check_value(col, float(values.iloc[int(np.argmax(bad))]), where=f" (row {int(np.argmax(bad))})")
    elif pd.api.types.is_unsigned_integer_dtype(values.dtype) and len(values):
        if int(values.max()) > _INT64[1]:
            row = int(np.argmax(values.to_numpy() > _INT64[1]))
            _check_value(col, int(values.iloc[row]), where=f" (row {row})")
    elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        if pd.api.types.infer_dtype(values, skipna=True) == "string":  # the common case, vectorised
            lengths = values.str.len().fillna(0).to_numpy()
            if len(lengths) == 0 or lengths.max() <= MAX_TEXT_CHARS:
                return
        for row, value in enumerate(values.tolist()):
            _check_value(col, value, where=f" (row {row})")


def check_column_count(columns: Sequence[str]) -> None:
    """The gallery-wide bound on metadata columns (each new key adds a column to every item)."""
    meta = [c for c in columns if c not in ITEM_COLUMNS and not c.startswith("_")]
    if len(meta) > MAX_GALLERY_COLUMNS:
        raise ValueError(
            f"this add would give the gallery {len(meta)} metadata columns; at most {MAX_GALLERY_COLUMNS} "
            "are kept: reuse keys across items instead of inventing new ones"
        )


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
    _check_keys([c for c in items.columns if c not in ITEM_COLUMNS])
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
            _check_column(df, col)
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
    _check_ids(ids)
    duplicated = pd.Index(ids, dtype=object).duplicated()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise ValueError(f"duplicate id {ids[row]!r} in the items (row {row}); ids must be unique")
    return ids


def _check_ids(ids: np.ndarray) -> None:
    """Every id by the id rule (vectorised: a gallery may be built from a million rows at once)."""
    if not len(ids):
        return
    ok = np.array(pd.Series(ids, dtype=object).str.fullmatch(_ID).fillna(False), dtype=bool)
    long = [
        i
        for i, value in enumerate(ids)
        if len(value) > _MAX_ID_BYTES // 4 and len(value.encode()) > _MAX_ID_BYTES
    ]
    ok[long] = False
    if not ok.all():
        row = int(np.argmin(ok))
        raise ValueError(f"items row {row}: id {ids[row]!r} is not valid: an id is {ID_RULE}")


def _strings(values: np.ndarray) -> list:
    """Python strings, None where missing."""
    if len(values) and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.tolist()
    return [None if _is_missing(v) else str(v) for v in values]


def merge_items(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Append ``new`` rows to ``old``; a metadata column present on one side only becomes nullable on
    the other (ints -> Int64, bools -> boolean) instead of silently turning into floats."""
    if len(old) == 0:
        check_column_count(list(new.columns))
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
    check_column_count(list(dict.fromkeys([*old.columns, *new.columns])))
    return pd.concat([old, new], ignore_index=True)
