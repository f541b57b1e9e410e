"""Semi-hard negative mining (Schroff, Kalenichenko and Philbin, 2015)."""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.distances import BaseDistance
from lookalike.miners.base import BaseMiner, Ref
from lookalike.tuples import TripletIndices, label_masks

__all__ = ["SemiHardMiner"]

_PER_ANCHOR = ("all", "hardest")


class SemiHardMiner(BaseMiner):
    """Triplets whose negative is farther than the positive but within the margin:
    ``0 < d(a,n) - d(a,p) <= margin``.

    Args:
        margin: the triplet margin (use the loss's).
        per_anchor: "all" every semi-hard triplet, in lexicographic (a, p, n) order (the same
            triplets as PML's ``TripletMarginMiner(margin, type_of_triplets="semihard")``);
            "hardest" one per (anchor, positive): the closest semi-hard negative (FaceNet).
        distance: default Euclidean on normalised embeddings.
    """

    repr_fields = ("margin", "per_anchor", "distance")

    def __init__(
        self, *, margin: float = 0.2, per_anchor: str = "all", distance: BaseDistance | str | None = None
    ) -> None:
        super().__init__(distance=distance)
        if per_anchor not in _PER_ANCHOR:
            raise ValueError(f"unknown per_anchor {per_anchor!r}; valid: {', '.join(_PER_ANCHOR)}")
        self.margin = float(margin)
        self.per_anchor = per_anchor

    def mine(self, embeddings: Tensor, labels: Tensor, ref_emb: Ref, ref_labels: Ref) -> TripletIndices:
        same, diff = label_masks(labels, ref_labels)
        mat = self.distance(embeddings, ref_emb)
        a, p = torch.where(same)
        # (P, M): how much each candidate negative is farther than the pair's positive.
        gap = self.distance.margin_gap(mat[a, p].unsqueeze(1), mat[a])
        keep = diff[a] & (gap > 0) & (gap <= self.margin)
        if self.per_anchor == "all":
            rows, n = torch.where(keep)
            return TripletIndices(a[rows], p[rows], n)
        n = gap.masked_fill(~keep, float("inf")).argmin(dim=1)
        rows = torch.where(keep.any(dim=1))[0]
        return TripletIndices(a[rows], p[rows], n[rows])
