"""Builders of the tune tests: a tiny image folder and a base config over it."""

from pathlib import Path

import numpy as np
import yaml
from PIL import Image


def make_tune_data(root: Path, *, classes: int = 12, per_class: int = 5, size: int = 20) -> Path:
    """A tiny folder-per-class set that is not trivially separable: close colours plus heavy noise."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        base = np.array([90 + 6 * c, 120, 150 - 5 * c])
        for i in range(per_class):
            img = np.clip(base + rng.normal(0, 45, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


def write_base_config(folder: Path, **sections) -> Path:
    cfg = {
        "data": {"root": str(make_tune_data(folder / "imgs")), "val": 0.34, "test": 0.25, "seed": 0},
        "model": {"backbone": "convnet4", "embed_dim": 8, "image_size": 20},
        "sampler": {"p": 3, "k": 2},
        "optim": {"lr": 1e-3, "warmup_epochs": 0},
        "train": {"epochs": 1, "steps_per_epoch": 2},
        "eval": {"ks": [1, 2]},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    path = folder / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
