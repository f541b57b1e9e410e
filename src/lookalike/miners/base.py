"""The one base class of every miner: the ``distance=`` option and the input checks, done once.

As pytorch-metric-learning's ``BaseMiner``, one level deep: a miner subclasses :class:`BaseMiner`,
passes ``distance`` to ``__init__`` and implements :meth:`BaseMiner.mine`; calling the miner
checks the inputs and mines without building a graph.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from lookalike.distances import BaseDistance, resolve_distance
from lookalike.tuples import IndicesTuple, check_inputs

__all__ = ["BaseMiner", "Ref"]

#: The reference side, ``ref_emb`` (M, D) or ``ref_labels`` (M,), or None for the batch itself.
Ref = Tensor | None


class BaseMiner:
    """A miner, called ``miner(embeddings, labels, ref_emb=None, ref_labels=None)``.

    ``embeddings`` (N, D) and ``labels`` (N,) are the anchors; ``ref_emb`` (M, D) and ``ref_labels``
    (M,), given together, are where positives and negatives come from (default: the batch itself).
    Returns :class:`~lookalike.tuples.TripletIndices` or :class:`~lookalike.tuples.PairIndices`.

    Subclasses list in ``repr_fields`` the attributes their ``repr`` shows.
    """

    repr_fields: ClassVar[tuple[str, ...]] = ("distance",)

    def __init__(self, *, distance: BaseDistance | str | None = None) -> None:
        """``distance``: an object or a name; None: Euclidean on L2-normalised embeddings."""
        self.distance = resolve_distance(distance)

    @torch.no_grad()
    def __call__(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> IndicesTuple:
        check_inputs(embeddings, labels, ref_emb, ref_labels)
        return self.mine(embeddings, labels, ref_emb, ref_labels)

    def mine(self, embeddings: Tensor, labels: Tensor, ref_emb: Ref, ref_labels: Ref) -> IndicesTuple:
        """The tuples of checked inputs (called without autograd)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement mine")

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.repr_fields)
        return f"{type(self).__name__}({fields})"
