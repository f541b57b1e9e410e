"""The item rows of a gallery: ids, labels, source paths and free metadata, checked the same way for
every store (and for the CLI and the service, which check before they embed)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lookalike.gallery.store import ITEM_COLUMNS

__all__ = ["merge_items", "prepare_items"]


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
