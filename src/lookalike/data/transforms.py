"""Named image transform presets (torchvision transforms v2), PIL image in, float tensor out.

Normalisation statistics are passed in: take them from the backbone's config (timm's
``pretrained_cfg["mean"]``/``["std"]``), so that the data matches what the weights expect.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

__all__ = ["TRANSFORM_PRESETS", "build_transform"]

TRANSFORM_PRESETS: tuple[str, ...] = ("train", "eval")


def _check_stats(name: str, values: Sequence[float], *, positive: bool) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != 3 or (positive and min(values) <= 0):
        need = "3 positive numbers" if positive else "3 numbers"
        raise ValueError(f"{name}={values!r}: expected {need}, one per RGB channel")
    return values


def build_transform(
    preset: str,
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale: tuple[float, float] = (0.2, 1.0),
    crop_pct: float = 0.875,
) -> v2.Compose:
    """The transform of a named preset, producing a float32 tensor (3, image_size, image_size).

    - ``train``: random resized crop (area fraction in ``crop_scale``), horizontal flip, normalise.
    - ``eval``: resize the short side to ``image_size / crop_pct``, centre crop, normalise.

    ``crop_scale`` is used by ``train`` only and ``crop_pct`` by ``eval`` only.
    """
    if preset not in TRANSFORM_PRESETS:
        raise ValueError(f"unknown transform preset {preset!r}; expected one of {list(TRANSFORM_PRESETS)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size={image_size!r}: expected a positive integer (pixels)")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct={crop_pct!r}: expected a fraction in (0, 1]")
    if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
        raise ValueError(f"crop_scale={crop_scale!r}: expected (low, high) with 0 < low <= high <= 1")
    normalise = [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(
            mean=list(_check_stats("mean", mean, positive=False)),
            std=list(_check_stats("std", std, positive=True)),
        ),
    ]
    if preset == "train":
        geometry = [
            v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    else:
        geometry = [
            v2.Resize(round(image_size / crop_pct), antialias=True),
            v2.CenterCrop(image_size),
        ]
    return v2.Compose([v2.ToImage(), *geometry, *normalise])
