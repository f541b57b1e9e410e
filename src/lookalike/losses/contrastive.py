"""Contrastive loss (Hadsell, Chopra and LeCun, 2006)."""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.distances import BaseDistance
from lookalike.losses._common import gather_pairs, sum_over_pairs
from lookalike.losses.base import BaseLoss, Ref, Tuples
from lookalike.losses.reduction import reduce_terms
from lookalike.tuples import label_masks, to_pairs

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


class ContrastiveLoss(BaseLoss):
    """Contrastive loss on pairs.

    Args:
        pos_margin: positive pairs closer than this cost nothing.
        neg_margin: negative pairs farther than this cost nothing.
        distance: a distance object or name (default Euclidean on L2-normalised embeddings).
        reduction: see :mod:`lookalike.losses.reduction`; the terms are the pairs, positive pairs
            first, then negative pairs, each in index order (``"none"``). Default ``"mean"``: the
            mean over all pairs, positive and negative together. PML instead reduces the positive
            and the negative pairs separately and adds the two (its default: the mean of the
            non-zero positive terms + the mean of the non-zero negative terms); with only one
            kind of pair the two conventions agree.

    Triplet indices ``(a, p, n)`` are read as pairs ``(a, p, a, n)``.
    """

    def __init__(
        self,
        *,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        distance: BaseDistance | str | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction, distance=distance)
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)

    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, indices_tuple: Tuples, ref_emb: Ref, ref_labels: Ref
    ) -> Tensor:
        if indices_tuple is None:  # every pair: masks instead of index tensors
            same, diff = label_masks(labels, ref_labels)
            return self.loss_from_pair_masks(embeddings, ref_emb, same, diff)
        a1, p, a2, n = to_pairs(indices_tuple, labels, ref_labels)
        if len(a1) + len(a2) == 0:
            return self.zero_loss(embeddings, ref_emb)
        pos, neg = self._terms(embeddings, ref_emb)
        if self.reduction in ("sum", "mean"):  # no per-pair tensor: see sum_over_pairs
            total = sum_over_pairs(pos, a1, p) + sum_over_pairs(neg, a2, n)
            return total if self.reduction == "sum" else total / (len(a1) + len(a2))
        terms = torch.cat([gather_pairs(pos, a1, p), gather_pairs(neg, a2, n)])
        anchors = torch.cat([a1, a2])
        return reduce_terms(terms, self.reduction, anchors=anchors, num_anchors=len(embeddings))

    def loss_from_pair_masks(
        self,
        embeddings: torch.Tensor,
        ref_emb: torch.Tensor | None,
        positive: torch.Tensor,
        negative: torch.Tensor,
    ) -> torch.Tensor:
        """The loss over the pairs given as (N, M) boolean masks (M = len(ref_emb), or N): what
        ``forward`` computes for the same pairs as index tuples, in the same order for
        ``reduction="none"`` (row-major, like ``torch.where``), without building the indices.
        The cross-batch memory uses it for "all pairs but each query with its own copy"."""
        count = int(positive.sum()) + int(negative.sum())
        if count == 0:
            return self.zero_loss(embeddings, ref_emb)
        pos, neg = self._terms(embeddings, ref_emb)
        if self.reduction == "none":
            return torch.cat([pos[positive], neg[negative]])
        # elementwise maths with an elementwise backward instead of a gather and a scatter-add
        pos, neg = torch.where(positive, pos, 0.0), torch.where(negative, neg, 0.0)
        if self.reduction == "per_anchor":
            per_row = (positive.sum(1) + negative.sum(1)).clamp_min(1).to(pos.dtype)
            return ((pos.sum(1) + neg.sum(1)) / per_row).mean()
        total = pos.sum() + neg.sum()
        if self.reduction == "mean_nonzero":
            count = int((pos > 0).sum()) + int((neg > 0).sum())  # zero outside the masks
            count = max(count, 1)
        return total if self.reduction == "sum" else total / count

    def _terms(
        self, embeddings: torch.Tensor, ref_emb: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mat = self.distance(embeddings, ref_emb)
        return contrastive_terms(
            mat, pos_margin=self.pos_margin, neg_margin=self.neg_margin, distance=self.distance
        )

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, distance={self.distance!r}"
