"""Saved embeddings read into one table, and their retrieval metrics (``lookalike evaluate-embeddings``).

Accepted inputs (one row per item):

- ``.parquet`` / ``.csv``: an embedding column (a list per row; for CSV, columns
  ``<embedding-column>_0``, ``_1``, ...), a label column, optionally a role column
  (``query``, ``gallery`` or ``both``; a split manifest's ``query+gallery`` means ``both`` and its
  ``train`` rows are left out), a split column (choose one split with ``split=``) and an id
  column. ``lookalike embed`` writes this form.
- ``.npz``: arrays ``embeddings`` (N, D), ``labels`` (N,), optionally ``roles`` and ``ids``.
- ``.npy``: the (N, D) embeddings, with ``labels`` (and optionally ``roles``) given as
  ``.npy`` or one-value-per-line text files.

Without roles every item is a query against all the others (leave-one-out).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.data.roles import (
    ROLE_GALLERY,
    ROLE_QUERY,
    ROLE_QUERY_GALLERY,
    ROLE_TRAIN,
    is_gallery,
    is_query,
)
from lookalike.metrics.retrieval import RetrievalReport, retrieval_metrics

__all__ = ["ROLE_BOTH", "TABLE_ROLES", "EmbeddingTable", "evaluate_embeddings", "load_embeddings"]

#: The role of an item that is both a query and a gallery item in a saved-embeddings table (a split
#: manifest's ``query+gallery`` means the same).
ROLE_BOTH = "both"
#: The role values a table may hold.
TABLE_ROLES: tuple[str, ...] = (ROLE_QUERY, ROLE_GALLERY, ROLE_BOTH, ROLE_QUERY_GALLERY, ROLE_TRAIN)


@dataclass(frozen=True)
class EmbeddingTable:
    """Embeddings loaded from a file: (N, D) float32, (N,) labels, optional (N,) roles and ids."""

    embeddings: np.ndarray
    labels: np.ndarray
    roles: np.ndarray | None
    ids: np.ndarray | None

    def query_mask(self) -> np.ndarray:
        """(N,) bool: the rows searched with (role query or both); every row without roles."""
        return self._role_mask(is_query)

    def gallery_mask(self) -> np.ndarray:
        """(N,) bool: the rows searched in (role gallery or both); every row without roles."""
        return self._role_mask(is_gallery)

    def _role_mask(self, test: Any) -> np.ndarray:
        import pandas as pd

        if self.roles is None:
            return np.ones(len(self.labels), dtype=bool)
        roles = np.asarray(self.roles).astype(str)
        manifest_roles = np.where(roles == ROLE_BOTH, ROLE_QUERY_GALLERY, roles)  # a manifest's words
        return np.asarray(test(pd.DataFrame({"role": manifest_roles})), dtype=bool)


def load_embeddings(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    roles: str | os.PathLike[str] | None = None,
    embedding_column: str = "embedding",
    label_column: str = "label",
    role_column: str = "role",
    id_column: str = "id",
    split: str | None = None,
    split_column: str = "split",
) -> EmbeddingTable:
    """Read embeddings, labels and optional roles/ids from ``.parquet``, ``.csv``, ``.npz`` or ``.npy``.

    ``split``: keep only the rows whose ``split_column`` is this (parquet/csv). A file whose split
    column holds several splits must be given one (evaluating val and test together would mix them).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such embeddings file: {p}")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".csv"):
        if labels is not None or roles is not None:
            raise ValueError(
                f"--labels/--roles are for .npy files; {p.name} has {label_column!r}/{role_column!r}"
            )
        columns = (embedding_column, label_column, role_column, id_column)
        table = _read_frame(p, columns, split, split_column)
    elif split is not None:
        raise ValueError(
            f"--split selects rows of a .parquet/.csv file with a {split_column!r} column, not {p.name}"
        )
    elif suffix == ".npz":
        if labels is not None or roles is not None:
            raise ValueError(
                f"--labels/--roles are for .npy files; {p.name} holds 'labels' and 'roles' arrays"
            )
        table = _read_npz(p)
    elif suffix == ".npy":
        if labels is None:
            raise ValueError(f"{p.name} holds only embeddings: give the labels with --labels FILE")
        table = EmbeddingTable(
            embeddings=np.load(p, allow_pickle=False),
            labels=_read_vector(Path(labels)),
            roles=None if roles is None else _read_vector(Path(roles)),
            ids=None,
        )
    else:
        raise ValueError(f"unsupported embeddings file {p.name!r}; use .parquet, .csv, .npz or .npy")
    return _validate(table, p.name)


def evaluate_embeddings(
    table: EmbeddingTable,
    *,
    ks: tuple[int, ...] = (1, 10, 50, 1000),
    distance: str = "euclidean",
    backend: str = "torch",
) -> RetrievalReport:
    """Retrieval metrics of a loaded table: queries against the gallery by role, or leave-one-out."""
    emb = np.ascontiguousarray(table.embeddings, dtype=np.float32)
    if table.roles is None:
        return retrieval_metrics(
            emb, table.labels, ks=ks, distance=distance, leave_one_out=True, backend=backend
        )  # type: ignore[arg-type]
    is_q, is_g = table.query_mask(), table.gallery_mask()
    if not is_q.any() or not is_g.any():
        found = sorted(set(np.asarray(table.roles).astype(str).tolist()))
        raise ValueError(f"roles must include queries and gallery items; found {found}")
    ids = table.ids if table.ids is not None else np.arange(len(is_q))
    kw: dict[str, Any] = {}
    if (is_q & is_g).any():
        kw = {"query_ids": ids[is_q], "gallery_ids": ids[is_g]}
    return retrieval_metrics(
        emb[is_q],
        table.labels[is_q],
        emb[is_g],
        table.labels[is_g],
        ks=ks,
        distance=distance,
        backend=backend,  # type: ignore[arg-type]
        **kw,
    )


def _read_npz(p: Path) -> EmbeddingTable:
    with np.load(p, allow_pickle=False) as z:
        for key in ("embeddings", "labels"):
            if key not in z:
                raise ValueError(f"{p.name} has no {key!r} array; it has {sorted(z.files)}")
        return EmbeddingTable(
            embeddings=z["embeddings"], labels=z["labels"], roles=z.get("roles"), ids=z.get("ids")
        )


def _read_frame(
    p: Path, columns: tuple[str, str, str, str], split: str | None, split_col: str
) -> EmbeddingTable:
    import pandas as pd

    emb_col, label_col, role_col, id_col = columns
    df = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p)
    df = _one_split(df, p.name, split, split_col)
    if label_col not in df.columns:
        raise ValueError(f"{p.name} has no label column {label_col!r}; columns: {list(df.columns)}")
    return EmbeddingTable(
        embeddings=_embedding_matrix(df, p.name, emb_col),
        labels=df[label_col].to_numpy(),
        roles=df[role_col].to_numpy() if role_col in df.columns else None,
        ids=df[id_col].to_numpy() if id_col in df.columns else None,
    )


def _one_split(df: Any, name: str, split: str | None, split_col: str) -> Any:
    present = sorted(df[split_col].dropna().astype(str).unique()) if split_col in df.columns else []
    if split is not None:
        if split_col not in df.columns:
            raise ValueError(
                f"--split {split}: {name} has no {split_col!r} column; columns: {list(df.columns)}"
            )
        df = df[df[split_col].astype(str) == split]
        if len(df) == 0:
            raise ValueError(f"{name} has no rows of split {split!r}; splits present: {present}")
    elif len(present) > 1:
        raise ValueError(f"{name} holds the splits {present}; evaluate one of them with --split NAME")
    return df


def _embedding_matrix(df: Any, name: str, emb_col: str) -> np.ndarray:
    if emb_col in df.columns:
        return np.stack([np.asarray(v, dtype=np.float32) for v in df[emb_col].to_numpy()])
    prefix = f"{emb_col}_"
    cols = [c for c in df.columns if str(c).startswith(prefix) and str(c)[len(prefix) :].isdigit()]
    if not cols:
        raise ValueError(
            f"{name} has no embedding column {emb_col!r} (nor {emb_col}_0, {emb_col}_1, ...); "
            f"columns: {list(df.columns)}"
        )
    cols.sort(key=lambda c: int(str(c)[len(prefix) :]))
    return df[cols].to_numpy(dtype=np.float32)


def _read_vector(p: Path) -> np.ndarray:
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    if p.suffix.lower() == ".npy":
        return np.load(p, allow_pickle=False)
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return np.asarray(lines)


def _validate(t: EmbeddingTable, name: str) -> EmbeddingTable:
    if t.embeddings.ndim != 2:
        raise ValueError(f"{name}: embeddings must be (N, D), got shape {t.embeddings.shape}")
    n = t.embeddings.shape[0]
    for what, arr in (("labels", t.labels), ("roles", t.roles), ("ids", t.ids)):
        if arr is not None and arr.shape != (n,):
            raise ValueError(f"{name}: {what} must have shape ({n},) like the embeddings, got {arr.shape}")
    if t.roles is not None:
        bad = sorted(set(np.asarray(t.roles).astype(str).tolist()) - set(TABLE_ROLES))
        if bad:
            raise ValueError(f"{name}: unknown roles {bad}; valid roles: {', '.join(TABLE_ROLES)}")
    if t.ids is not None and len(np.unique(t.ids)) != n:
        raise ValueError(f"{name}: ids must be unique")
    return t
