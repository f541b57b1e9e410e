"""Margin loss with a learnable boundary beta (Wu, Manmatha, Smola and Krähenbühl, 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lookalike.distances import BaseDistance
from lookalike.losses._common import check_class_labels, gather_pairs
from lookalike.losses.base import BaseLoss, Ref, Tuples
from lookalike.losses.reduction import reduce_terms
from lookalike.tuples import to_triplets

__all__ = ["MarginLoss", "margin_pair_terms"]


def margin_pair_terms(
    ap: torch.Tensor,
    an: torch.Tensor,
    beta: torch.Tensor,
    *,
    margin: float,
    distance: BaseDistance,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T,), (T,), beta (T,) or (1,) -> positive terms (T,), negative terms (T,).

    Positive: ``max(d(a,p) - beta + margin, 0)``; negative: ``max(beta - d(a,n) + margin, 0)``.
    """
    pos = torch.relu(margin - distance.margin_gap(ap, beta))
    neg = torch.relu(margin - distance.margin_gap(beta, an))
    return pos, neg


class MarginLoss(BaseLoss):
    """Margin loss: pairs are judged against a boundary ``beta`` with a margin on each side.

    Args:
        margin: the half-width of the band around beta.
        beta: initial boundary.
        learn_beta: make beta an ``nn.Parameter`` (add ``loss.parameters()`` to the optimizer);
            otherwise it is a fixed buffer.
        num_classes: one beta per class (labels must be in ``[0, num_classes)``); None: one global beta.
        nu: weight of the ``nu * beta`` regulariser.
        distance: a distance object or name; default Euclidean on L2-normalised embeddings.
        reduction: see :mod:`lookalike.losses.reduction`; the terms are the triplets, each
            ``pos + neg + nu x beta`` (``"none"``). Default ``"mean_nonzero"``, as the paper and
            PML (``DivisorReducer``): the sum of the hinge terms divided by the number of
            non-zero hinge terms, where each triplet has two (its positive and its negative pair
            term), plus ``nu`` x the mean beta over triplets. ``"mean"``, ``"sum"`` and
            ``"per_anchor"`` reduce the per-triplet terms as for any loss.

    Note: PML's ``learn_beta`` defaults to False, ours to True; PML divides the per-class
    regulariser by the number of non-zero hinge terms too, we average it over triplets.
    """

    def __init__(
        self,
        *,
        margin: float = 0.2,
        beta: float = 1.2,
        learn_beta: bool = True,
        num_classes: int | None = None,
        nu: float = 0.0,
        distance: BaseDistance | str | None = None,
        reduction: str = "mean_nonzero",
    ) -> None:
        super().__init__(reduction=reduction, distance=distance)
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self.margin = float(margin)
        self.nu = float(nu)
        self.num_classes = num_classes
        self.learn_beta = bool(learn_beta)
        init = torch.full((num_classes or 1,), float(beta))
        if self.learn_beta:
            self.beta = nn.Parameter(init)
        else:
            self.register_buffer("beta", init)

    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, indices_tuple: Tuples, ref_emb: Ref, ref_labels: Ref
    ) -> Tensor:
        a, p, n = to_triplets(indices_tuple, labels, ref_labels)
        if len(a) == 0:
            return self.zero_loss(embeddings, ref_emb, self.beta)
        beta = self.beta.to(embeddings.dtype)
        if self.num_classes is None:
            beta_t = beta.expand(len(a))
        else:
            anchor_labels = labels[a]
            check_class_labels("MarginLoss", anchor_labels, self.num_classes)
            beta_t = beta[anchor_labels]
        mat = self.distance(embeddings, ref_emb)
        pos, neg = margin_pair_terms(
            gather_pairs(mat, a, p),
            gather_pairs(mat, a, n),
            beta_t,
            margin=self.margin,
            distance=self.distance,
        )
        if self.reduction == "mean_nonzero":  # two hinge terms per triplet (see the docstring)
            active = ((pos > 0).sum() + (neg > 0).sum()).clamp_min(1)
            return (pos + neg).sum() / active + self.nu * beta_t.mean()
        terms = pos + neg + self.nu * beta_t
        return reduce_terms(terms, self.reduction, anchors=a, num_anchors=len(embeddings))

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, learn_beta={self.learn_beta}, num_classes={self.num_classes}, "
            f"nu={self.nu}, distance={self.distance!r}"
        )
