"""Metric-learning losses, called like pytorch-metric-learning's:
``loss(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None)``.

Pick one by name with :func:`create_loss` (``list_losses()`` gives the names).
"""

from __future__ import annotations

from torch import nn

from lookalike.losses.arcface import ArcFaceLoss
from lookalike.losses.contrastive import ContrastiveLoss
from lookalike.losses.margin import MarginLoss
from lookalike.losses.multi_similarity import MultiSimilarityLoss
from lookalike.losses.range_loss import RangeLoss
from lookalike.losses.triplet import TripletLoss
from lookalike.registry import Registry

__all__ = [
    "ArcFaceLoss",
    "ContrastiveLoss",
    "MarginLoss",
    "MultiSimilarityLoss",
    "RangeLoss",
    "TripletLoss",
    "create_loss",
    "list_losses",
    "loss_class",
]

_REGISTRY: Registry[nn.Module] = Registry(
    "loss",
    {
        "arcface": ArcFaceLoss,
        "contrastive": ContrastiveLoss,
        "margin": MarginLoss,
        "multi_similarity": MultiSimilarityLoss,
        "range": RangeLoss,
        "triplet": TripletLoss,
    },
)


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss`."""
    return _REGISTRY.names()


def create_loss(name: str, **kwargs: object) -> nn.Module:
    """Build a loss by name, e.g. ``create_loss("triplet", margin=0.2)``.

    ``distance`` may be given as a name (``"cosine"``) or a distance object. An unknown name or
    keyword is an error that lists the valid ones.
    """
    return _REGISTRY.create(name, kwargs)


def loss_class(name: str) -> type[nn.Module]:
    """The class :func:`create_loss` would build for ``name`` (to inspect its options)."""
    return _REGISTRY.get(name)
