"""Contrastive loss (Hadsell, Chopra and LeCun, 2006)."""

from __future__ import annotations

import torch
from torch import nn

from lookalike.distances import BaseDistance
from lookalike.losses._common import (
    check_distance,
    check_inputs,
    check_reduction,
    gather_pairs,
    pair_counts,
    zero_with_grad,
)
from lookalike.miners.tuples import label_masks, to_pairs

__all__ = ["ContrastiveLoss", "contrastive_terms"]


def contrastive_terms(
    values: torch.Tensor, *, pos_margin: float, neg_margin: float, distance: BaseDistance
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise, any shape: the loss of each value if it were a positive pair, and if it were a
    negative pair.

    Positives are pulled until they are closer than ``pos_margin``, negatives pushed until they
    are farther than ``neg_margin`` (for similarities, "closer" means larger).
    """
    pos = torch.relu(distance.margin_gap(pos_margin, values))
    neg = torch.relu(distance.margin_gap(values, neg_margin))
    return pos, neg


class ContrastiveLoss(nn.Module):
    """Contrastive loss on pairs.

    Args:
        pos_margin: positive pairs closer than this cost nothing.
        neg_margin: negative pairs farther than this cost nothing.
        distance: how embeddings are compared (default Euclidean on L2-normalised embeddings).
        reduction: "mean" over all pairs (default), "sum", or "none" (positive pairs first, then
            negative pairs, each in index order).

    Triplet indices ``(a, p, n)`` are read as pairs ``(a, p, a, n)``. Unlike PML's default
    reducer (the mean over non-zero positive losses plus the mean over non-zero negative
    losses), "mean" is the plain mean over all pairs.
    """

    def __init__(
        self,
        *,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        distance: BaseDistance | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)
        self.distance = check_distance(distance)
        self.reduction = check_reduction(reduction)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_inputs(embeddings, labels, ref_emb, ref_labels)
        if indices_tuple is None:  # every pair: masks instead of index tensors
            same, diff = label_masks(labels, ref_labels)
            count = int(same.sum()) + int(diff.sum())
        else:
            a1, p, a2, n = to_pairs(indices_tuple, labels, ref_labels)
            count = len(a1) + len(a2)
        if count == 0:
            return zero_with_grad(embeddings, self.reduction, ref_emb)
        mat = self.distance(embeddings, ref_emb)
        pos, neg = contrastive_terms(
            mat, pos_margin=self.pos_margin, neg_margin=self.neg_margin, distance=self.distance
        )
        if self.reduction == "none":  # boolean selection is row-major, like torch.where
            if indices_tuple is None:
                return torch.cat([pos[same], neg[diff]])
            return torch.cat([gather_pairs(pos, a1, p), gather_pairs(neg, a2, n)])
        # A sum over pairs is a sum over matrix cells weighted by how often each cell is used:
        # elementwise maths with an elementwise backward instead of a gather and a scatter-add.
        if indices_tuple is None:
            total = torch.where(same, pos, 0.0).sum() + torch.where(diff, neg, 0.0).sum()
        else:
            total = (pos * pair_counts(mat, a1, p)).sum() + (neg * pair_counts(mat, a2, n)).sum()
        return total if self.reduction == "sum" else total / count

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, distance={self.distance!r}"
