"""Evaluate an embedder on the query/gallery rows of one split of a split manifest: the path shared by
training (baseline, every epoch, the final test), the `evaluate` command and the Python API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from lookalike.data import is_gallery, is_query
from lookalike.embed import embed_frame
from lookalike.metrics import RetrievalReport, retrieval_metrics

if TYPE_CHECKING:
    import pandas as pd

    from lookalike.distances import BaseDistance
    from lookalike.models import Embedder

__all__ = ["evaluate_split", "split_frames"]


def split_frames(frame: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(queries, gallery) rows of ``split``; in leave-one-out manifests the same rows are both.
    The frames keep the manifest's index, which serves as row id (an item never matches itself)."""
    if "split" not in frame.columns:
        raise ValueError("the manifest has no 'split' column: run `lookalike split` on it first")
    rows = frame[frame["split"] == split]
    return rows[is_query(rows)], rows[is_gallery(rows)]


def evaluate_split(
    embedder: Embedder,
    queries: pd.DataFrame,
    gallery: pd.DataFrame,
    *,
    ks: Sequence[int] = (1, 10, 50, 1000),
    distance: BaseDistance | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
) -> RetrievalReport:
    """Embed ``queries`` and ``gallery`` (rows of a split manifest) and compute the retrieval metrics.

    Rows present in both (leave-one-out) are embedded once and never matched with themselves.
    """
    if len(queries) == 0 or len(gallery) == 0:
        raise ValueError(
            f"nothing to evaluate: {len(queries)} query and {len(gallery)} gallery rows; "
            "the split needs classes with at least 2 images"
        )
    union = queries if queries.index.equals(gallery.index) else _concat_unique(queries, gallery)
    emb = embed_frame(
        embedder, union, batch_size=batch_size, device=device, num_workers=num_workers, progress=progress
    )
    position = {row: i for i, row in enumerate(union.index)}
    q_emb = emb[[position[r] for r in queries.index]]
    g_emb = emb[[position[r] for r in gallery.index]]
    return retrieval_metrics(
        q_emb,
        queries["label"].astype(str).to_numpy(),  # the engine encodes string labels itself
        g_emb,
        gallery["label"].astype(str).to_numpy(),
        ks=tuple(ks),
        distance=distance,
        query_ids=torch.as_tensor(queries.index.to_numpy(np.int64, copy=True)),
        gallery_ids=torch.as_tensor(gallery.index.to_numpy(np.int64, copy=True)),
    )


def _concat_unique(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.concat([a, b[~b.index.isin(a.index)]])
