"""The image Dataset, with the train and eval transforms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from lookalike.data import (
    ImageDecodeError,
    ManifestDataset,
    eval_transform,
    read_manifest,
    train_transform,
    write_manifest,
)
from lookalike.models import Preprocessing

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [
        ("RGB", ".jpg"),
        ("L", ".png"),
        ("1", ".png"),
        ("P", ".png"),
        ("RGBA", ".png"),
        ("LA", ".png"),
        ("RGB", ".webp"),
        ("L", ".tif"),
    ],
)
def test_every_mode_becomes_rgb(tmp_path: Path, make_image, mode: str, suffix: str) -> None:
    path = make_image(tmp_path / "c" / f"x{suffix}", mode=mode, size=(12, 10))
    image, label, row = ManifestDataset(pd.DataFrame({"path": [str(path)], "label": ["c"]}))[0]
    assert image.shape == (3, 10, 12) and image.dtype == torch.float32
    assert 0.0 <= image.min() <= image.max() <= 1.0
    assert (label, row) == (0, 0)
    if mode in ("RGBA", "LA"):  # fully transparent: composited on white
        assert torch.allclose(image, torch.ones_like(image))


def test_labels_classes_and_row_ids(tmp_path: Path, make_image) -> None:
    paths = [str(make_image(tmp_path / f"{i}.png")) for i in range(4)]
    frame = pd.DataFrame({"path": paths, "label": ["b", "a", "b", "c"]}, index=[10, 11, 12, 13])
    subset = frame.iloc[[2, 3]]
    dataset = ManifestDataset(subset)
    assert dataset.classes == ["b", "c"]
    assert dataset.labels.tolist() == [0, 1] and dataset.labels.dtype == torch.int64
    assert [dataset[i][1:] for i in range(2)] == [(0, 12), (1, 13)]  # row ids survive subsetting

    shared = ManifestDataset(subset, classes=["a", "b", "c"])
    assert shared.labels.tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"label\(s\) \['c'\] are not among the 2 classes given"):
        ManifestDataset(subset, classes=["a", "b"])
    with pytest.raises(ValueError, match="index must be unique integers"):
        ManifestDataset(frame.set_index(pd.Index(list("wxyz"))))


def test_row_ids_are_manifest_rows(tmp_path: Path, make_image) -> None:
    paths = [str(make_image(tmp_path / f"{i}.png")) for i in range(3)]
    write_manifest(pd.DataFrame({"path": paths, "label": ["a", "b", "a"]}), tmp_path / "m.csv")
    frame = read_manifest(tmp_path / "m.csv")
    dataset = ManifestDataset(frame[frame["label"] == "a"])
    assert [dataset[i][2] for i in range(len(dataset))] == [0, 2]


def test_undecodable_image_names_file_and_row(tmp_path: Path, make_image) -> None:
    good = make_image(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    dataset = ManifestDataset(
        pd.DataFrame({"path": [str(good), str(bad)], "label": ["a", "a"]}, index=[0, 7])
    )
    with pytest.raises(ImageDecodeError, match=r"row 7: cannot read image '.*bad\.png'"):
        dataset[1]


@pytest.mark.parametrize("build", [train_transform, eval_transform])
def test_transforms_give_normalised_square_tensors(tmp_path: Path, make_image, build) -> None:
    path = make_image(tmp_path / "x.png", mode="L", size=(40, 30), value=255)
    transform = build(Preprocessing(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    image, _, _ = ManifestDataset(pd.DataFrame({"path": [str(path)], "label": ["a"]}), transform=transform)[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full_like(image, 2.0))  # (1 - 0.5) / 0.25


def test_train_transform_is_random_and_eval_transform_is_not(tmp_path: Path) -> None:
    image = torch.rand(3, 40, 50)
    prep = Preprocessing(image_size=24, mean=MEAN, std=STD)
    train, evaluate = train_transform(prep), eval_transform(prep)
    torch.manual_seed(0)
    assert not torch.equal(train(image), train(image))
    assert torch.equal(evaluate(image), evaluate(image))
