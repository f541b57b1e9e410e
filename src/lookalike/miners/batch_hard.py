"""Batch-hard mining (Hermans, Beyer and Leibe, 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.distances import closeness
from lookalike.miners.base import BaseMiner, Ref
from lookalike.tuples import TripletIndices, label_masks

__all__ = ["BatchHardMiner"]


class BatchHardMiner(BaseMiner):
    """Per anchor, the farthest positive and the closest negative: one triplet per anchor.

    Anchors without a positive or without a negative are skipped. Matches PML's
    ``BatchHardMiner`` (which returns the same triplets).

    Args:
        distance: default Euclidean on normalised embeddings.
    """

    def mine(self, embeddings: Tensor, labels: Tensor, ref_emb: Ref, ref_labels: Ref) -> TripletIndices:
        same, diff = label_masks(labels, ref_labels)
        close = closeness(self.distance(embeddings, ref_emb), self.distance)
        p = close.masked_fill(~same, float("inf")).argmin(dim=1)  # least close positive
        n = close.masked_fill(~diff, float("-inf")).argmax(dim=1)  # closest negative
        a = torch.where(same.any(dim=1) & diff.any(dim=1))[0]
        return TripletIndices(a, p[a], n[a])
