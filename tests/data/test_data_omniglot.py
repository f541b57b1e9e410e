"""The data layer on real data: Omniglot (1-bit PNGs, nested class folders)."""

from __future__ import annotations

from pathlib import Path

import torch

from lookalike.data import ManifestDataset, PKSampler, eval_transform, manifest_from_folder, split_manifest
from lookalike.models import Preprocessing


def test_omniglot_split_dataset_and_sampler(omniglot: Path) -> None:
    frame = manifest_from_folder(omniglot)
    assert len(frame) == 4840 and frame["label"].nunique() == 242
    split = split_manifest(frame, val=0.1, test=0.2, seed=0).frame
    train = split[split["split"] == "train"]

    transform = eval_transform(Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    dataset = ManifestDataset(train, transform=transform)
    assert len(dataset.classes) == 170
    image, label, row = dataset[0]
    assert image.shape == (3, 32, 32) and torch.equal(image[0], image[1])  # grayscale became RGB
    assert train["label"].loc[row] == dataset.classes[label]

    sampler = PKSampler(dataset.labels, p=16, k=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 54  # 170 classes x 5 chunks of 4 / 16
    assert set().union(*map(set, batches)) == set(range(len(dataset)))
    assert all(dataset.labels[b].unique().numel() == 16 for b in batches)
