"""Image transforms (torchvision transforms v2): PIL image in, float32 tensor (C, S, S) out.

Both are built from a backbone's :class:`~lookalike.models.Preprocessing` (image size, mean/std,
interpolation, crop fraction and crop mode, as timm resolves them and as checkpoints store them),
so that the data matches what the weights expect:

- :func:`eval_transform`: deterministic; the same tensors as timm's ``create_transform`` for
  evaluation (``resolve_model_data_config`` + ``create_transform(..., is_training=False)``). Every
  embedding path (evaluation, ``embed_frame``, the gallery) uses it.
- :func:`train_transform`: random resized crop plus the augmentations a config's ``augment``
  section turns on (flips, rotation, colour jitter).

The channel count is ``len(preprocessing.mean)``: 3 for RGB, 1 for grayscale (images are
converted with ``Grayscale`` first); any other count is refused with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

if TYPE_CHECKING:
    from lookalike.models import Preprocessing

__all__ = ["CROP_MODES", "INTERPOLATIONS", "eval_transform", "train_transform"]

#: Interpolation names a Preprocessing may carry (timm's names; torchvision InterpolationMode values).
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
#: timm's eval crop modes: ``center`` (resize the short side, centre crop), ``squash`` (resize both
#: sides, ignoring the aspect ratio, then centre crop), ``border`` (resize the long side, pad with
#: the mean colour, centre crop).
CROP_MODES: tuple[str, ...] = ("center", "squash", "border")


def _interpolation(name: str) -> InterpolationMode:
    if name not in INTERPOLATIONS:
        raise ValueError(
            f"preprocessing interpolation {name!r} is not known; expected one of {list(INTERPOLATIONS)}"
        )
    return InterpolationMode(name)


def _checked(preprocessing: Preprocessing) -> tuple[int, list[float], list[float]]:
    """(image_size, mean, std) after checking every field the transforms read."""
    size = preprocessing.image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"preprocessing image_size={size!r}: expected a positive integer (pixels)")
    mean = [float(v) for v in preprocessing.mean]
    std = [float(v) for v in preprocessing.std]
    if len(mean) not in (1, 3) or len(std) != len(mean):
        raise ValueError(
            f"preprocessing mean={tuple(mean)} std={tuple(std)}: expected 3 values each (RGB) or 1 each "
            "(grayscale); images are read as RGB and can only be given as 3 or 1 channels"
        )
    if min(std) <= 0:
        raise ValueError(f"preprocessing std={tuple(std)}: expected positive numbers")
    if not 0.0 < preprocessing.crop_pct <= 1.0:
        raise ValueError(f"preprocessing crop_pct={preprocessing.crop_pct!r}: expected a fraction in (0, 1]")
    _interpolation(preprocessing.interpolation)
    crop_mode = preprocessing.crop_mode
    if crop_mode not in CROP_MODES:
        raise ValueError(f"preprocessing crop_mode={crop_mode!r}: expected one of {list(CROP_MODES)}")
    return size, mean, std


def _channels(mean: list[float]) -> list[Any]:
    """First step: a 1-channel model gets the image as grayscale (before any resizing, so that an RGB
    file and its grayscale copy give the same tensor)."""
    return [v2.Grayscale(num_output_channels=1)] if len(mean) == 1 else []


def _normalised_tensor(mean: list[float], std: list[float]) -> list[Any]:
    """Last steps: PIL image -> float32 tensor (C, H, W) in [0, 1] -> normalised."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)]


class _ResizeLongestPadCrop(v2.Transform):
    """timm's ``border`` crop mode: resize so the whole image fits ``scale`` (aspect kept), pad with
    ``fill`` to at least ``size``, centre crop ``size``. Matches ``ResizeKeepRatio(longest=1.0)`` +
    ``CenterCropOrPad``."""

    def __init__(self, scale: int, size: int, *, interpolation: InterpolationMode, fill: list[int]) -> None:
        super().__init__()
        self.scale, self.size, self.interpolation, self.fill = scale, size, interpolation, fill

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        height, width = F.get_size(inpt)
        ratio = max(width / self.scale, height / self.scale)
        new_size = [round(height / ratio), round(width / ratio)]
        inpt = F.resize(inpt, new_size, interpolation=self.interpolation, antialias=True)
        pad_h, pad_w = max(self.size - new_size[0], 0), max(self.size - new_size[1], 0)
        if pad_h or pad_w:
            top, left = pad_h // 2, pad_w // 2
            fill: Any = tuple(self.fill) if len(self.fill) > 1 else self.fill[0]
            inpt = F.pad(inpt, [left, top, pad_w - left, pad_h - top], fill=fill)
        return F.center_crop(inpt, [self.size, self.size])


def eval_transform(preprocessing: Preprocessing) -> v2.Compose:
    """The evaluation transform of a backbone: what timm builds for its data config.

    ``center`` crop mode: resize the short side to ``floor(image_size / crop_pct)`` with the
    preprocessing's interpolation, centre crop ``image_size``; ``squash``: resize both sides to that
    size; ``border``: resize the long side, pad with the mean colour. Then scale to [0, 1] and
    normalise. Returns a float32 tensor (C, image_size, image_size), C = ``len(preprocessing.mean)``.
    """
    size, mean, std = _checked(preprocessing)
    interpolation = _interpolation(preprocessing.interpolation)
    scale = math.floor(size / preprocessing.crop_pct)
    crop_mode = preprocessing.crop_mode
    geometry: list[Any]
    if crop_mode == "border":
        fill = [round(255 * v) for v in mean]
        geometry = [_ResizeLongestPadCrop(scale, size, interpolation=interpolation, fill=fill)]
    else:
        target = [scale, scale] if crop_mode == "squash" else scale
        geometry = [v2.Resize(target, interpolation=interpolation, antialias=True), v2.CenterCrop(size)]
    return v2.Compose([*_channels(mean), *geometry, *_normalised_tensor(mean, std)])


def _pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name}={tuple(value)!r}: expected two numbers (low, high)")
    return pair[0], pair[1]


def train_transform(
    preprocessing: Preprocessing,
    *,
    hflip: bool = True,
    vflip: bool = False,
    crop_scale: Sequence[float] = (0.2, 1.0),
    crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
    rotation: float = 0.0,
    color_jitter: float = 0.0,
    hue: float = 0.0,
) -> v2.Compose:
    """The training transform: random augmentations, then the preprocessing's normalisation.

    In order: rotation by a uniform angle in [-rotation, rotation] degrees (on the whole image, the
    corners filled with the mean colour, which normalises to 0); a random resized crop to
    ``image_size`` covering a ``crop_scale`` share of the area with aspect ratio in ``crop_ratio``
    (the preprocessing's interpolation); horizontal / vertical flips with probability 0.5 each when
    on; colour jitter (brightness, contrast and saturation by factors in [1 - color_jitter,
    1 + color_jitter], hue shifted by up to ``hue``); scale to [0, 1], normalise. A backbone that
    takes 1 channel gets the image as grayscale before all of these. The defaults (crop 0.2-1,
    horizontal flip, nothing else) suit natural images; turn ``hflip`` off for characters, text,
    logos or anything chiral.
    """
    size, mean, std = _checked(preprocessing)
    interpolation = _interpolation(preprocessing.interpolation)
    scale, ratio = _pair("crop_scale", crop_scale), _pair("crop_ratio", crop_ratio)
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"crop_scale={scale!r}: expected (low, high) with 0 < low <= high <= 1")
    if not 0.0 < ratio[0] <= ratio[1]:
        raise ValueError(f"crop_ratio={ratio!r}: expected (low, high) with 0 < low <= high")
    if not 0.0 <= rotation <= 180.0:
        raise ValueError(f"rotation={rotation!r}: expected degrees in [0, 180]")
    if not 0.0 <= color_jitter <= 1.0:
        raise ValueError(f"color_jitter={color_jitter!r}: expected a strength in [0, 1]")
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue={hue!r}: expected a shift in [0, 0.5]")
    steps: list[Any] = _channels(mean)
    if rotation > 0:
        fill = tuple(round(255 * v) for v in mean)
        steps.append(v2.RandomRotation(rotation, interpolation=InterpolationMode.BILINEAR, fill=fill))
    steps.append(
        v2.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=interpolation, antialias=True)
    )
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if vflip:
        steps.append(v2.RandomVerticalFlip())
    if color_jitter > 0 or hue > 0:
        strength = color_jitter or None
        steps.append(
            v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=hue or None)
        )
    return v2.Compose([*steps, *_normalised_tensor(mean, std)])
