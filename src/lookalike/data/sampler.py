"""The PK batch sampler: every batch holds P classes x K images.

How an epoch is built (all draws from one generator seeded by ``(seed, epoch)``):

1. Each class's images are shuffled and cut into chunks of K. A class with fewer than K images
   gives one chunk, filled up by drawing from the class with replacement; a last, short chunk is
   filled up with other images of the class (no repeats within a chunk).
2. Chunks are dealt into ``B = max(ceil(chunks / P), most chunks of one class)`` batches, class
   by class in a random class order, chunk j going to batch j mod B: a class never lands twice in
   a batch, and no batch gets more than P chunks.
3. A batch short of P classes is filled with a random K-image chunk of classes not yet in it;
   the batches are shuffled, and padded with extra random batches to a multiple of
   ``world_size``. Rank r takes batches r, r + world_size, ...

So every image is visited at least once per epoch, and ``len(sampler)`` is the same for every
epoch and every rank: ``ceil(B / world_size)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["PKSampler"]


class PKSampler(Sampler[list[int]]):
    """Yields lists of P*K dataset indices, K consecutive ones per class, P distinct classes.

    ``labels`` (N,): one class id per dataset index (ints, e.g. ``ManifestDataset.labels``).
    Use it as a DataLoader's ``batch_sampler``; call :meth:`set_epoch` before each epoch.
    For an exact mid-epoch resume, restore :meth:`state_dict` and call :meth:`start_batch` with
    the number of this rank's batches already done: the next iteration skips them (once).
    ``len(sampler)`` is always the full number of batches this rank yields per epoch.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        *,
        p: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        for name, value, low in (("p", p, 1), ("k", k, 1), ("seed", seed, 0), ("world_size", world_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"PKSampler: {name}={value!r}: expected an integer >= {low}")
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or not 0 <= rank < world_size:
            raise ValueError(f"PKSampler: rank={rank!r}: expected an integer in [0, world_size={world_size})")
        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"PKSampler: labels of shape {labels.shape} and dtype {labels.dtype}: "
                "expected integers of shape (N,)"
            )
        classes, inverse = np.unique(labels, return_inverse=True)
        if len(classes) < p:
            raise ValueError(
                f"PKSampler: {len(classes)} class(es) have images but p={p} classes are needed per batch; "
                f"use p <= {len(classes)} or more classes"
            )
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(classes)))[:-1]
        self._members: list[np.ndarray] = np.split(order, bounds)
        self.p, self.k = int(p), int(k)
        self.seed, self.epoch = int(seed), 0
        self.rank, self.world_size = int(rank), int(world_size)
        self._skip = 0
        chunks = [max(1, math.ceil(len(m) / self.k)) for m in self._members]
        self._n_global = max(math.ceil(sum(chunks) / self.p), max(chunks))

    def __len__(self) -> int:
        return math.ceil(self._n_global / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (deterministic per seed, epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise ValueError(f"PKSampler.set_epoch: epoch={epoch!r}: expected an integer >= 0")
        self.epoch = int(epoch)

    def start_batch(self, n: int) -> None:
        """Make the next iteration skip this rank's first ``n`` batches of the epoch (resume)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 <= n <= len(self):
            raise ValueError(f"PKSampler.start_batch: n={n!r}: expected an integer in [0, {len(self)}]")
        self._skip = int(n)

    def state_dict(self) -> dict[str, int]:
        """``{"seed", "epoch"}``: with the same labels, p, k, rank and world size, enough to replay."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; an optional ``start_batch`` key calls :meth:`start_batch`."""
        unknown = sorted(set(state) - {"seed", "epoch", "start_batch"})
        missing = sorted({"seed", "epoch"} - set(state))
        if unknown or missing:
            raise ValueError(
                f"PKSampler.load_state_dict: unknown key(s) {unknown}, missing key(s) {missing}; "
                "expected 'seed', 'epoch' and optionally 'start_batch'"
            )
        if (
            isinstance(state["seed"], bool)
            or not isinstance(state["seed"], int | np.integer)
            or state["seed"] < 0
        ):
            raise ValueError(f"PKSampler.load_state_dict: seed={state['seed']!r}: expected an integer >= 0")
        self.seed = int(state["seed"])
        self.set_epoch(state["epoch"])
        self.start_batch(state.get("start_batch", 0))

    def _chunk(self, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """K random images of one class: without replacement when it has K, else all plus repeats."""
        if len(members) >= self.k:
            return rng.choice(members, size=self.k, replace=False)
        return np.concatenate([rng.permutation(members), rng.choice(members, size=self.k - len(members))])

    def _class_chunks(self, members: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        if len(members) < self.k:
            return [self._chunk(members, rng)]
        shuffled = rng.permutation(members)
        chunks = [shuffled[i : i + self.k] for i in range(0, len(shuffled), self.k)]
        short = len(chunks[-1])
        if short < self.k:
            others = shuffled[: len(shuffled) - short]
            chunks[-1] = np.concatenate([chunks[-1], rng.choice(others, size=self.k - short, replace=False)])
        return chunks

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Every rank's batches of ``epoch``, before rank selection: ``world_size * len(self)`` lists."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n_classes, n_batches = len(self._members), self._n_global
        batches: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n_batches)]
        slot = 0
        for c in rng.permutation(n_classes):
            for chunk in self._class_chunks(self._members[c], rng):
                batches[slot % n_batches].append((int(c), chunk))
                slot += 1
        for batch in batches:
            present = {c for c, _ in batch}
            while len(batch) < self.p:  # rejection draws: cheap with many classes, ends as n_classes >= p
                c = int(rng.integers(n_classes))
                if c not in present:
                    present.add(c)
                    batch.append((c, self._chunk(self._members[c], rng)))
        for _ in range(len(self) * self.world_size - n_batches):
            picked = rng.choice(n_classes, size=self.p, replace=False)
            batches.append([(int(c), self._chunk(self._members[c], rng)) for c in picked])
        out = []
        for b in rng.permutation(len(batches)):
            batch = batches[b]
            out.append([int(i) for j in rng.permutation(len(batch)) for i in batch[j][1]])
        return out

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        mine = self.epoch_batches(self.epoch)[self.rank :: self.world_size]
        yield from mine[skip:]
