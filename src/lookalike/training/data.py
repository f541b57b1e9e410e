"""Training batches: PK batches of seeded items, decoded by a DataLoader (or cached backbone
features), epoch by epoch, resumable at any batch."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from lookalike.data import ManifestDataset

__all__ = ["SeededBatches", "SeededItems", "TrainData"]


class SeededItems(Dataset):
    """Wraps a dataset so that each item is drawn under its own seed: ``ds[(index, seed)]``.

    Random augmentation then depends only on (run seed, epoch, batch, position), not on worker
    processes or how far the process got, which makes resumed runs repeat exactly.
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        # Only the CPU generator drives the transforms; torch.manual_seed would also (lazily) seed
        # every accelerator, which costs ~0.5 ms an item in CUDA builds.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.base[index]


class SeededBatches:
    """A batch sampler yielding ``[(index, item_seed), ...]`` from a PK sampler's batches."""

    def __init__(self, sampler, *, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.epoch = 0
        self.first_batch = 0

    def set_epoch(self, epoch: int, *, start_batch: int = 0) -> None:
        """Next iteration: batches ``start_batch``.. of ``epoch`` (the sampler skips the others)."""
        self.epoch = epoch
        self.first_batch = start_batch
        self.sampler.set_epoch(epoch)
        self.sampler.start_batch(start_batch)

    def __len__(self) -> int:
        return len(self.sampler) - self.first_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b, batch in enumerate(self.sampler, start=self.first_batch):
            base = ((self.seed * 1_000_003 + self.epoch) * 1_000_003 + b) * 4096
            yield [(int(i), (base + j) % 2**63) for j, i in enumerate(batch)]


class TrainData:
    """The training batches of a run, epoch by epoch: ``(inputs, labels)`` on the device.

    ``inputs`` are augmented images (B, C, H, W) decoded by a DataLoader whose workers persist
    across epochs, or, when ``cache_features`` is given (a frozen backbone), rows of the backbone
    features it computes on first use (B, F). Batch ``b`` of epoch ``e`` is the same whichever
    batch an epoch starts at, so a resumed run repeats exactly.
    """

    def __init__(
        self,
        dataset: ManifestDataset,
        batches: SeededBatches,
        *,
        batches_per_epoch: int,
        device: torch.device,
        num_workers: int = 0,
        cache_features: Callable[[], torch.Tensor] | None = None,
    ) -> None:
        self.dataset = dataset
        self.batches = batches
        self.batches_per_epoch = batches_per_epoch
        self.device = device
        self.num_workers = num_workers
        self.cache_features = cache_features
        self._features: torch.Tensor | None = None
        self._loader: DataLoader | None = None

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch(self, epoch: int, *, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start_batch`` .. ``len(self) - 1`` of ``epoch``."""
        self.batches.set_epoch(epoch, start_batch=start_batch)
        count = max(0, self.batches_per_epoch - start_batch)
        for inputs, labels in itertools.islice(self._batches(), count):
            yield inputs.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.cache_features is not None:
            if self._features is None:
                self._features = self.cache_features()
            for batch in self.batches:
                idx = torch.tensor([i for i, _ in batch])
                yield self._features[idx], self.dataset.labels[idx]
            return
        if self._loader is None:
            # the batch sampler runs in this process, so set_epoch() takes effect at every iter()
            self._loader = DataLoader(
                SeededItems(self.dataset),
                batch_sampler=self.batches,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
                worker_init_fn=_lower_priority,
            )
        for inputs, labels, _ in self._loader:
            yield inputs, labels


def _lower_priority(_worker_id: int) -> None:
    """Loader workers yield the CPU to the training step: decoding fills the gaps, it does not
    preempt the forward/backward (matters on machines with few cores)."""
    import os

    with contextlib.suppress(OSError):
        os.nice(5)
