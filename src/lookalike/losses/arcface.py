"""ArcFace: additive angular margin on class proxies (Deng, Guo, Xue and Zafeiriou, 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lookalike.distances import CosineSimilarity
from lookalike.losses._common import check_class_labels
from lookalike.losses.base import BaseLoss, Ref, Tuples
from lookalike.losses.reduction import reduce_terms

__all__ = ["ArcFaceLoss", "arcface_logits"]


def arcface_logits(
    cosine: torch.Tensor, labels: torch.Tensor, *, margin: float, scale: float
) -> torch.Tensor:
    """Cosine similarities (N, C) of the embeddings with the class proxies, labels (N,) -> scaled
    logits (N, C).

    The target class's cosine ``cos(theta)`` becomes ``cos(theta + margin)``; where
    ``theta + margin`` would pass pi it is ``cos(theta) - margin * sin(margin)`` instead, which keeps
    the logit decreasing in theta (as PML and the reference code do).
    """
    target = cosine.gather(1, labels.unsqueeze(1)).squeeze(1)
    theta = torch.acos(target.clamp(-1.0, 1.0))
    with_margin = torch.where(
        theta <= math.pi - margin, torch.cos(theta + margin), target - margin * math.sin(margin)
    )
    logits = cosine.scatter(1, labels.unsqueeze(1), with_margin.unsqueeze(1))
    return logits * scale


class ArcFaceLoss(BaseLoss):
    """ArcFace: softmax cross-entropy over learnable class proxies with an angular margin.

    Args:
        num_classes: number of training classes (labels must be in ``[0, num_classes)``).
        embedding_size: D.
        margin: additive angular margin in radians (paper: 0.5; PML takes degrees, 28.6).
        scale: logit scale s (paper and PML: 64).
        reduction: see :mod:`lookalike.losses.reduction`; the terms are the N embeddings' cross
            entropies (``"none"``: (N,)). Default ``"mean"`` over the embeddings, as the paper and
            PML; each embedding is its own anchor, so ``"per_anchor"`` equals ``"mean"``.

    The proxies are ``self.proxies`` (C, D), an ``nn.Parameter``: add ``loss.parameters()`` to the
    optimizer. Embeddings and proxies are compared by cosine similarity (``self.distance``, fixed).
    A proxy loss has no tuples: ``indices_tuple`` and ``ref_emb`` are refused.
    """

    refuses_tuples = "is a proxy loss"

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_size: int,
        margin: float = 0.5,
        scale: float = 64.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction, distance=CosineSimilarity())
        if num_classes < 2:
            raise ValueError(f"ArcFaceLoss needs num_classes >= 2, got {num_classes!r}")
        if not 0 <= margin < math.pi / 2:
            raise ValueError(f"margin is an angle in radians in [0, pi/2), got {margin!r}")
        self.num_classes = int(num_classes)
        self.embedding_size = int(embedding_size)
        self.margin = float(margin)
        self.scale = float(scale)
        self.proxies = nn.Parameter(torch.empty(self.num_classes, self.embedding_size))
        nn.init.xavier_normal_(self.proxies)

    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, indices_tuple: Tuples, ref_emb: Ref, ref_labels: Ref
    ) -> Tensor:
        check_class_labels("ArcFaceLoss", labels, self.num_classes)
        cosine = self.distance(embeddings, self.proxies.to(embeddings.dtype))
        logits = arcface_logits(cosine, labels, margin=self.margin, scale=self.scale)
        return reduce_terms(F.cross_entropy(logits, labels, reduction="none"), self.reduction)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
            f"margin={self.margin}, scale={self.scale}"
        )
