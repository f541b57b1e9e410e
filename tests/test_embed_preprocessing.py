"""Embedding follows the backbone's preprocessing (timm's eval transform), for RGB and grayscale
models, and through a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from timm.data import create_transform, resolve_model_data_config

from lookalike.data import load_rgb, train_transform
from lookalike.embed import embed_frame
from lookalike.models import ModelConfig, create_embedder, load_checkpoint, save_checkpoint


def _frame(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(40, 28), (25, 50), (33, 33)]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return pd.DataFrame({"path": paths, "label": ["a", "b", "a"]})


def test_embed_frame_uses_timms_eval_transform(tmp_path: Path) -> None:
    """Conv-4 says crop 1.0 and bilinear: the embeddings are those of timm's eval tensors."""
    torch.manual_seed(0)
    embedder = create_embedder(ModelConfig(backbone="convnet4", image_size=24, embed_dim=8)).eval()
    frame = _frame(tmp_path)
    data_config = resolve_model_data_config(embedder.backbone)
    data_config["input_size"] = (3, 24, 24)
    timm_eval = create_transform(**data_config, is_training=False)
    with torch.no_grad():
        expected = embedder(torch.stack([timm_eval(load_rgb(p)) for p in frame["path"]]))
    torch.testing.assert_close(embed_frame(embedder, frame, batch_size=2), expected, atol=1e-5, rtol=1e-5)


def test_grayscale_model_embeds_trains_and_survives_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    embedder = create_embedder(ModelConfig(backbone="convnet4", in_chans=1, image_size=16, embed_dim=8))
    prep = embedder.preprocessing
    assert len(prep.mean) == len(prep.std) == 1
    frame = _frame(tmp_path)

    batch = torch.stack([train_transform(prep, rotation=15.0)(load_rgb(p)) for p in frame["path"]])
    assert batch.shape == (3, 1, 16, 16)
    embedder.train()(batch).sum().backward()  # a training step's forward and backward

    embeddings = embed_frame(embedder, frame)
    assert embeddings.shape == (3, 8) and torch.isfinite(embeddings).all()
    gray_input = frame.assign(path=[str(tmp_path / f"g{i}.png") for i in range(3)])
    for src, dst in zip(frame["path"], gray_input["path"], strict=True):
        Image.open(src).convert("L").save(dst)
    torch.testing.assert_close(embed_frame(embedder, gray_input), embeddings)  # RGB read, then grayscale

    path = save_checkpoint(tmp_path / "gray.pt", embedder)
    loaded = load_checkpoint(path)
    assert loaded.preprocessing == prep
    torch.testing.assert_close(embed_frame(loaded.embedder, frame), embeddings)


@pytest.mark.parametrize("in_chans", [2, 4])
def test_unreadable_channel_counts_are_refused_at_load(in_chans: int) -> None:
    with pytest.raises(ValidationError, match=rf"in_chans={in_chans} cannot be fed: .* 3 \(colour\) or 1"):
        ModelConfig(backbone="convnet4", in_chans=in_chans)


def test_rgb_weights_load_into_a_grayscale_model(tmp_path: Path) -> None:
    """The first conv is summed over the input channels: on a gray image the 1-channel model computes
    what the RGB model computes on the same image as RGB (Conv-4's mean/std are equal per channel)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = create_embedder(ModelConfig(backbone="convnet4", image_size=16, head="identity", embed_dim=None))
    save_file(rgb.backbone.state_dict(), str(tmp_path / "rgb.safetensors"))
    gray = create_embedder(
        ModelConfig(
            backbone="convnet4",
            in_chans=1,
            image_size=16,
            head="identity",
            embed_dim=None,
            weights=str(tmp_path / "rgb.safetensors"),
        )
    )
    assert gray.load_report is not None and gray.load_report.ok
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(gray.eval().features(x), rgb.eval().features(x.expand(-1, 3, -1, -1)))
