"""Batch-all mining: every valid triplet (or pair) of the batch."""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.distances import BaseDistance
from lookalike.miners.base import BaseMiner, Ref
from lookalike.tuples import IndicesTuple, TripletIndices, all_pairs, label_masks

__all__ = ["BatchAllMiner"]

_TUPLE_TYPES = ("triplet", "pair")


class BatchAllMiner(BaseMiner):
    """Every valid triplet ``(a, p, n)`` in lexicographic order, or every pair.

    Args:
        tuple_type: "triplet" (default) -> :class:`TripletIndices`; "pair" -> :class:`PairIndices`.
        margin: triplets only: keep only triplets that violate it,
            ``d(a,n) - d(a,p) <= margin`` (PML's ``TripletMarginMiner(type_of_triplets="all")``);
            None keeps all.
        distance: used only with ``margin``; default Euclidean on normalised embeddings.

    Call: ``miner(embeddings (N, D), labels (N,), ref_emb=None, ref_labels=None)``.
    """

    repr_fields = ("tuple_type", "margin", "distance")

    def __init__(
        self,
        *,
        tuple_type: str = "triplet",
        margin: float | None = None,
        distance: BaseDistance | str | None = None,
    ) -> None:
        super().__init__(distance=distance)
        if tuple_type not in _TUPLE_TYPES:
            raise ValueError(f"unknown tuple_type {tuple_type!r}; valid: {', '.join(_TUPLE_TYPES)}")
        if margin is not None and tuple_type != "triplet":
            raise ValueError(f"margin={margin!r} applies to triplets only; use tuple_type='triplet'")
        self.tuple_type = tuple_type
        self.margin = None if margin is None else float(margin)

    def mine(self, embeddings: Tensor, labels: Tensor, ref_emb: Ref, ref_labels: Ref) -> IndicesTuple:
        if self.tuple_type == "pair":
            return all_pairs(labels, ref_labels)
        same, diff = label_masks(labels, ref_labels)
        a, p = torch.where(same)
        keep = diff[a]  # (P, M): negatives of each positive pair's anchor
        if self.margin is not None:
            mat = self.distance(embeddings, ref_emb)
            gap = self.distance.margin_gap(mat[a, p].unsqueeze(1), mat[a])
            keep &= gap <= self.margin
        rows, n = torch.where(keep)
        return TripletIndices(a[rows], p[rows], n)
