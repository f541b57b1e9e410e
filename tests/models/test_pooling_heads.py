from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lookalike.models import GeM, ModelConfig, create_embedder, create_head, gem


def _reference_mean_pool(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    out = torch.zeros(n, c, dtype=x.dtype)
    for i in range(n):
        for j in range(c):
            out[i, j] = sum(x[i, j, a, b] for a in range(h) for b in range(w)) / (h * w)
    return out


def test_gem_with_p1_is_average_pooling() -> None:
    x = torch.rand(2, 3, 4, 5) + 0.1
    torch.testing.assert_close(GeM(p=1.0)(x), _reference_mean_pool(x))
    torch.testing.assert_close(gem(x, 1.0).flatten(1), F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_gem_large_p_approaches_max_and_p_is_learnable() -> None:
    x = torch.rand(2, 3, 4, 4) + 0.1
    torch.testing.assert_close(gem(x, 200.0).flatten(1), x.amax(dim=(2, 3)), rtol=2e-2, atol=0)
    pool = GeM(p=3.0)
    pool(x).sum().backward()
    assert pool.p.grad is not None and pool.p.requires_grad
    assert GeM(flatten=False)(x).shape == (2, 3, 1, 1)


@pytest.mark.parametrize("pooling", ["auto", "avg", "mean", "gem"])
def test_cnn_pooling_shapes(pooling: str) -> None:
    embedder = create_embedder(ModelConfig(backbone="convnet4", pooling=pooling, embed_dim=16)).eval()
    x = torch.randn(2, 3, 32, 32)
    assert embedder.features(x).shape == (2, 64)
    out = embedder(x)
    assert out.shape == (2, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_gem_keeps_what_the_backbone_does_after_pooling() -> None:
    # MobileNetV3 pools before its conv head: GeM replaces the pool, the conv head (-> 1024) still runs
    config = ModelConfig(backbone="mobilenetv3_small_050", pooling="gem", embed_dim=8)
    embedder = create_embedder(config).eval()
    assert embedder.feature_dim == 1024
    assert embedder.features(torch.randn(1, 3, 32, 32)).shape == (1, 1024)
    assert embedder.backbone.global_pool.p.item() == pytest.approx(3.0)


@pytest.mark.parametrize("pooling", ["auto", "cls", "mean", "avg"])
def test_vit_pooling_shapes(pooling: str) -> None:
    config = ModelConfig(backbone="vit_tiny_patch16_224", image_size=32, pooling=pooling, embed_dim=8)
    embedder = create_embedder(config).eval()
    x = torch.randn(2, 3, 32, 32)
    assert embedder.features(x).shape == (2, 192)
    assert embedder(x).shape == (2, 8)
    expected = {"auto": "token", "cls": "token", "mean": "avg", "avg": "avg"}[pooling]
    assert embedder.backbone.global_pool == expected


def test_vit_mean_pooling_is_the_token_mean() -> None:
    config = ModelConfig(backbone="vit_tiny_patch16_224", image_size=32, pooling="mean", embed_dim=8)
    backbone = create_embedder(config).eval().backbone
    x = torch.randn(2, 3, 32, 32)
    tokens = backbone.forward_features(x)
    torch.testing.assert_close(backbone(x), tokens[:, backbone.num_prefix_tokens :].mean(dim=1))


def test_pooling_errors() -> None:
    with pytest.raises(ValueError, match="pooling='cls' needs a backbone with a class token"):
        create_embedder(ModelConfig(backbone="convnet4", pooling="cls"))
    with pytest.raises(ValueError, match="pooling='gem' is supported for CNN backbones"):
        create_embedder(ModelConfig(backbone="vit_tiny_patch16_224", image_size=32, pooling="gem"))


def test_heads_shapes() -> None:
    x = torch.randn(4, 32)
    assert create_head("identity", feature_dim=32, embed_dim=None)(x).shape == (4, 32)
    assert create_head("linear", feature_dim=32, embed_dim=8)(x).shape == (4, 8)
    mlp = create_head("mlp", feature_dim=32, embed_dim=8, neck_bn=True, dropout=0.1)
    assert mlp(x).shape == (4, 8)
    assert isinstance(mlp[0], torch.nn.BatchNorm1d) and isinstance(mlp[1], torch.nn.Dropout)
    assert mlp[2].out_features == 32  # hidden = feature_dim by default
    assert create_head("mlp", feature_dim=32, embed_dim=8, hidden_dim=12)[0].out_features == 12


def test_identity_head_dimension_must_match() -> None:
    with pytest.raises(ValueError, match=r"feature_dim=64.*embed_dim=128.*set embed_dim to 64 or None"):
        create_embedder(ModelConfig(backbone="convnet4", head="identity"))
    embedder = create_embedder(ModelConfig(backbone="convnet4", head="identity", embed_dim=None))
    assert embedder.embed_dim == embedder.feature_dim == 64
    assert create_embedder(ModelConfig(backbone="convnet4", head="identity", embed_dim=64)).embed_dim == 64


def test_embed_features_matches_forward() -> None:
    config = ModelConfig(backbone="convnet4", head="mlp", neck_bn=True, embed_dim=16)
    embedder = create_embedder(config).eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(embedder.embed_features(embedder.features(x)), embedder(x))
