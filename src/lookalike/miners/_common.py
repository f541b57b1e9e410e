"""Helpers shared by the miners."""

from __future__ import annotations

import torch

from lookalike.distances import BaseDistance, EuclideanDistance
from lookalike.miners.tuples import check_inputs

__all__ = ["check_distance", "check_inputs", "closeness"]


def check_distance(distance: BaseDistance | None) -> BaseDistance:
    if distance is None:
        return EuclideanDistance()
    if not isinstance(distance, BaseDistance):
        raise TypeError(f"distance must be a lookalike.distances.BaseDistance, got {distance!r}")
    return distance


def closeness(mat: torch.Tensor, distance: BaseDistance) -> torch.Tensor:
    """Values where larger always means closer (the similarity, or minus the distance)."""
    return mat if distance.higher_is_closer else -mat
