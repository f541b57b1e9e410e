"""ArcFace: additive angular margin on class proxies (Deng, Guo, Xue and Zafeiriou, 2019)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lookalike.losses._common import refuse_tuples
from lookalike.losses.reduction import check_reduction, reduce_terms
from lookalike.tuples import check_inputs

__all__ = ["ArcFaceLoss", "arcface_logits"]


def arcface_logits(
    embeddings: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, *, margin: float, scale: float
) -> torch.Tensor:
    """(N, D), proxies (C, D), labels (N,) -> scaled logits (N, C).

    The target class's cosine ``cos(theta)`` becomes ``cos(theta + margin)``; where
    ``theta + margin`` would pass pi it is ``cos(theta) - margin * sin(margin)`` instead, which keeps
    the logit decreasing in theta (as PML and the reference code do).
    """
    cosine = F.normalize(embeddings, dim=1) @ F.normalize(proxies, dim=1).T
    target = cosine.gather(1, labels.unsqueeze(1)).squeeze(1)
    theta = torch.acos(target.clamp(-1.0, 1.0))
    with_margin = torch.where(
        theta <= math.pi - margin, torch.cos(theta + margin), target - margin * math.sin(margin)
    )
    logits = cosine.scatter(1, labels.unsqueeze(1), with_margin.unsqueeze(1))
    return logits * scale


class ArcFaceLoss(nn.Module):
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
    optimizer. A proxy loss has no tuples: ``indices_tuple`` and ``ref_emb`` are refused.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_size: int,
        margin: float = 0.5,
        scale: float = 64.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"ArcFaceLoss needs num_classes >= 2, got {num_classes!r}")
        if not 0 <= margin < math.pi / 2:
            raise ValueError(f"margin is an angle in radians in [0, pi/2), got {margin!r}")
        self.num_classes = int(num_classes)
        self.embedding_size = int(embedding_size)
        self.margin = float(margin)
        self.scale = float(scale)
        self.reduction = check_reduction(reduction)
        self.proxies = nn.Parameter(torch.empty(self.num_classes, self.embedding_size))
        nn.init.xavier_normal_(self.proxies)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_inputs(embeddings, labels, ref_emb, ref_labels)
        refuse_tuples("ArcFaceLoss", "is a proxy loss", indices_tuple, ref_emb)
        bad = (labels < 0) | (labels >= self.num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"ArcFaceLoss(num_classes={self.num_classes}) got label {int(labels[bad][0])}; "
                f"labels must be in [0, {self.num_classes})"
            )
        proxies = self.proxies.to(embeddings.dtype)
        logits = arcface_logits(embeddings, proxies, labels, margin=self.margin, scale=self.scale)
        return reduce_terms(F.cross_entropy(logits, labels, reduction="none"), self.reduction)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
            f"margin={self.margin}, scale={self.scale}"
        )
