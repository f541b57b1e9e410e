"""data.cache_images: decoded training images held in memory when they fit a budget."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from lookalike.config import validate_config
from lookalike.data import ManifestDataset


def test_cache_images_serves_the_same_tensors_from_memory(tmp_path: Path, make_image) -> None:
    paths = [make_image(tmp_path / "a" / f"{i}.png", value=10 * i, size=(12 + i, 10)) for i in range(4)]
    frame = pd.DataFrame({"path": [str(p) for p in paths], "label": ["a", "a", "b", "b"]})
    plain = ManifestDataset(frame)
    cached = ManifestDataset(frame, cache_bytes=2**20)
    assert cached.cached and not plain.cached
    expected = [plain[i] for i in range(4)]
    for p in paths:  # served from memory: the files are no longer needed
        p.unlink()
    for i in range(4):
        image, label, row = cached[i]
        assert torch.equal(image, expected[i][0]) and (label, row) == expected[i][1:]


def test_cache_images_over_budget_reads_from_disk_and_says_why(tmp_path: Path, make_image, caplog) -> None:
    paths = [make_image(tmp_path / f"{i}.png", size=(20, 20)) for i in range(3)]
    frame = pd.DataFrame({"path": [str(p) for p in paths], "label": ["a", "b", "c"]})
    with caplog.at_level(logging.WARNING, logger="lookalike.data.dataset"):
        dataset = ManifestDataset(frame, cache_bytes=2 * 20 * 20 * 3)  # room for two of the three
    assert not dataset.cached
    assert "need more than" in caplog.text and "cache_images_mb" in caplog.text
    assert dataset[2][0].shape == (3, 20, 20)


def test_cache_images_config_keys() -> None:
    config = validate_config({"data": {"root": "x"}})
    assert config.data.cache_images is True and config.data.cache_images_mb == 1024
    off = validate_config({"data": {"root": "x", "cache_images": False, "cache_images_mb": 5}})
    assert off.data.cache_images is False and off.data.cache_images_mb == 5
