from __future__ import annotations

import huggingface_hub.constants
import pytest
import timm
import torch

from lookalike.models import (
    BACKBONE_ALIASES,
    ModelConfig,
    create_embedder,
    list_backbones,
    resolve_backbone_name,
)
from lookalike.models.backbones import create_timm_backbone, resolve_preprocessing


def test_aliases_resolve_to_timm_names_with_weights() -> None:
    assert resolve_backbone_name("dinov2_vits14") == "vit_small_patch14_dinov2.lvd142m"
    assert resolve_backbone_name("convnet4") == "lookalike_convnet4"
    with_weights = set(timm.list_models(pretrained=True))
    for alias, name in BACKBONE_ALIASES.items():
        assert timm.is_model(name.split(".")[0]), alias
        if alias != "convnet4":
            assert name in with_weights, (alias, name)


def test_timm_names_pass_through() -> None:
    assert resolve_backbone_name("resnet34") == "resnet34"
    assert resolve_backbone_name("resnet34.tv_in1k") == "resnet34.tv_in1k"


def test_unknown_backbone_names_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet5O'.*close matches.*resnet50"):
        resolve_backbone_name("resnet5O")


def test_list_backbones() -> None:
    names = list_backbones("dinov2*")
    assert names[:4] == ["dinov2_vitb14", "dinov2_vitb14_reg", "dinov2_vitg14", "dinov2_vitg14_reg"]
    assert "convnet4" in list_backbones("convnet*")
    assert "lookalike_convnet4" in list_backbones("lookalike_*")
    assert "vit_small_patch14_dinov2.lvd142m" in list_backbones("vit_small_patch14_dinov2*", pretrained=True)
    assert len(list_backbones()) > 1000


def test_preprocessing_from_timm_and_override() -> None:
    backbone = create_timm_backbone("mobilenetv2_100")
    pre = resolve_preprocessing(backbone)
    assert pre.image_size == 224
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406))
    assert pre.std == pytest.approx((0.229, 0.224, 0.225))
    assert pre.interpolation == "bicubic"
    assert resolve_preprocessing(backbone, image_size=96).image_size == 96


def test_vit_is_built_for_the_configured_image_size() -> None:
    embedder = create_embedder(ModelConfig(backbone="vit_tiny_patch16_224", image_size=32, embed_dim=8))
    assert embedder.backbone.patch_embed.img_size == (32, 32)
    assert embedder.preprocessing.image_size == 32


def test_pretrained_offline_fails_with_a_clear_message(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    message = r"could not be downloaded.*weights=PATH.*--set model\.weights=PATH"
    with pytest.raises(RuntimeError, match=message):
        create_embedder(ModelConfig(backbone="mobilenetv2_100", pretrained=True))


def test_unknown_pretrained_tag() -> None:
    with pytest.raises(
        ValueError, match=r"unknown pretrained tag 'nope' for backbone 'resnet18'; valid: .*tv_in1k"
    ):
        resolve_backbone_name("resnet18.nope")


def test_grayscale_input_preprocessing() -> None:
    embedder = create_embedder(ModelConfig(backbone="resnet18", in_chans=1, image_size=32, embed_dim=4))
    assert embedder.preprocessing.mean == pytest.approx((0.449,), abs=1e-3)
    assert embedder(torch.randn(2, 1, 32, 32)).shape == (2, 4)
