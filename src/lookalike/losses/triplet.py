"""Triplet margin loss (Weinberger and Saul 2009; Schroff et al. 2015), with a soft-plus variant."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lookalike.distances import BaseDistance
from lookalike.losses._common import gather_pairs
from lookalike.losses.base import BaseLoss, Ref, Tuples
from lookalike.losses.reduction import reduce_terms
from lookalike.tuples import to_triplets

__all__ = ["TripletLoss", "triplet_losses"]


def triplet_losses(
    ap: torch.Tensor,
    an: torch.Tensor,
    *,
    margin: float,
    smooth: bool,
    distance: BaseDistance,
) -> torch.Tensor:
    """(T,), (T,) -> (T,): ``max(d(a,p) - d(a,n) + margin, 0)``, or its soft-plus when ``smooth``.

    Written with ``distance.margin_gap`` so that it also holds for similarities.
    """
    violation = margin - distance.margin_gap(ap, an)
    return F.softplus(violation) if smooth else torch.relu(violation)


class TripletLoss(BaseLoss):
    """Triplet margin loss.

    Args:
        margin: how much closer the positive must be than the negative.
        smooth: use ``softplus(d(a,p) - d(a,n) + margin)`` instead of the hinge.
        distance: a distance object or name; default Euclidean on L2-normalised embeddings.
        reduction: see :mod:`lookalike.losses.reduction`; the terms are the triplets.
            Default ``"mean"``: the mean over all triplets, satisfied ones (zeros) included.
            PML's default (``AvgNonZeroReducer``) is ``"mean_nonzero"``; with semi-hard mining
            every mined triplet is non-zero and the two agree.

    Pair indices are joined into triplets (each positive pair with each negative pair of the same
    anchor), as PML does.
    """

    def __init__(
        self,
        *,
        margin: float = 0.2,
        smooth: bool = False,
        distance: BaseDistance | str | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction, distance=distance)
        self.margin = float(margin)
        self.smooth = bool(smooth)

    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, indices_tuple: Tuples, ref_emb: Ref, ref_labels: Ref
    ) -> Tensor:
        a, p, n = to_triplets(indices_tuple, labels, ref_labels)
        if len(a) == 0:
            return self.zero_loss(embeddings, ref_emb)
        mat = self.distance(embeddings, ref_emb)
        losses = triplet_losses(
            gather_pairs(mat, a, p),
            gather_pairs(mat, a, n),
            margin=self.margin,
            smooth=self.smooth,
            distance=self.distance,
        )
        return reduce_terms(losses, self.reduction, anchors=a, num_anchors=len(embeddings))

    def extra_repr(self) -> str:
        return f"margin={self.margin}, smooth={self.smooth}, distance={self.distance!r}"
