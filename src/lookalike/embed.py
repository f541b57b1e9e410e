"""Embed images with an embedder: the one path shared by evaluation, the ``embed`` and ``evaluate``
commands, calibration, gallery indexing and search.

- :func:`embed_frame`: the images of a manifest frame (read from disk, in row order).
- :func:`embed_images`: PIL images already in memory (uploads, search queries).

Both prepare images with :func:`eval_transform` of the embedder's preprocessing, so one edit there
changes both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from lookalike.data import ManifestDataset, build_transform, to_rgb

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image
    from torchvision.transforms import v2

    from lookalike.models import Embedder, Preprocessing
    from lookalike.models.inference import InferenceModel

__all__ = ["embed_frame", "embed_images", "eval_transform"]


def eval_transform(prep: Preprocessing) -> v2.Compose:
    """The deterministic transform every embedding goes through: PIL RGB image -> (3, S, S) tensor."""
    return build_transform("eval", image_size=prep.image_size, mean=prep.mean, std=prep.std)


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
    """Embed every row of ``frame`` (``path`` column) with the eval transform of the embedder's
    preprocessing. Returns (N, embed_dim) float32 on the CPU, in row order; with
    ``features_only`` the pooled backbone features (N, feature_dim) instead."""
    transform = eval_transform(embedder.preprocessing)
    dataset = ManifestDataset(frame, transform=transform)
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


@torch.no_grad()
def embed_images(
    model: InferenceModel | Embedder,
    images: Sequence[Image.Image],
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Embed PIL images held in memory. Returns (N, D) float32 on the CPU, in input order.

    ``model`` is an :class:`~lookalike.models.inference.InferenceModel` or an Embedder. Each image is
    converted to RGB as the data set loader does (:func:`~lookalike.data.to_rgb`: grayscale, 16-bit
    and palette images converted, transparency composited on white, EXIF rotation applied), then goes
    through :func:`eval_transform`, so an image embeds the same from memory as from its file.
    ``device``: where to run (default: where the embedder's parameters are).
    """
    embedder = model.embedder if hasattr(model, "fingerprint") else model
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        device = next(iter(embedder.parameters()), torch.empty(0)).device
    device = torch.device(device)
    transform = eval_transform(embedder.preprocessing)
    was_training = embedder.training
    embedder.eval()
    outputs = []
    try:
        for start in range(0, len(images), batch_size):
            batch = []
            for i in range(start, min(start + batch_size, len(images))):
                image = images[i]
                if not hasattr(image, "convert") or not hasattr(image, "mode"):
                    raise TypeError(f"images[{i}] is a {type(image).__name__}, expected a PIL.Image.Image")
                batch.append(transform(to_rgb(image)))
            tensor = torch.stack(batch).to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = embedder(tensor)
            outputs.append(out.float().cpu())
    finally:
        embedder.train(was_training)
    if not outputs:
        return torch.empty(0, embedder.embed_dim)
    return torch.cat(outputs)
