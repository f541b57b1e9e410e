"""Training augmentation of a whole batch at once, for images held in memory as uint8 tensors.

:func:`~lookalike.data.train_transform` augments one PIL image at a time; for tiny images (a
32 px glyph) its per-item Python costs as much as a tenth of the training step. This module draws
the same augmentations for a batch with a few tensor operations:

- :func:`random_resized_crop_boxes`: the crop boxes of torchvision's ``RandomResizedCrop`` (the
  same ten tries of a uniform area share in ``scale`` and a log-uniform aspect ratio in ``ratio``,
  the same centre-crop fallback), for every image at once;
- :func:`resized_crops`: every box cut out and resampled to ``size`` x ``size`` in one
  ``torchvision.ops.roi_align`` call (bilinear; a box larger than the output is averaged over
  ``ceil(box / size)``² samples a pixel, so downscaling does not alias);
- :class:`BatchTrainTransform`: crops, flips with probability 0.5, scale to [0, 1] and normalise.

Rotation and colour jitter have no batched form here: :func:`batchable` says whether a config's
``augment`` section can use it, and training falls back to :func:`train_transform` per item where
it cannot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torchvision.ops import roi_align

from lookalike.data.transforms import _checked, _pair

if TYPE_CHECKING:
    from lookalike.models import Preprocessing

__all__ = ["BatchTrainTransform", "batchable", "random_resized_crop_boxes", "resized_crops"]

_TRIES = 10  # torchvision RandomResizedCrop.get_params


def batchable(
    preprocessing: Preprocessing,
    *,
    rotation: float = 0.0,
    color_jitter: float = 0.0,
    hue: float = 0.0,
    **_: object,
) -> bool:
    """Whether :class:`BatchTrainTransform` can do what ``train_transform(preprocessing, **augment)``
    does: bilinear interpolation, no rotation, no colour jitter (the other ``augment`` keys, crop and
    flips, are all supported and ignored here)."""
    return preprocessing.interpolation == "bilinear" and rotation == 0 and color_jitter == 0 and hue == 0


def random_resized_crop_boxes(
    sizes: torch.Tensor,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop boxes ``(x1, y1, x2, y2)`` in pixels, float (B, 4), for images of ``sizes`` (B, 2) =
    (height, width), drawn as torchvision's ``RandomResizedCrop.get_params`` draws them: up to ten
    tries of an area ``uniform(scale) * H * W`` and an aspect ratio ``exp(uniform(log ratio))``
    (width / height), the first whose rounded width and height fit; if none fits, the largest
    centre crop with the ratio clamped to ``ratio``. The corner is uniform over the valid offsets."""
    sizes = sizes.to(torch.float64)
    n = len(sizes)
    height, width = sizes[:, 0:1], sizes[:, 1:2]
    area = height * width
    u = torch.rand(n, _TRIES, 2, generator=generator, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # the first try that fits
    any_fit = fits.any(dim=1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    # fallback: a centre crop of the whole image with the aspect ratio clamped into `ratio`
    height, width = height[:, 0], width[:, 0]
    in_ratio = width / height
    fw = torch.where(in_ratio > ratio[1], torch.round(height * ratio[1]), width)
    fh = torch.where(in_ratio < ratio[0], torch.round(width / ratio[0]), height)
    w, h = torch.where(any_fit, w, fw), torch.where(any_fit, h, fh)
    corner = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    top = torch.where(any_fit, torch.floor(corner[:, 0] * (height - h + 1)), torch.div(height - h, 2).floor())
    left = torch.where(any_fit, torch.floor(corner[:, 1] * (width - w + 1)), torch.div(width - w, 2).floor())
    return torch.stack([left, top, left + w, top + h], dim=1).to(torch.float32)


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``images`` (B, C, H, W), any real dtype, cut to ``boxes`` (B, 4) ``(x1, y1, x2, y2)`` (pixel
    edges) and resampled to (B, C, size, size) float32: bilinear at the output pixel centres
    (``align_corners=False``, as ``torchvision`` resizes), averaged over ``ceil(box / size)``²
    samples per pixel where the box is larger than the output."""
    index = torch.arange(len(images), dtype=torch.float32)[:, None]
    rois = torch.cat([index, boxes.to(torch.float32)], dim=1)
    return roi_align(images.to(torch.float32), rois, (size, size), 1.0, -1, True)


class BatchTrainTransform:
    """The batched form of :func:`~lookalike.data.train_transform` for ``batchable`` settings:
    ``transform(images, sizes, generator=g)`` with uint8 ``images`` (B, C, H, W), the image in the
    top-left ``sizes[b]`` = (height, width) of each (the rest padding, or ``sizes=None`` when every
    image fills its tensor), returns float32 (B, C, image_size, image_size): a random resized crop
    (``crop_scale``, ``crop_ratio``), horizontal / vertical flips with probability 0.5 each when on,
    scaled to [0, 1] and normalised with the preprocessing's mean and std. C must be the model's
    channel count (convert grayscale before)."""

    def __init__(
        self,
        preprocessing: Preprocessing,
        *,
        hflip: bool = True,
        vflip: bool = False,
        crop_scale: Sequence[float] = (0.2, 1.0),
        crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
        rotation: float = 0.0,
        color_jitter: float = 0.0,
        hue: float = 0.0,
    ) -> None:
        self.size, mean, std = _checked(preprocessing)
        if not batchable(preprocessing, rotation=rotation, color_jitter=color_jitter, hue=hue):
            raise ValueError(
                f"BatchTrainTransform: interpolation={preprocessing.interpolation!r}, rotation={rotation!r}, "
                f"color_jitter={color_jitter!r}, hue={hue!r} have no batched form; expected bilinear "
                "interpolation and rotation = color_jitter = hue = 0 (use train_transform per image)"
            )
        self.scale, self.ratio = _pair("crop_scale", crop_scale), _pair("crop_ratio", crop_ratio)
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"crop_scale={self.scale!r}: expected (low, high) with 0 < low <= high <= 1")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"crop_ratio={self.ratio!r}: expected (low, high) with 0 < low <= high")
        self.hflip, self.vflip = hflip, vflip
        self.channels = len(mean)
        # x / 255 - mean) / std as one multiply-add
        std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self._mul = 1.0 / (255.0 * std_t)
        self._add = -torch.tensor(mean, dtype=torch.float32)[:, None, None] / std_t

    def __call__(
        self,
        images: torch.Tensor,
        sizes: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(
                f"BatchTrainTransform: images of shape {tuple(images.shape)}; "
                f"expected (B, {self.channels}, H, W)"
            )
        if sizes is None:
            sizes = torch.tensor(images.shape[2:]).expand(len(images), 2)
        with torch.no_grad():
            boxes = random_resized_crop_boxes(sizes, scale=self.scale, ratio=self.ratio, generator=generator)
            out = resized_crops(images, boxes, self.size)
            for on, dim in ((self.hflip, 3), (self.vflip, 2)):
                if on:
                    flip = torch.rand(len(out), generator=generator) < 0.5
                    out[flip] = out[flip].flip(dim)
            return out.mul_(self._mul).add_(self._add)
