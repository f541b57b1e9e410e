"""Batch-hard mining (Hermans, Beyer and Leibe, 2017)."""

from __future__ import annotations

import torch

from lookalike.distances import BaseDistance, closeness, resolve_distance
from lookalike.tuples import TripletIndices, check_inputs, label_masks

__all__ = ["BatchHardMiner"]


class BatchHardMiner:
    """Per anchor, the farthest positive and the closest negative: one triplet per anchor.

    Anchors without a positive or without a negative are skipped. Matches PML's
    ``BatchHardMiner`` (which returns the same triplets).

    Args:
        distance: default Euclidean on normalised embeddings.
    """

    def __init__(self, *, distance: BaseDistance | str | None = None) -> None:
        self.distance = resolve_distance(distance)

    @torch.no_grad()
    def __call__(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> TripletIndices:
        check_inputs(embeddings, labels, ref_emb, ref_labels)
        same, diff = label_masks(labels, ref_labels)
        close = closeness(self.distance(embeddings, ref_emb), self.distance)
        p = close.masked_fill(~same, float("inf")).argmin(dim=1)  # least close positive
        n = close.masked_fill(~diff, float("-inf")).argmax(dim=1)  # closest negative
        a = torch.where(same.any(dim=1) & diff.any(dim=1))[0]
        return TripletIndices(a, p[a], n[a])

    def __repr__(self) -> str:
        return f"BatchHardMiner(distance={self.distance!r})"
