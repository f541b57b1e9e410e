"""Layer-wise learning-rate decay: each backbone parameter's lr is backbone_lr * d ** (its block's
depth from the top), checked against the block index read from the parameter's name."""

from __future__ import annotations

import re

import pytest
import torch

from lookalike.models import ModelConfig, create_embedder

LR, BACKBONE_LR, DECAY, WD = 1e-3, 1e-4, 0.5, 0.05

# backbone -> (image size, timm kwargs, number of blocks, names before the blocks, names after them)
CASES = {
    # MobileNetV2: the stem conv/bn, 7 stages in `blocks`, then conv_head/bn2
    "mobilenetv2_100": (64, {}, 7, ("conv_stem", "bn1"), ("conv_head", "bn2")),
    # a 3-block ViT: tokens and embeddings before the blocks, the final norm after them
    "vit_tiny_patch16_224": (32, {"depth": 3}, 3, ("cls_token", "pos_embed", "patch_embed"), ("norm",)),
    "convnet4": (32, {}, 4, (), ()),
}


def _expected_depth(name: str, n_blocks: int, before: tuple[str, ...], after: tuple[str, ...]) -> int:
    match = re.match(r"blocks\.(\d+)\.", name)
    if match:
        return n_blocks - 1 - int(match.group(1))
    top = name.split(".")[0]
    if top in before:
        return n_blocks
    assert top in after, f"unexpected parameter {name}"
    return 0


@pytest.mark.parametrize("backbone", list(CASES))
def test_each_backbone_parameter_gets_the_power_of_its_depth(backbone: str) -> None:
    size, kwargs, n_blocks, before, after = CASES[backbone]
    embedder = create_embedder(
        ModelConfig(backbone=backbone, image_size=size, embed_dim=8, pretrained=False, backbone_kwargs=kwargs)
    )
    groups = embedder.param_groups(lr=LR, backbone_lr=BACKBONE_LR, weight_decay=WD, layer_decay=DECAY)
    group_of = {id(p): g for g in groups for p in g["params"]}
    assert len(group_of) == sum(1 for _ in embedder.parameters())  # every parameter in exactly one group
    skip = (
        set(embedder.backbone.no_weight_decay()) if hasattr(embedder.backbone, "no_weight_decay") else set()
    )
    depths = set()
    for name, param in embedder.backbone.named_parameters():
        group = group_of[id(param)]
        depth = _expected_depth(name, n_blocks, before, after)
        depths.add(depth)
        assert group["lr"] == pytest.approx(BACKBONE_LR * DECAY**depth), name
        assert group["depth"] == depth and group["lr_scale"] == pytest.approx(DECAY**depth), name
        no_wd = param.ndim <= 1 or name in skip
        assert group["name"] == ("backbone_no_decay" if no_wd else "backbone"), name
        assert group["weight_decay"] == (0.0 if no_wd else WD), name
    # the stem (when there is one) at d ** n_blocks, the top block at 1
    assert depths == set(range(n_blocks + (1 if before else 0)))
    for param in embedder.head.parameters():
        group = group_of[id(param)]
        assert group["lr"] == LR and group["name"] in ("head", "head_no_decay") and "depth" not in group
    torch.optim.AdamW(groups)  # accepted as they are


def test_frozen_blocks_are_left_out_and_decay_one_is_no_decay() -> None:
    config = ModelConfig(
        backbone="convnet4", image_size=32, embed_dim=8, freeze="last_n_blocks", last_n_blocks=2
    )
    embedder = create_embedder(config)
    groups = embedder.param_groups(lr=LR, backbone_lr=BACKBONE_LR, layer_decay=DECAY)
    backbone = [g for g in groups if g["name"].startswith("backbone")]
    assert sorted({g["depth"] for g in backbone}) == [0, 1]  # blocks 3 and 2 only
    assert {g["lr"] for g in embedder.param_groups(lr=LR, backbone_lr=BACKBONE_LR, layer_decay=1.0)} == {
        LR,
        BACKBONE_LR,
    }


def test_layer_decay_on_a_backbone_without_known_blocks_is_refused() -> None:
    embedder = create_embedder(ModelConfig(backbone="convnet4", image_size=32, embed_dim=8))
    embedder.backbone.features = embedder.backbone.blocks  # the blocks under a name nobody knows
    del embedder.backbone.blocks
    with pytest.raises(ValueError, match=r"cannot find the blocks of ConvNet4"):
        embedder.param_groups(lr=LR, layer_decay=DECAY)
    embedder.backbone.requires_grad_(False)  # a frozen backbone has no groups to split: no error
    assert {g["name"] for g in embedder.param_groups(lr=LR, layer_decay=DECAY)} == {"head", "head_no_decay"}
