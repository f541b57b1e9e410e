from __future__ import annotations

import pytest
import torch

from lookalike.models import ModelConfig, create_embedder, find_blocks

SMALL = {"mobilenetv2_100": 64, "resnet18": 64, "vit_tiny_patch16_224": 32, "convnet4": 32}


def _config(backbone: str, **options: object) -> ModelConfig:
    return ModelConfig(backbone=backbone, image_size=SMALL[backbone], embed_dim=8, **options)


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval() -> None:
    embedder = create_embedder(_config("convnet4", freeze="frozen"))
    assert not embedder.backbone_trainable
    embedder.train()
    assert embedder.training and embedder.head.training
    assert not embedder.backbone.training
    assert all(not m.training for m in embedder.backbone.modules())
    bn = embedder.backbone.blocks[0].bn
    stats = bn.running_mean.clone()
    embedder(torch.randn(4, 3, 32, 32)).sum().backward()
    torch.testing.assert_close(bn.running_mean, stats)  # BN stats do not drift
    assert all(p.grad is None for p in embedder.backbone.parameters())
    assert all(p.grad is not None for p in embedder.head.parameters())


def test_full_trains_everything() -> None:
    embedder = create_embedder(_config("convnet4"))
    assert embedder.backbone_trainable and embedder.backbone.training
    assert all(p.requires_grad for p in embedder.parameters())


@pytest.mark.parametrize(
    ("backbone", "n_blocks", "trainable_tail"),
    [
        ("mobilenetv2_100", 7, ["conv_head.weight", "bn2.weight"]),
        ("resnet18", 4, []),
        ("vit_tiny_patch16_224", 12, ["norm.weight", "norm.bias"]),
        ("convnet4", 4, []),
    ],
)
def test_last_n_blocks(backbone: str, n_blocks: int, trainable_tail: list[str]) -> None:
    embedder = create_embedder(_config(backbone, freeze="last_n_blocks", last_n_blocks=2))
    blocks = find_blocks(embedder.backbone)
    assert len(blocks) == n_blocks
    for i, block in enumerate(blocks):
        assert all(p.requires_grad == (i >= n_blocks - 2) for p in block.parameters()), i
    named = dict(embedder.backbone.named_parameters())
    for name in trainable_tail:
        assert named[name].requires_grad, name
    first_param = next(iter(named))  # stem / embeddings are frozen
    assert not named[first_param].requires_grad, first_param
    assert all(p.requires_grad for p in embedder.head.parameters())
    embedder.train()
    frozen_bns = [m for m in blocks[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training for m in frozen_bns)
    trained_bns = [m for m in blocks[-1].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.training for m in trained_bns)


def test_last_n_blocks_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"last_n_blocks=5 is out of range.*has 4 blocks, so use 1..4"):
        create_embedder(_config("convnet4", freeze="last_n_blocks", last_n_blocks=5))


def test_param_groups_learning_rates_and_decay() -> None:
    embedder = create_embedder(_config("convnet4", neck_bn=True))
    groups = embedder.param_groups(lr=1e-3, backbone_lr=1e-4, weight_decay=0.05)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert by_name["backbone"]["lr"] == by_name["backbone_no_decay"]["lr"] == 1e-4
    assert by_name["head"]["lr"] == by_name["head_no_decay"]["lr"] == 1e-3
    assert by_name["backbone"]["weight_decay"] == by_name["head"]["weight_decay"] == 0.05
    assert by_name["backbone_no_decay"]["weight_decay"] == by_name["head_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for g in groups if g["name"].endswith("no_decay") for p in g["params"])
    assert all(p.ndim > 1 for g in groups if not g["name"].endswith("no_decay") for p in g["params"])
    in_groups = sum(p.numel() for g in groups for p in g["params"])
    assert in_groups == sum(p.numel() for p in embedder.parameters())
    torch.optim.AdamW(groups)  # accepted as they are
    same_lr = embedder.param_groups(lr=1e-3, weight_decay=0.0)
    assert {g["lr"] for g in same_lr} == {1e-3}


def test_param_groups_frozen_only_head_and_vit_tokens_not_decayed() -> None:
    frozen = create_embedder(_config("convnet4", freeze="frozen"))
    assert {g["name"] for g in frozen.param_groups(lr=1e-3, weight_decay=0.1)} == {"head", "head_no_decay"}
    vit = create_embedder(_config("vit_tiny_patch16_224"))
    groups = vit.param_groups(lr=1e-3, weight_decay=0.1)
    no_decay = next(g for g in groups if g["name"] == "backbone_no_decay")
    ids = {id(p) for p in no_decay["params"]}
    assert id(vit.backbone.pos_embed) in ids and id(vit.backbone.cls_token) in ids
