"""Evaluate an embedder on the query/gallery rows of one split of a split manifest: the path shared by
training (baseline, every epoch, the final test), the `evaluate` command and the Python API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from lookalike.embed import embed_frame
from lookalike.metrics import RetrievalReport, retrieval_metrics
from lookalike.protocol import split_rows, union_rows

if TYPE_CHECKING:
    import pandas as pd

    from lookalike.distances import BaseDistance
    from lookalike.evaluation.open_set import EvalSet
    from lookalike.models import Embedder

__all__ = ["SplitEmbeddings", "embed_split", "evaluate_split", "split_frames"]


def split_frames(frame: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(queries, gallery) rows of ``split``; in leave-one-out manifests the same rows are both.
    The frames keep the manifest's index, which serves as row id (an item never matches itself).
    A split without rows gives two empty frames (see :func:`lookalike.protocol.split_rows`)."""
    return split_rows(frame, split, queries="roles", require=False)


@dataclass(frozen=True)
class SplitEmbeddings:
    """A split's query and gallery rows with their embeddings (each image embedded once).

    ``rows``: the union of the query and gallery rows (manifest index = row id); ``embeddings``
    (len(rows), D) float32 in that order.
    """

    queries: pd.DataFrame
    gallery: pd.DataFrame
    rows: pd.DataFrame
    embeddings: torch.Tensor

    def _of(self, part: pd.DataFrame) -> torch.Tensor:
        position = {row: i for i, row in enumerate(self.rows.index)}
        return self.embeddings[[position[r] for r in part.index]]

    def retrieval(
        self, *, ks: Sequence[int] = (1, 10, 50, 1000), distance: BaseDistance | str | None = None
    ) -> RetrievalReport:
        """The retrieval metrics of the queries against the gallery (an image never matches itself)."""
        return retrieval_metrics(
            self._of(self.queries),
            self.queries["label"].astype(str).to_numpy(),  # the engine encodes string labels itself
            self._of(self.gallery),
            self.gallery["label"].astype(str).to_numpy(),
            ks=tuple(ks),
            distance=distance,
            query_ids=torch.as_tensor(self.queries.index.to_numpy(np.int64, copy=True)),
            gallery_ids=torch.as_tensor(self.gallery.index.to_numpy(np.int64, copy=True)),
        )

    def eval_set(self) -> EvalSet:
        """The rows as open-set evaluation takes them (:class:`lookalike.evaluation.open_set.EvalSet`)."""
        from lookalike.evaluation.open_set import EvalSet

        return EvalSet(
            embeddings=self.embeddings.detach().cpu().numpy().astype(np.float32),
            labels=self.rows["label"].astype(str).to_numpy(),
            is_query=self.rows.index.isin(self.queries.index),
            is_gallery=self.rows.index.isin(self.gallery.index),
            ids=self.rows.index.to_numpy(np.int64, copy=True),
        )


def embed_split(
    embedder: Embedder,
    queries: pd.DataFrame,
    gallery: pd.DataFrame,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    num_workers: int = 0,
    progress: bool = False,
) -> SplitEmbeddings:
    """Embed ``queries`` and ``gallery`` (rows of a split manifest); rows in both (leave-one-out)
    are embedded once."""
    if len(queries) == 0 or len(gallery) == 0:
        raise ValueError(
            f"nothing to evaluate: {len(queries)} query and {len(gallery)} gallery rows; "
            "the split needs classes with at least 2 images"
        )
    rows = union_rows(queries, gallery)
    emb = embed_frame(
        embedder, rows, batch_size=batch_size, device=device, num_workers=num_workers, progress=progress
    )
    return SplitEmbeddings(queries=queries, gallery=gallery, rows=rows, embeddings=emb)


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
    embedded = embed_split(
        embedder,
        queries,
        gallery,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
    )
    return embedded.retrieval(ks=ks, distance=distance)
