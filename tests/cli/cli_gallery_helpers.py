"""Small fixtures shared by the `index` and `search` CLI tests: a tiny checkpoint, a folder of
labelled synthetic images, and a snapshot of a gallery's files (equal snapshots = nothing modified)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lookalike.models import create_embedder_from, save_checkpoint


def tiny_checkpoint(path: Path, seed: int = 0, extra: dict | None = None) -> Path:
    torch.manual_seed(seed)
    embedder = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    return save_checkpoint(path, embedder, extra=extra)


def image_folder(root: Path, *, classes: int = 6, per_class: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        base = rng.integers(0, 255, size=3).astype(np.uint8)
        for i in range(per_class):
            img = np.zeros((20, 20, 3), dtype=np.uint8) + base
            img[:: (c % 4) + 2] = 255 - base
            img = np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
            (root / f"c{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / f"c{c}" / f"{i}.png")
    return root


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: equal snapshots = nothing modified."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
