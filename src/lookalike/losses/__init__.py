"""Metric-learning losses, called like pytorch-metric-learning's (PML):
``loss(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None)``.

Every loss derives from :class:`BaseLoss` (``base.py``), which takes ``reduction=`` and
``distance=`` and checks the inputs once; each family has its own module, its maths as pure tensor
functions. Pick one by name with :func:`create_loss` (``list_losses()`` gives the names).
``distance=`` takes a distance object or a name from ``lookalike.distances.list_distances()``.

The reduction contract (details: :mod:`lookalike.losses.reduction`). Every loss computes *terms*,
equal to PML's per-element losses, then reduces them as ``reduction=`` names:

- ``"none"``: the terms, one per triplet (triplet, margin), per pair (contrastive: positive pairs
  first, then negative pairs), per anchor (multi-similarity, ArcFace) or per class (range);
- ``"sum"``: their sum (PML ``SumReducer``);
- ``"mean"``: their mean, zeros included (PML ``MeanReducer``);
- ``"mean_nonzero"``: the sum over the number of non-zero terms (PML ``AvgNonZeroReducer``);
- ``"per_anchor"``: each anchor's mean over its terms (0 without any), averaged over the N
  rows of ``embeddings`` (PML ``PerAnchorReducer``).

The default is ``"mean"`` for every loss but :class:`MarginLoss`, whose paper (and PML) divides
by the number of non-zero hinge terms: ``"mean_nonzero"``, two hinge terms per triplet. PML's
defaults differ for the triplet loss (``AvgNonZeroReducer``: pass ``reduction="mean_nonzero"``)
and the contrastive loss (PML reduces the positive and negative pairs separately and adds the
two). :class:`RangeLoss` takes ``"mean"``, ``"sum"`` (the paper's total) and ``"none"`` only.
Each class's docstring says what its default averages over.
"""

from __future__ import annotations

from lookalike.losses.arcface import ArcFaceLoss
from lookalike.losses.base import BaseLoss
from lookalike.losses.contrastive import ContrastiveLoss
from lookalike.losses.margin import MarginLoss
from lookalike.losses.multi_similarity import MultiSimilarityLoss
from lookalike.losses.range_loss import RangeLoss
from lookalike.losses.triplet import TripletLoss
from lookalike.registry import Registry

__all__ = [
    "ArcFaceLoss",
    "BaseLoss",
    "ContrastiveLoss",
    "MarginLoss",
    "MultiSimilarityLoss",
    "RangeLoss",
    "TripletLoss",
    "create_loss",
    "list_losses",
    "loss_class",
]

_REGISTRY: Registry[BaseLoss] = Registry(
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


def create_loss(name: str, **kwargs: object) -> BaseLoss:
    """Build a loss by name, e.g. ``create_loss("triplet", margin=0.2)``.

    ``distance`` may be given as a name (``"cosine"``) or a distance object. An unknown name or
    keyword is an error that lists the valid ones.
    """
    return _REGISTRY.create(name, kwargs)


def loss_class(name: str) -> type[BaseLoss]:
    """The class :func:`create_loss` would build for ``name`` (to inspect its options)."""
    return _REGISTRY.get(name)
