"""The PK batch sampler: P classes x K images, coverage, determinism, workers, DDP, resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from lookalike.data import ManifestDataset, PKSampler


def _labels(seed: int = 0) -> np.ndarray:
    """Uneven classes: 1 to 13 images, one big class of 40, shuffled order."""
    counts = [1 + (7 * i) % 13 for i in range(30)] + [40]
    labels = np.repeat(np.arange(len(counts)) * 3, counts)  # class ids need not be contiguous
    return np.random.default_rng(seed).permutation(labels)


def _check_pk(batch: list[int], labels: np.ndarray, p: int, k: int) -> None:
    assert len(batch) == p * k
    per_class = Counter(labels[batch].tolist())
    assert len(per_class) == p and set(per_class.values()) == {k}
    blocks = [labels[batch[i * k : (i + 1) * k]] for i in range(p)]
    assert all(len(set(b.tolist())) == 1 for b in blocks)  # K consecutive indices per class
    for i in range(p):  # no repeats inside a class block unless the class has fewer than K images
        block = batch[i * k : (i + 1) * k]
        if (labels == labels[block[0]]).sum() >= k:
            assert len(set(block)) == k


@pytest.mark.parametrize(("p", "k"), [(4, 4), (8, 2), (31, 3), (3, 16)])
def test_every_batch_is_p_classes_by_k_and_an_epoch_covers_everything(p: int, k: int) -> None:
    labels = _labels()
    sampler = PKSampler(labels, p=p, k=k, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            _check_pk(batch, labels, p, k)
        assert set().union(*map(set, batches)) == set(range(len(labels)))


def test_same_seed_and_epoch_same_batches_else_different() -> None:
    labels = _labels()
    a, b = PKSampler(labels, p=4, k=4, seed=5), PKSampler(labels, p=4, k=4, seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) == list(a)  # and iterating again replays
    b.set_epoch(3)
    assert list(b) != list(a)
    assert list(PKSampler(labels, p=4, k=4, seed=6)) != list(PKSampler(labels, p=4, k=4, seed=5))
    assert list(PKSampler(torch.as_tensor(labels), p=4, k=4, seed=5)) == list(
        PKSampler(labels, p=4, k=4, seed=5)
    )


def test_ddp_ranks_are_disjoint_equal_length_and_cover_the_epoch() -> None:
    labels = _labels()
    world = 3
    single = PKSampler(labels, p=4, k=4, seed=0)
    ranks = [PKSampler(labels, p=4, k=4, seed=0, rank=r, world_size=world) for r in range(world)]
    for sampler in ranks:
        sampler.set_epoch(1)
    per_rank = [list(s) for s in ranks]
    assert len({len(s) for s in ranks}) == 1 and all(len(b) == len(ranks[0]) for b in per_rank)
    assert len(ranks[0]) == -(-len(single) // world)
    all_batches = [tuple(b) for rank in per_rank for b in rank]
    assert len(set(all_batches)) == len(all_batches)  # no batch served twice
    assert set().union(*map(set, all_batches)) == set(range(len(labels)))
    for batch in all_batches:
        _check_pk(list(batch), labels, 4, 4)
    with pytest.raises(ValueError, match=r"rank=3: expected an integer in \[0, world_size=3\)"):
        PKSampler(labels, p=4, k=4, rank=3, world_size=3)


def test_resume_mid_epoch_with_state_dict_and_start_batch() -> None:
    labels = _labels()
    sampler = PKSampler(labels, p=4, k=4, seed=9)
    sampler.set_epoch(4)
    full = list(sampler)
    state = sampler.state_dict()
    assert state == {"seed": 9, "epoch": 4}

    resumed = PKSampler(labels, p=4, k=4)
    resumed.load_state_dict(state)
    resumed.start_batch(5)
    assert list(resumed) == full[5:]
    assert list(resumed) == full  # the skip applies once
    assert len(resumed) == len(full)
    resumed.load_state_dict({**state, "start_batch": 2})
    assert list(resumed) == full[2:]
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['batch'\]"):
        resumed.load_state_dict({**state, "batch": 1})
    with pytest.raises(ValueError, match="start_batch: n=-1"):
        resumed.start_batch(-1)


def test_too_few_classes_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"2 class\(es\) have images but p=3 classes are needed"):
        PKSampler([0, 0, 1, 1], p=3, k=2)
    with pytest.raises(ValueError, match="k=0: expected an integer >= 1"):
        PKSampler([0, 1], p=2, k=0)
    with pytest.raises(ValueError, match="expected integers of shape"):
        PKSampler([0.5, 1.5], p=2, k=1)


def test_works_as_batch_sampler_with_workers(tmp_path: Path, make_image) -> None:
    rows = [
        (str(make_image(tmp_path / f"{c}_{i}.png", size=(6, 6), value=10 * c)), f"class{c}")
        for c in range(5)
        for i in range(1 + c)
    ]
    dataset = ManifestDataset(pd.DataFrame(rows, columns=["path", "label"]))
    sampler = PKSampler(dataset.labels, p=3, k=2, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=2)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        seen = set()
        expected = list(sampler)
        batches = list(loader)
        assert len(batches) == len(loader) == len(sampler)
        for (images, labels, rows_), indices in zip(batches, expected, strict=True):
            assert images.shape == (6, 3, 6, 6)
            assert rows_.tolist() == indices
            assert labels.tolist() == dataset.labels[indices].tolist()
            seen.update(rows_.tolist())
        assert seen == set(range(len(dataset)))
