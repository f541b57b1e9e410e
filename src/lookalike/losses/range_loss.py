"""Range loss (Zhang, Fang, Wen, Li and Qiao, 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.distances import BaseDistance, EuclideanDistance
from lookalike.losses.base import BaseLoss, Ref, Tuples

__all__ = ["RangeLoss", "range_loss_terms", "squared_euclidean"]


def squared_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, D), (M, D) -> (N, M) squared Euclidean distances (no normalisation), O(N M) memory."""
    xx = (x * x).sum(1, keepdim=True)
    yy = (y * y).sum(1, keepdim=True)
    return (xx + yy.T - 2.0 * (x @ y.T)).clamp_min(0.0)


def range_loss_terms(
    x: torch.Tensor, labels: torch.Tensor, *, k: int, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D), (N,) -> intra-class terms (C2,) for the classes with >= 2 samples (in sorted label
    order), and the inter-class term ().

    Intra term of a class: the harmonic mean of its k largest squared distances (fewer when the
    class has fewer pairs). Inter term: ``max(margin - D, 0)`` with D the smallest squared
    distance between two class centres of the batch (0 when the batch has one class).
    """
    classes, inv = torch.unique(labels, return_inverse=True)
    num_classes = len(classes)
    sq = squared_euclidean(x, x)
    # Each unordered same-class pair once.
    same = (inv.unsqueeze(1) == inv.unsqueeze(0)).triu(diagonal=1)
    i, j = torch.where(same)
    values = sq[i, j]
    cls = inv[i]
    # Sort by value (descending), then stably by class: each class's pairs, largest first.
    order = torch.argsort(values, descending=True)
    order = order[torch.argsort(cls[order], stable=True)]
    values, cls = values[order], cls[order]
    pair_counts = torch.bincount(cls, minlength=num_classes)
    starts = torch.cumsum(pair_counts, 0) - pair_counts
    rank = torch.arange(len(values), device=x.device) - starts[cls]
    keep = rank < k
    inv_sum = torch.zeros(num_classes, dtype=x.dtype, device=x.device).index_add(
        0, cls[keep], 1.0 / values[keep].clamp_min(1e-12)
    )
    has_pairs = pair_counts > 0
    n_used = pair_counts.clamp(max=k).to(x.dtype)
    intra = n_used[has_pairs] / inv_sum[has_pairs]

    if num_classes < 2:
        return intra, x.sum() * 0
    counts = torch.bincount(inv, minlength=num_classes).to(x.dtype)
    centres = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, inv, x)
    centres = centres / counts.unsqueeze(1)
    csq = squared_euclidean(centres, centres)
    upper = torch.ones_like(csq, dtype=torch.bool).triu(diagonal=1)
    inter = torch.relu(margin - csq[upper].min())
    return intra, inter


class RangeLoss(BaseLoss):
    """Range loss: shrink each class's range, push the two closest class centres apart.

    Args:
        k: how many of the largest intra-class distances enter the harmonic mean.
        margin: the smallest squared distance wanted between class centres (on normalised
            embeddings squared distances are in [0, 4]).
        alpha, beta: weights of the intra- and inter-class terms.
        distance: must be Euclidean (an object, or the name ``"euclidean"``); its
            ``normalize_embeddings`` decides whether embeddings are L2-normalised first. The loss
            always works with squared Euclidean distances.
        reduction: the terms are the classes with >= 2 samples, ``alpha x intra_c + beta x inter``
            (``"none"``). Default ``"mean"``: their mean, i.e. alpha x the mean intra term + beta x
            inter. ``"sum"`` is the paper's total, alpha x the sum of the intra terms + beta x
            inter (the batch's one inter term counted once, so not the sum of ``"none"``).
            ``"mean_nonzero"`` and ``"per_anchor"`` do not apply (no tuples, no anchors).

    Range loss is defined on the batch: ``indices_tuple`` and ``ref_emb`` are refused.
    """

    reductions = ("mean", "sum", "none")
    refuses_tuples = "is computed on the whole batch"

    def __init__(
        self,
        *,
        k: int = 2,
        margin: float = 1.0,
        alpha: float = 1.0,
        beta: float = 1.0,
        distance: BaseDistance | str | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction, distance=distance)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        if not isinstance(self.distance, EuclideanDistance):
            raise ValueError(
                f"RangeLoss works with squared Euclidean distances; got distance={self.distance!r}"
            )
        self.k = int(k)
        self.margin = float(margin)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, indices_tuple: Tuples, ref_emb: Ref, ref_labels: Ref
    ) -> Tensor:
        if len(labels) == 0:
            return self.zero_loss(embeddings)
        x = self.distance.normalize(embeddings)
        intra, inter = range_loss_terms(x, labels, k=self.k, margin=self.margin)
        if self.reduction == "none":
            return self.alpha * intra + self.beta * inter
        if len(intra) == 0:
            return self.beta * inter + x.sum() * 0
        intra_total = intra.sum() if self.reduction == "sum" else intra.mean()
        return self.alpha * intra_total + self.beta * inter

    def extra_repr(self) -> str:
        return f"k={self.k}, margin={self.margin}, alpha={self.alpha}, beta={self.beta}"
