"""Miners pick the tuples a loss is computed on; called like pytorch-metric-learning's:
``miner(embeddings, labels, ref_emb=None, ref_labels=None)`` -> :class:`TripletIndices` or
:class:`PairIndices` (indices into ``ref_emb`` for positives and negatives when it is given).

Every miner derives from :class:`BaseMiner` (``base.py``), which takes ``distance=`` and checks
the inputs once; one family per module. Pick one by name with :func:`create_miner`
(``list_miners()`` gives the names).
:class:`CrossBatchMemory` wraps a loss (and optionally a miner) rather than being a miner.
"""

from __future__ import annotations

from typing import Any

from lookalike.miners.base import BaseMiner
from lookalike.miners.batch_all import BatchAllMiner
from lookalike.miners.batch_hard import BatchHardMiner
from lookalike.miners.cross_batch_memory import CrossBatchMemory
from lookalike.miners.distance_weighted import DistanceWeightedMiner
from lookalike.miners.semihard import SemiHardMiner
from lookalike.registry import Registry
from lookalike.tuples import IndicesTuple, PairIndices, TripletIndices

__all__ = [
    "BaseMiner",
    "BatchAllMiner",
    "BatchHardMiner",
    "CrossBatchMemory",
    "DistanceWeightedMiner",
    "IndicesTuple",
    "PairIndices",
    "SemiHardMiner",
    "TripletIndices",
    "create_miner",
    "list_miners",
    "miner_class",
]

_REGISTRY: Registry[BaseMiner] = Registry(
    "miner",
    {
        "batch_all": BatchAllMiner,
        "batch_hard": BatchHardMiner,
        "distance_weighted": DistanceWeightedMiner,
        "semihard": SemiHardMiner,
    },
)


def list_miners() -> list[str]:
    """Names accepted by :func:`create_miner`."""
    return _REGISTRY.names()


def create_miner(name: str, **kwargs: Any) -> BaseMiner:
    """Build a miner by name, e.g. ``create_miner("semihard", margin=0.2)``.

    ``distance`` may be a name (``"cosine"``) or a distance object. An unknown name or keyword is
    an error that lists the valid ones.
    """
    return _REGISTRY.create(name, kwargs)


def miner_class(name: str) -> type[BaseMiner]:
    """The class :func:`create_miner` would build for ``name`` (to inspect its options)."""
    return _REGISTRY.get(name)
