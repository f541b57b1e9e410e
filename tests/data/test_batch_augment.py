"""BatchTrainTransform: the batched train augmentation against torchvision's per-image one."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as F

from lookalike.data import BatchTrainTransform, batchable, train_transform
from lookalike.data.batch_augment import random_resized_crop_boxes, resized_crops
from lookalike.models import Preprocessing

GRAY = Preprocessing(image_size=16, mean=(0.5,), std=(0.25,), interpolation="bilinear")
RGB = Preprocessing(
    image_size=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation="bilinear"
)


def _shares(boxes: torch.Tensor, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return (w * h / (height * width)).numpy(), (w / h).log().numpy()


def test_crop_boxes_follow_torchvisions_random_resized_crop_distribution() -> None:
    height, width, scale, ratio, n = 30, 40, (0.3, 0.9), (0.6, 1.5), 3000
    sizes = torch.tensor([[height, width]]).expand(n, 2)
    ours = random_resized_crop_boxes(
        sizes, scale=scale, ratio=ratio, generator=torch.Generator().manual_seed(0)
    )
    torch.manual_seed(0)
    image = torch.zeros(1, height, width)
    ref = []
    for _ in range(n):
        top, left, h, w = RandomResizedCrop.get_params(image, scale=list(scale), ratio=list(ratio))
        ref.append([left, top, left + w, top + h])
    ref = torch.tensor(ref, dtype=torch.float32)
    # integer pixel boxes inside the image
    assert torch.equal(ours, ours.round())
    assert (ours[:, :2] >= 0).all() and (ours[:, 2] <= width).all() and (ours[:, 3] <= height).all()
    for a, b in zip(_shares(ours, height, width), _shares(ref, height, width), strict=True):
        assert ks_2samp(a, b).pvalue > 1e-3
    for column in range(2):  # where the corner falls
        assert ks_2samp(ours[:, column].numpy(), ref[:, column].numpy()).pvalue > 1e-3
    area, log_ratio = _shares(ours, height, width)
    assert area.min() >= scale[0] - 0.05 and area.max() <= scale[1] + 0.05
    assert log_ratio.min() >= math.log(ratio[0]) - 0.1 and log_ratio.max() <= math.log(ratio[1]) + 0.1


def test_when_no_try_fits_the_crop_is_torchvisions_centre_fallback() -> None:
    image = torch.zeros(1, 10, 100)  # a square crop of >= 90% of the area never fits 10 px of height
    top, left, h, w = RandomResizedCrop.get_params(image, scale=[0.9, 1.0], ratio=[1.0, 1.0])
    boxes = random_resized_crop_boxes(torch.tensor([[10, 100]] * 4), scale=(0.9, 1.0), ratio=(1.0, 1.0))
    assert boxes.tolist() == [[left, top, left + w, top + h]] * 4 == [[45, 0, 55, 10]] * 4


def test_resized_crops_resample_like_torchvision() -> None:
    image = torch.rand(1, 2, 20, 24, generator=torch.Generator().manual_seed(1)) * 255
    # a square region at its own size: unchanged
    same = resized_crops(image, torch.tensor([[4.0, 0.0, 24.0, 20.0]]), 20)
    torch.testing.assert_close(same, image[..., 4:])
    # upscaling a crop: bilinear, as F.resized_crop; the outer ring differs only in reading the
    # pixels beyond the crop's edge instead of repeating the edge
    box = (3, 2, 15, 14)
    ref = F.resized_crop(image, box[1], box[0], box[3] - box[1], box[2] - box[0], [32, 32], antialias=True)
    got = resized_crops(image, torch.tensor([box], dtype=torch.float32), 32)
    torch.testing.assert_close(got[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-3, rtol=0)
    # downscaling: averaged, close to the antialiased resize (plain bilinear sampling is not)
    smooth = F.resize(
        torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2)), [96, 96], antialias=True
    )
    ref = F.resize(smooth, [24, 24], antialias=True)
    got = resized_crops(smooth, torch.tensor([[0.0, 0.0, 96.0, 96.0]]), 24)
    assert (got - ref).abs().mean() < 0.01


def _image(channels: int, height: int = 16, width: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (channels, height, width), generator=torch.Generator().manual_seed(seed)).to(
        torch.uint8
    )


@pytest.mark.parametrize("prep", [GRAY, RGB], ids=["gray", "rgb"])
def test_a_full_crop_without_flips_is_train_transforms_tensor(prep: Preprocessing) -> None:
    channels = len(prep.mean)
    image = _image(channels)
    full = {"hflip": False, "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0)}
    got = BatchTrainTransform(prep, **full)(image[None])[0]
    pil = Image.fromarray(image.permute(1, 2, 0).numpy().squeeze(), mode="L" if channels == 1 else "RGB")
    torch.testing.assert_close(got, train_transform(prep, **full)(pil), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("hflip", "vflip"), [(False, False), (True, False), (False, True)])
def test_flips_follow_the_config_with_probability_one_half(hflip: bool, vflip: bool) -> None:
    image = _image(1)
    full = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0)}
    transform = BatchTrainTransform(GRAY, hflip=hflip, vflip=vflip, **full)
    out = transform(image[None].expand(400, -1, -1, -1), generator=torch.Generator().manual_seed(0))
    plain = BatchTrainTransform(GRAY, hflip=False, **full)(image[None])[0]
    flipped = plain.flip(2 if hflip else 1)
    is_plain = (out == plain).flatten(1).all(1)
    is_flipped = (out == flipped).flatten(1).all(1)
    assert bool((is_plain | is_flipped).all())
    if hflip or vflip:
        assert 0.4 < is_flipped.float().mean() < 0.6
    else:
        assert bool(is_plain.all())


def test_the_same_generator_seed_gives_the_same_batch_and_another_seed_another() -> None:
    images = torch.stack([_image(1, seed=s) for s in range(8)])
    transform = BatchTrainTransform(GRAY, crop_scale=(0.3, 1.0))
    a = transform(images, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(
        a, transform(images, generator=torch.Generator().manual_seed(5)), rtol=0, atol=0
    )
    assert not torch.equal(a, transform(images, generator=torch.Generator().manual_seed(6)))


def test_settings_without_a_batched_form_are_refused_or_reported() -> None:
    assert batchable(GRAY, hflip=False, crop_scale=(0.6, 1.0))
    assert not batchable(GRAY, rotation=10.0) and not batchable(GRAY, color_jitter=0.2)
    bicubic = Preprocessing(image_size=16, mean=(0.5,), std=(0.5,), interpolation="bicubic")
    assert not batchable(bicubic)
    with pytest.raises(ValueError, match=r"rotation=10\.0.*no batched form"):
        BatchTrainTransform(GRAY, rotation=10.0)
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\)"):
        BatchTrainTransform(GRAY)(_image(3)[None])
