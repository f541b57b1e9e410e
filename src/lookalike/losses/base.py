"""The one base class of every loss: the shared options and input checks, done once.

As pytorch-metric-learning's ``BaseMetricLossFunction``, one level deep: a loss subclasses
:class:`BaseLoss`, passes its ``reduction`` (and ``distance``) to ``__init__`` and implements
:meth:`BaseLoss.compute_loss`; ``forward`` checks the inputs and calls it. The maths stays in each
loss's module as pure tensor functions.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from lookalike.distances import BaseDistance, resolve_distance
from lookalike.losses._common import refuse_tuples, zero_with_grad
from lookalike.losses.reduction import REDUCTIONS, check_reduction
from lookalike.tuples import check_inputs

__all__ = ["BaseLoss", "Ref", "Tuples"]

#: A miner's output (a TripletIndices or PairIndices), or None for every tuple of the batch.
Tuples = tuple[Tensor, ...] | None
#: The reference side, ``ref_emb`` (M, D) or ``ref_labels`` (M,), or None for the batch itself.
Ref = Tensor | None


class BaseLoss(nn.Module):
    """A metric-learning loss, called ``loss(embeddings, labels, indices_tuple=None, ref_emb=None,
    ref_labels=None)``.

    ``embeddings`` (N, D) and ``labels`` (N,); ``ref_emb`` (M, D) and ``ref_labels`` (M,) together
    or not at all; ``indices_tuple`` a miner's output (indices into ``ref_emb`` when it is given).
    Every bad input is a ValueError that names it, before any maths.

    Subclasses set:

    - ``reductions``: the reductions they accept (default all of
      :data:`~lookalike.losses.reduction.REDUCTIONS`);
    - ``refuses_tuples``: why they are computed on the batch alone (proxy or class-centre losses),
      which makes ``indices_tuple`` and ``ref_emb`` an error; None (default) accepts them.
    """

    reductions: ClassVar[tuple[str, ...]] = REDUCTIONS
    refuses_tuples: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        reduction: str,
        distance: BaseDistance | str | None = None,
        default_distance: BaseDistance | None = None,
    ) -> None:
        """``distance``: an object or a name (None: ``default_distance``, else Euclidean on
        L2-normalised embeddings)."""
        super().__init__()
        owner = "" if self.reductions == REDUCTIONS else type(self).__name__
        self.reduction = check_reduction(reduction, valid=self.reductions, owner=owner)
        self.distance = resolve_distance(distance, default=default_distance)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_inputs(embeddings, labels, ref_emb, ref_labels)
        if self.refuses_tuples is not None:
            refuse_tuples(type(self).__name__, self.refuses_tuples, indices_tuple, ref_emb)
        return self.compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)

    def compute_loss(
        self, embeddings: Tensor, labels: Tensor, indices_tuple: Tuples, ref_emb: Ref, ref_labels: Ref
    ) -> Tensor:
        """The loss of checked inputs, reduced as ``self.reduction`` says."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compute_loss")

    def zero_loss(self, embeddings: torch.Tensor, *extra: torch.Tensor | None) -> torch.Tensor:
        """A zero loss still connected to ``embeddings`` (and ``extra``), for a batch without
        tuples; an empty (0,) tensor under ``reduction="none"``."""
        return zero_with_grad(embeddings, self.reduction, *extra)
