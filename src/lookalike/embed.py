"""Embed the images of a manifest with an embedder: the one path shared by evaluation, the
``evaluate`` command and (later) gallery indexing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from lookalike.data import ManifestDataset, eval_transform

if TYPE_CHECKING:
    import pandas as pd

    from lookalike.models import Embedder

__all__ = ["embed_frame"]


@torch.no_grad()
def embed_frame(
    embedder: Embedder,
    frame: pd.DataFrame,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    amp: bool = False,
    features_only: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Embed every row of ``frame`` (``path`` column) with :func:`~lookalike.data.eval_transform` of
    the embedder's preprocessing (timm's eval transform for the backbone). Returns (N, embed_dim)
    float32 on the CPU, in row order; with ``features_only`` the pooled backbone features
    (N, feature_dim) instead."""
    dataset = ManifestDataset(frame, transform=eval_transform(embedder.preprocessing))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    device = torch.device(device)
    was_training = embedder.training
    embedder.eval()
    outputs = []
    iterator = loader
    if progress:
        from rich.progress import track

        iterator = track(loader, description=f"embedding {len(dataset)} images", transient=True)
    try:
        for images, _, _ in iterator:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = embedder.features(images) if features_only else embedder(images)
            outputs.append(out.float().cpu())
    finally:
        embedder.train(was_training)
    if not outputs:
        dim = embedder.feature_dim if features_only else embedder.embed_dim
        return torch.empty(0, dim)
    return torch.cat(outputs)
