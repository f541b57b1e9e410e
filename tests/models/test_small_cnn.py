from __future__ import annotations

import timm
import torch

import lookalike.models  # noqa: F401  (registers lookalike_convnet4)
from lookalike.models import ConvNet4, find_blocks


def test_registered_in_timm_and_listed() -> None:
    assert "lookalike_convnet4" in timm.list_models("lookalike_*")
    model = timm.create_model("lookalike_convnet4", num_classes=0)
    assert isinstance(model, ConvNet4)
    assert model.num_features == 64
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 64)


def test_pretrained_cfg_gives_data_config() -> None:
    model = timm.create_model("lookalike_convnet4", num_classes=0)
    data_cfg = timm.data.resolve_model_data_config(model)
    assert data_cfg["input_size"] == (3, 64, 64)
    assert data_cfg["mean"] == (0.5, 0.5, 0.5)
    assert data_cfg["std"] == (0.5, 0.5, 0.5)


def test_timm_interface_and_width() -> None:
    model = timm.create_model("lookalike_convnet4", num_classes=5, width=8)
    x = torch.randn(3, 3, 64, 64)
    fmap = model.forward_features(x)
    assert fmap.shape == (3, 8, 4, 4)
    assert model.forward_head(fmap, pre_logits=True).shape == (3, 8)
    assert model(x).shape == (3, 5)
    model.reset_classifier(0)
    assert model(x).shape == (3, 8)
    assert len(find_blocks(model)) == 4
