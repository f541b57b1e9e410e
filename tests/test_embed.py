"""embed_images: in-memory PIL images embed exactly as their files do through embed_frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lookalike.embed import embed_frame, embed_images
from lookalike.models import create_embedder_from
from lookalike.models.inference import load_inference_model


@pytest.fixture
def embedder():
    torch.manual_seed(0)
    return create_embedder_from("convnet4", image_size=20, embed_dim=8, backbone_kwargs={"width": 8})


def _images(n: int = 5, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (23 + i, 31, 3), dtype=np.uint8)) for i in range(n)]


def test_same_as_embed_frame_on_the_saved_files(embedder, tmp_path):
    images = _images()
    paths = []
    for i, im in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        im.save(paths[-1])
    frame = pd.DataFrame({"path": paths, "label": ["a"] * len(paths)})
    from_files = embed_frame(embedder, frame, batch_size=2)
    from_memory = embed_images(embedder, images, batch_size=2)
    assert from_memory.shape == (5, 8) and from_memory.dtype == torch.float32
    torch.testing.assert_close(from_memory, from_files)


def test_batching_and_order_do_not_change_embeddings(embedder):
    images = _images(7)
    one = embed_images(embedder, images, batch_size=7)
    torch.testing.assert_close(embed_images(embedder, images, batch_size=3), one)
    torch.testing.assert_close(embed_images(embedder, images[::-1], batch_size=2), one.flip(0))
    torch.testing.assert_close(one.norm(dim=1), torch.ones(7))


def test_grayscale_and_transparency_are_converted_like_the_loader(embedder):
    gray = Image.new("L", (20, 20), 90)
    same_gray_rgb = Image.new("RGB", (20, 20), (90, 90, 90))
    transparent = Image.new("RGBA", (20, 20), (10, 200, 30, 0))  # fully transparent -> white
    white = Image.new("RGB", (20, 20), (255, 255, 255))
    sixteen = Image.fromarray(np.full((20, 20), 1000, dtype=np.uint16))  # I;16 scaled to its max -> white
    out = embed_images(embedder, [gray, same_gray_rgb, transparent, white, sixteen])
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[2], out[3])
    torch.testing.assert_close(out[4], out[3])
    assert not torch.allclose(out[0], out[3])


def test_inference_model_and_training_mode_restored(embedder, tmp_path):
    from lookalike.models import save_checkpoint

    model = load_inference_model(checkpoint=save_checkpoint(tmp_path / "m.pt", embedder))
    embedder.train()
    torch.testing.assert_close(embed_images(model, _images(3)), embed_images(embedder, _images(3)))
    assert embedder.training  # embed_images puts it back as it was


def test_empty_list_and_bad_input(embedder):
    assert embed_images(embedder, []).shape == (0, 8)
    with pytest.raises(TypeError, match=r"images\[1\] is a str"):
        embed_images(embedder, [_images(1)[0], "cat.png"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        embed_images(embedder, _images(1), batch_size=0)
