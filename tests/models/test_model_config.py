from __future__ import annotations

import pytest
from pydantic import ValidationError

from lookalike.models import ModelConfig, create_embedder, create_embedder_from


def test_defaults_and_round_trip() -> None:
    config = ModelConfig()
    assert config.backbone == "mobilenetv2_100"
    assert config.embed_dim == 128
    assert ModelConfig(**config.model_dump()) == config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"embed_dimm": 3}, "embed_dimm"),
        ({"backbone": "no_such_net"}, "unknown backbone 'no_such_net'"),
        ({"pretrained": True, "weights": "x.pt"}, "choose one"),
        ({"freeze": "last_n_blocks"}, "last_n_blocks >= 1"),
        ({"last_n_blocks": 2}, "only used with freeze='last_n_blocks'"),
        ({"head": "mlpp"}, "head"),
        ({"pooling": "max"}, "pooling"),
        ({"backbone_kwargs": {"num_classes": 3}}, "may not set"),
        ({"mlp_hidden_dim": 64}, "only used with head='mlp'"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_strict_errors(options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelConfig(**options)


def test_create_embedder_from_validates_keywords() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['embed_dimm'\].*embed_dim"):
        create_embedder_from("convnet4", embed_dimm=3)
    assert create_embedder_from("convnet4", embed_dim=16).embed_dim == 16


def test_create_embedder_takes_a_config() -> None:
    with pytest.raises(TypeError, match="ModelConfig"):
        create_embedder({"backbone": "convnet4"})  # type: ignore[arg-type]


def test_backbone_kwargs_reach_timm() -> None:
    config = ModelConfig(backbone="convnet4", backbone_kwargs={"width": 16}, head="identity", embed_dim=None)
    embedder = create_embedder(config)
    assert embedder.feature_dim == embedder.embed_dim == 16
    with pytest.raises(TypeError):
        create_embedder(ModelConfig(backbone="convnet4", backbone_kwargs={"widht": 16}))
