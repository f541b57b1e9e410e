"""Training batches: PK batches of seeded items, decoded by a DataLoader (or cached backbone
features), epoch by epoch, resumable at any batch."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from lookalike.data import BatchTrainTransform, ManifestDataset

__all__ = ["AugmentedBatches", "SeededBatches", "SeededItems", "TrainData"]


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


class AugmentedBatches(Dataset):
    """``ds[batch]`` for a batch ``[(index, item_seed), ...]`` of :class:`SeededBatches`: the
    batch's images, held in memory as uint8 tensors in the model's channels, augmented together by
    ``transform`` under a generator seeded with the batch's first item seed, and their labels.

    The randomness then depends only on (run seed, epoch, batch), as with :class:`SeededItems`, so
    resumed runs repeat exactly. Images of one size are stacked into one tensor (N, C, H, W);
    images of mixed sizes are padded per batch by repeating their edges (so resampling at a crop's
    border reads the image's own edge, as it would unpadded).
    """

    def __init__(self, pixels: list[torch.Tensor], labels: torch.Tensor, transform: BatchTrainTransform):
        self.labels = labels
        self.transform = transform
        uniform = len({tuple(p.shape) for p in pixels}) <= 1
        self._stacked = torch.stack(pixels) if uniform else None
        self._pixels = None if uniform else pixels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, batch: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor([i for i, _ in batch])
        generator = torch.Generator().manual_seed(batch[0][1])
        sizes = None
        if self._stacked is not None:
            images = self._stacked[idx]
        else:
            chosen = [self._pixels[i] for i in idx.tolist()]
            sizes = torch.tensor([p.shape[1:] for p in chosen])
            height, width = (int(v) for v in sizes.max(dim=0).values)
            images = torch.stack(
                [
                    torch.nn.functional.pad(
                        p[None].float(), (0, width - p.shape[2], 0, height - p.shape[1]), mode="replicate"
                    )[0]
                    for p in chosen
                ]
            )
        # (no torch.set_num_threads(1) around this: any call to it left the model's steps ~15% slower)
        images = self.transform(images, sizes, generator=generator)
        return images, self.labels[idx]


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

    ``batch_transform`` (used only when the dataset holds its images in memory): each batch is cut
    from the cached pixels, converted once to the model's channels, and augmented as a whole
    (:class:`AugmentedBatches`) instead of item by item through the dataset's transform; for tiny
    images that per-item work cost as much as a tenth of the training step.
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
        batch_transform: BatchTrainTransform | None = None,
    ) -> None:
        self.dataset = dataset
        self.batches = batches
        self.batches_per_epoch = batches_per_epoch
        self.device = device
        self.num_workers = num_workers
        self.cache_features = cache_features
        self.batch_transform = batch_transform if dataset.cached else None
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
        if self._loader is None and self.batch_transform is not None:
            # one loader item per batch: the sampler runs in this process (set_epoch() takes effect)
            channels = "L" if self.batch_transform.channels == 1 else "RGB"
            self._loader = DataLoader(
                AugmentedBatches(
                    self.dataset.cached_tensors(channels), self.dataset.labels, self.batch_transform
                ),
                sampler=self.batches,
                batch_size=None,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
                worker_init_fn=_lower_priority,
            )
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
        for inputs, labels, *_ in self._loader:
            yield inputs, labels


def _lower_priority(_worker_id: int) -> None:
    """Loader workers yield the CPU to the training step: decoding fills the gaps, it does not
    preempt the forward/backward (matters on machines with few cores)."""
    import os

    with contextlib.suppress(OSError):
        os.nice(5)
