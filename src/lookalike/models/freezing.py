"""Freezing policies for a backbone: full fine-tuning, frozen (transfer learning), last n blocks."""

from __future__ import annotations

from typing import Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["FREEZE_MODES", "apply_freeze", "block_depths", "find_blocks", "frozen_batchnorms"]

FREEZE_MODES = ("full", "frozen", "last_n_blocks")

# Containers of a backbone's blocks, by the attribute names timm models use.
_BLOCK_CONTAINERS = ("blocks", "stages", "layers")
_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4", "layer5")


def _block_list(backbone: nn.Module) -> tuple[list[str], list[nn.Module]]:
    """(names of the top-level children that hold the blocks, the blocks in order)."""
    for attr in _BLOCK_CONTAINERS:
        container = getattr(backbone, attr, None)
        if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container) > 0:
            return [attr], list(container)
    stages = [name for name in _RESNET_STAGES if isinstance(getattr(backbone, name, None), nn.Module)]
    if stages:
        return stages, [getattr(backbone, name) for name in stages]
    raise ValueError(
        f"cannot find the blocks of {type(backbone).__name__}: it has none of the attributes "
        f"{[*_BLOCK_CONTAINERS, *_RESNET_STAGES]}. Use freeze='full' or 'frozen'."
    )


def find_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's blocks in forward order, found generically over timm models.

    ViTs: each transformer block of ``blocks``; MobileNet/EfficientNet: each stage of ``blocks``;
    ConvNeXt and others: each of ``stages``; ResNets: ``layer1`` .. ``layer4``; convnet4: each conv block.
    """
    return _block_list(backbone)[1]


def _tail_modules(backbone: nn.Module) -> list[nn.Module]:
    """Top-level children registered after the blocks: the final norm, conv head, fc_norm, pool, ..."""
    container_names, _ = _block_list(backbone)
    children = list(backbone.named_children())
    last = max(i for i, (name, _) in enumerate(children) if name in container_names)
    return [module for _, module in children[last + 1 :]]


def block_depths(backbone: nn.Module) -> tuple[dict[str, int], int]:
    """Each parameter's depth from the top of the backbone, in blocks (see :func:`find_blocks`), and
    the number of blocks n, for layer-wise learning-rate decay.

    The last block and the modules after it (final norm, conv head, GeM's p) are at depth 0, the block
    before at 1, ..., the first block at n - 1; everything before the blocks (stem, patch embedding,
    and the backbone's own parameters: position embeddings, class and register tokens) at n.
    """
    container_names, blocks = _block_list(backbone)
    n = len(blocks)
    depth_of = {id(p): n - 1 - i for i, block in enumerate(blocks) for p in block.parameters()}
    children = [name for name, _ in backbone.named_children()]
    last = max(i for i, name in enumerate(children) if name in container_names)
    after = set(children[last + 1 :])
    depths = {}
    for name, param in backbone.named_parameters():
        if id(param) in depth_of:
            depths[name] = depth_of[id(param)]
        else:
            depths[name] = 0 if name.split(".", 1)[0] in after else n
    return depths, n


def apply_freeze(
    backbone: nn.Module,
    mode: Literal["full", "frozen", "last_n_blocks"],
    *,
    last_n_blocks: int = 0,
) -> None:
    """Set ``requires_grad`` on the backbone's parameters, in place.

    - full: every parameter trains.
    - frozen: none does.
    - last_n_blocks: only the last ``last_n_blocks`` blocks (see :func:`find_blocks`) and the modules
      after them (final norm, conv head, pooling such as GeM) train; stem, embeddings and earlier
      blocks are frozen.
    """
    if mode not in FREEZE_MODES:
        raise ValueError(f"unknown freeze mode {mode!r}; valid: {list(FREEZE_MODES)}")
    if mode != "last_n_blocks" and last_n_blocks != 0:
        raise ValueError(
            f"last_n_blocks={last_n_blocks} is only used with mode='last_n_blocks', not {mode!r}"
        )
    backbone.requires_grad_(mode == "full")
    if mode != "last_n_blocks":
        return
    blocks = find_blocks(backbone)
    if not 1 <= last_n_blocks <= len(blocks):
        raise ValueError(
            f"last_n_blocks={last_n_blocks} is out of range: {type(backbone).__name__} has "
            f"{len(blocks)} blocks, so use 1..{len(blocks)} (or freeze='full')"
        )
    for module in [*blocks[len(blocks) - last_n_blocks :], *_tail_modules(backbone)]:
        module.requires_grad_(True)


def frozen_batchnorms(module: nn.Module) -> list[_BatchNorm]:
    """BatchNorm layers whose parameters are all frozen: keep them in eval mode so stats don't drift."""
    return [
        m
        for m in module.modules()
        if isinstance(m, _BatchNorm)
        and any(True for _ in m.parameters())
        and not any(p.requires_grad for p in m.parameters())
    ]
