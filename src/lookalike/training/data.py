"""From the config's ``data.root`` (image folder, manifest, or split manifest) to the run's split."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from lookalike.data import (
    file_sha256,
    manifest_from_folder,
    read_manifest,
    split_manifest,
    write_manifest,
)

if TYPE_CHECKING:
    import pandas as pd

    from lookalike.config import DataConfig

__all__ = ["SeededBatches", "SeededItems", "resolve_split", "sorted_class_split"]

SPLIT_FILE = "split.csv"


def resolve_split(data: DataConfig, run_dir: Path, *, write: bool = True) -> pd.DataFrame:
    """The split manifest of a run: ``run_dir/split.csv`` if the run has one (resume), else the
    config's source, split class-disjointly (seeded, as ``lookalike split`` does) unless it
    already carries ``split`` and ``role`` columns. The result is saved in the run folder."""
    saved = run_dir / SPLIT_FILE
    if saved.exists():
        return read_manifest(saved)
    root = Path(data.root)
    if root.is_dir():
        frame = manifest_from_folder(root)
    elif root.is_file():
        frame = read_manifest(root)
    else:
        raise FileNotFoundError(
            f"data.root {str(root)!r} does not exist (resolved from {Path.cwd()}); give an image folder "
            "(a folder per class) or a manifest file (CSV/Parquet with path and label columns)"
        )
    if not {"split", "role"} <= set(frame.columns):
        keep = data.class_order == "sorted"
        if keep:
            frame = frame.assign(split=sorted_class_split(frame["label"], val=data.val, test=data.test))
        frame = split_manifest(
            frame,
            val=data.val,
            test=data.test,
            seed=data.seed,
            queries_per_class=data.queries_per_class,
            protocol=data.protocol,
            keep_benchmark_split=keep,
            source_sha256=file_sha256(root) if root.is_file() else None,
        ).frame
    if write:
        write_manifest(frame, saved)
    return frame


def sorted_class_split(labels: pd.Series, *, val: float, test: float) -> pd.Series:
    """``split`` per row when classes are assigned by name: the last ``test`` share of the sorted
    class names is test, the ``val`` share before them val, the rest train."""
    classes = sorted(labels.astype(str).unique())
    n = len(classes)
    n_test, n_val = round(test * n), round(val * n)
    if n - n_test - n_val < 1:
        raise ValueError(f"val={val}, test={test} of {n} classes leaves no class to train")
    split_of = dict.fromkeys(classes[: n - n_test - n_val], "train")
    split_of.update(dict.fromkeys(classes[n - n_test - n_val : n - n_test], "val"))
    split_of.update(dict.fromkeys(classes[n - n_test :], "test"))
    return labels.astype(str).map(split_of)


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
