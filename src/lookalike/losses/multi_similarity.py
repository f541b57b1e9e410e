"""Multi-similarity loss (Wang, Han, Huang, Dong and Scott, 2019)."""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.distances import BaseDistance, CosineSimilarity
from lookalike.losses.base import BaseLoss, Ref, Tuples
from lookalike.losses.reduction import reduce_terms
from lookalike.tuples import label_masks, to_pairs

__all__ = ["MultiSimilarityLoss", "masked_log1p_sum_exp", "multi_similarity_losses"]


def masked_log1p_sum_exp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, M), bool (N, M) -> (N,): ``log(1 + sum_j exp(x_ij))`` over the kept entries; 0 for empty rows."""
    x = x.masked_fill(~mask, float("-inf"))
    x = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)
    out = torch.logsumexp(x, dim=1)
    return out.masked_fill(~mask.any(dim=1), 0.0)


def multi_similarity_losses(
    mat: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_mask: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    base: float,
    distance: BaseDistance,
) -> torch.Tensor:
    """(N, M) values and masks -> (N,) per-anchor losses.

    ``1/alpha log(1 + sum_pos exp(-alpha (S - base))) + 1/beta log(1 + sum_neg exp(beta (S - base)))``
    with S a similarity; for a distance, S - base reads ``base - d``.
    """
    pos_exp = distance.margin_gap(base, mat)  # > 0 when a positive is not closer than base
    neg_exp = distance.margin_gap(mat, base)  # > 0 when a negative is closer than base
    pos = masked_log1p_sum_exp(alpha * pos_exp, pos_mask) / alpha
    neg = masked_log1p_sum_exp(beta * neg_exp, neg_mask) / beta
    return pos + neg


class MultiSimilarityLoss(BaseLoss):
    """Multi-similarity loss, one value per anchor (row of ``embeddings``).

    Args:
        alpha: the scale for positive pairs.
        beta: the scale for negative pairs.
        base: the similarity threshold lambda.
        distance: a distance object or name; default ``CosineSimilarity()`` (as the paper and PML).
        reduction: see :mod:`lookalike.losses.reduction`; the terms are the N anchors' losses
            (``"none"``: (N,) in embedding order; an anchor without pairs is 0). Default
            ``"mean"`` over the N anchors, as the paper and PML; each term is one anchor, so
            ``"per_anchor"`` equals ``"mean"``.

    Only the pairs in ``indices_tuple`` (default: all) enter the sums; pair with
    ``MultiSimilarityMiner``-style mining by passing mined pairs.
    """

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        distance: BaseDistance | str | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction, distance=distance, default_distance=CosineSimilarity())
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = float(base)

    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, indices_tuple: Tuples, ref_emb: Ref, ref_labels: Ref
    ) -> Tensor:
        if indices_tuple is None:
            pos_mask, neg_mask = label_masks(labels, ref_labels)
        else:
            a1, p, a2, n = to_pairs(indices_tuple, labels, ref_labels)
            m = len(labels) if ref_labels is None else len(ref_labels)
            pos_mask = torch.zeros(len(labels), m, dtype=torch.bool, device=embeddings.device)
            neg_mask = torch.zeros_like(pos_mask)
            pos_mask[a1, p] = True
            neg_mask[a2, n] = True
        if not bool(pos_mask.any()) and not bool(neg_mask.any()):
            if self.reduction == "none":
                return embeddings[:, 0] * 0
            return self.zero_loss(embeddings, ref_emb)
        mat = self.distance(embeddings, ref_emb)
        losses = multi_similarity_losses(
            mat, pos_mask, neg_mask, alpha=self.alpha, beta=self.beta, base=self.base, distance=self.distance
        )
        return reduce_terms(losses, self.reduction)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, distance={self.distance!r}"
