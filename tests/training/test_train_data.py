"""TrainData: cached images augmented a batch at a time, seeded per batch, the per-item path otherwise."""

import torch
from PIL import Image

from lookalike.data import (
    BatchTrainTransform,
    ManifestDataset,
    PKSampler,
    manifest_from_folder,
    train_transform,
)
from lookalike.data.batch_augment import resized_crops
from lookalike.models import Preprocessing
from lookalike.training.data import AugmentedBatches, SeededBatches, TrainData

GRAY = Preprocessing(image_size=16, mean=(0.5,), std=(0.5,), interpolation="bilinear")
AUGMENT = {"hflip": False, "crop_scale": (0.6, 1.0)}


def _data(root, *, cache: bool) -> TrainData:
    frame = manifest_from_folder(root)
    dataset = ManifestDataset(
        frame, transform=train_transform(GRAY, **AUGMENT), cache_bytes=2**24 if cache else 0
    )
    batches = SeededBatches(PKSampler(dataset.labels, p=3, k=2, seed=0), seed=4)
    return TrainData(
        dataset,
        batches,
        batches_per_epoch=4,
        device=torch.device("cpu"),
        batch_transform=BatchTrainTransform(GRAY, **AUGMENT),
    )


def test_cached_images_are_augmented_a_batch_at_a_time_and_resume_exactly(image_folder) -> None:
    data = _data(image_folder, cache=True)
    assert data.batch_transform is not None
    full = list(data.epoch(1))
    assert len(full) == 4
    for inputs, labels in full:
        assert inputs.shape == (6, 1, 16, 16) and inputs.dtype == torch.float32 and labels.shape == (6,)
        assert inputs.min() >= -1.0 - 1e-6 and inputs.max() <= 1.0 + 1e-6  # normalised with mean = std = 0.5
    resumed = list(data.epoch(1, start_batch=2))  # batch b of epoch e is the same, wherever the epoch starts
    for (a, la), (b, lb) in zip(full[2:], resumed, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    other = next(iter(data.epoch(2)))[0]
    assert not torch.equal(other, full[0][0])


def test_the_grayscale_cache_is_the_image_train_transform_sees(image_folder) -> None:
    dataset = _data(image_folder, cache=True).dataset
    gray = dataset.cached_tensors("L")
    at_24 = Preprocessing(image_size=24, mean=(0.5,), std=(0.5,), interpolation="bilinear")
    whole = {"hflip": False, "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0)}
    for i in (0, 7):
        assert gray[i].shape == (1, 24, 24) and gray[i].dtype == torch.uint8
        reference = train_transform(at_24, **whole)(Image.open(dataset.paths[i]))  # RGB file, grayscale first
        torch.testing.assert_close(
            BatchTrainTransform(at_24, **whole)(gray[i][None])[0], reference, atol=1e-5, rtol=0
        )


def test_uncached_data_keeps_the_per_image_path(image_folder) -> None:
    data = _data(image_folder, cache=False)
    assert data.batch_transform is None
    inputs, labels = next(iter(data.epoch(0)))
    assert inputs.shape == (6, 1, 16, 16) and labels.shape == (6,)


def test_images_of_mixed_sizes_are_cropped_inside_their_own_pixels() -> None:
    generator = torch.Generator().manual_seed(0)
    pixels = [torch.randint(0, 256, (1, s, s), generator=generator).to(torch.uint8) for s in (12, 20, 16)]
    whole = BatchTrainTransform(GRAY, hflip=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    batches = AugmentedBatches(pixels, torch.tensor([0, 1, 2]), whole)
    images, labels = batches[[(2, 9), (0, 10), (1, 11)]]
    assert labels.tolist() == [2, 0, 1]
    for out, i in zip(images, (2, 0, 1), strict=True):
        size = pixels[i].shape[-1]
        alone = resized_crops(pixels[i][None], torch.tensor([[0.0, 0.0, size, size]]), 16)[0]
        torch.testing.assert_close(out, alone / 127.5 - 1.0, atol=1e-4, rtol=0)
