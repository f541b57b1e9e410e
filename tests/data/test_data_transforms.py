"""eval_transform against timm's own eval transform; train_transform's augmentations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config
from timm.data.transforms_factory import transforms_imagenet_eval

from lookalike.data import eval_transform, train_transform
from lookalike.models import Preprocessing
from lookalike.models.backbones import create_timm_backbone, resolve_preprocessing


def _images() -> list[Image.Image]:
    """Photos-like images of several sizes and aspect ratios (smooth gradients + noise)."""
    rng = np.random.default_rng(0)
    out = []
    for width, height in [(300, 200), (180, 260), (64, 64), (97, 41), (500, 499)]:
        yy, xx = np.mgrid[0:height, 0:width]
        base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
        noise = rng.normal(0, 20, size=(height, width, 3))
        out.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)))
    return out


def _assert_same_outputs(ours, theirs) -> None:
    for image in _images():
        a, b = ours(image), theirs(image)
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("backbone", "image_size"),
    [
        ("mobilenetv2_100", None),  # bicubic, crop 0.875: resize 256, crop 224
        ("mobilenetv2_100", 160),
        ("dinov2_vits14", 98),  # bicubic, crop 1.0, built for the size asked
        ("convnet4", None),  # the registered Conv-4: bilinear, crop 1.0
        ("convnet4", 32),
        ("resnet18", None),  # crop 0.95
        ("convnext_tiny.fb_in22k_ft_in1k_384", 64),  # squash crop mode
    ],
)
def test_eval_transform_matches_timm_for_backbones(backbone: str, image_size: int | None) -> None:
    model = create_timm_backbone(backbone, image_size=image_size)
    prep = resolve_preprocessing(model, image_size=image_size)
    data_config = resolve_model_data_config(model)
    if image_size is not None:
        data_config["input_size"] = (3, image_size, image_size)
    theirs = create_transform(**data_config, is_training=False)
    _assert_same_outputs(eval_transform(prep), theirs)


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
@pytest.mark.parametrize(
    ("interpolation", "crop_pct"), [("bicubic", 0.9), ("bilinear", 1.0), ("nearest", 0.8)]
)
def test_eval_transform_matches_timm_for_crop_modes(
    crop_mode: str, interpolation: str, crop_pct: float
) -> None:
    prep = Preprocessing(
        image_size=56,
        mean=(0.48, 0.46, 0.41),
        std=(0.27, 0.26, 0.28),
        interpolation=interpolation,
        crop_pct=crop_pct,
        crop_mode=crop_mode,
    )
    theirs = transforms_imagenet_eval(
        img_size=56,
        crop_pct=crop_pct,
        crop_mode=crop_mode,
        interpolation=interpolation,
        mean=prep.mean,
        std=prep.std,
    )
    _assert_same_outputs(eval_transform(prep), theirs)


def test_backbone_preprocessing_carries_timm_crop_mode() -> None:
    name = "convnext_tiny.fb_in22k_ft_in1k_384"
    model = timm.create_model(name, pretrained=False, num_classes=0)
    assert timm.models.get_pretrained_cfg(name).crop_mode == "squash"
    assert resolve_preprocessing(model).crop_mode == "squash"
    old = {k: v for k, v in resolve_preprocessing(model).to_dict().items() if k != "crop_mode"}
    assert Preprocessing.from_dict(old).crop_mode == "center"  # checkpoints written before crop_mode


PREP = Preprocessing(image_size=24, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="bilinear")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_size": 0}, "image_size=0: expected a positive integer"),
        ({"mean": (0.5, 0.5)}, r"expected 3 values each \(RGB\) or 1 each \(grayscale\)"),
        ({"std": (0.5, 0.0, 0.5)}, "std=.*expected positive numbers"),
        ({"crop_pct": 1.5}, r"crop_pct=1.5: expected a fraction in \(0, 1\]"),
        ({"interpolation": "cubic"}, "interpolation 'cubic' is not known; expected one of"),
        ({"crop_mode": "fit"}, "crop_mode='fit': expected one of"),
    ],
)
def test_eval_transform_refuses_bad_preprocessing(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        eval_transform(replace(PREP, **change))


def _asymmetric_image() -> Image.Image:
    array = np.zeros((24, 24, 3), dtype=np.uint8)
    array[:, :6] = 255  # a white band on the left only
    array[:4, :] = (0, 0, 255)  # a blue band at the top only
    return Image.fromarray(array)


def test_flip_off_never_flips() -> None:
    """crop_scale (1, 1) with ratio 1 on a square image crops the whole image: only flips can change it."""
    image = _asymmetric_image()
    reference = eval_transform(replace(PREP, crop_pct=1.0))(image)
    no_flip = train_transform(PREP, hflip=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    flip = train_transform(PREP, hflip=True, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    torch.manual_seed(0)
    assert all(torch.equal(no_flip(image), reference) for _ in range(64))
    outputs = [flip(image) for _ in range(64)]
    flipped = [o for o in outputs if not torch.equal(o, reference)]
    assert 10 < len(flipped) < 54  # about half, p = 0.5
    assert all(torch.equal(o, reference.flip(-1)) for o in flipped)


def test_vflip_flips_upside_down_only() -> None:
    image = _asymmetric_image()
    reference = eval_transform(replace(PREP, crop_pct=1.0))(image)
    vflip = train_transform(PREP, hflip=False, vflip=True, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    torch.manual_seed(1)
    outputs = [vflip(image) for _ in range(32)]
    assert {torch.equal(o, reference) or torch.equal(o, reference.flip(-2)) for o in outputs} == {True}
    assert any(torch.equal(o, reference.flip(-2)) for o in outputs)


def test_rotation_and_colour_jitter_change_the_image_and_keep_the_shape() -> None:
    image = _images()[0]
    plain = train_transform(PREP, hflip=False, crop_scale=(1.0, 1.0), crop_ratio=(1.5, 1.5))
    torch.manual_seed(0)
    base = plain(image)
    for kwargs in ({"rotation": 30.0}, {"color_jitter": 0.4}, {"hue": 0.1}):
        augmented = train_transform(PREP, hflip=False, crop_scale=(1.0, 1.0), crop_ratio=(1.5, 1.5), **kwargs)
        torch.manual_seed(0)
        out = augmented(image)
        assert out.shape == base.shape == (3, 24, 24)
        assert not torch.equal(out, base), kwargs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"crop_scale": (0.5, 0.2)},
            r"crop_scale=\(0.5, 0.2\): expected \(low, high\) with 0 < low <= high <= 1",
        ),
        ({"crop_scale": (0.5,)}, "crop_scale=.*expected two numbers"),
        ({"crop_ratio": (0.0, 1.0)}, "crop_ratio=.*0 < low <= high"),
        ({"rotation": 200.0}, r"rotation=200.0: expected degrees in \[0, 180\]"),
        ({"color_jitter": 1.5}, r"color_jitter=1.5: expected a strength in \[0, 1\]"),
        ({"hue": 0.7}, r"hue=0.7: expected a shift in \[0, 0.5\]"),
    ],
)
def test_train_transform_refuses_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_transform(PREP, **kwargs)


def test_grayscale_preprocessing_gives_one_channel() -> None:
    gray = Preprocessing(image_size=16, mean=(0.5,), std=(0.25,), interpolation="bilinear", crop_pct=1.0)
    image = Image.new("RGB", (20, 16), (200, 100, 50))
    expected = (np.asarray(image.convert("L"), dtype=np.float32)[0, 0] / 255 - 0.5) / 0.25
    for transform in (eval_transform(gray), train_transform(gray, rotation=10.0, color_jitter=0.2)):
        out = transform(image)
        assert out.shape == (1, 16, 16)
    torch.testing.assert_close(eval_transform(gray)(image), torch.full((1, 16, 16), float(expected)))
