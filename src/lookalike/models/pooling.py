"""Pooling of backbone feature maps: timm's global pools, and GeM."""

from __future__ import annotations

import torch
from timm.layers import SelectAdaptivePool2d
from torch import nn

__all__ = ["GeM", "gem", "set_pooling"]


def gem(x: torch.Tensor, p: torch.Tensor | float, *, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean pooling (Radenović et al. 2018): (N, C, H, W) -> (N, C, 1, 1).

    ``(mean(clamp(x, eps) ** p)) ** (1 / p)`` over H, W: p=1 is average pooling, p -> inf max pooling.
    """
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / p)


class GeM(nn.Module):
    """GeM pooling with a learnable ``p`` (a drop-in for timm's ``SelectAdaptivePool2d``).

    (N, C, H, W) -> (N, C) when ``flatten`` else (N, C, 1, 1).
    """

    def __init__(self, p: float = 3.0, *, eps: float = 1e-6, flatten: bool = True) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM needs p > 0, got p={p}")
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = gem(x, self.p, eps=self.eps)
        return out.flatten(1) if self.flatten else out

    def is_identity(self) -> bool:  # timm's SelectAdaptivePool2d interface
        return False

    def feat_mult(self) -> int:  # timm's SelectAdaptivePool2d interface
        return 1

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4g}, eps={self.eps}, flatten={self.flatten}"


def _has_class_token(backbone: nn.Module) -> bool:
    return getattr(backbone, "cls_token", None) is not None


def set_pooling(backbone: nn.Module, pooling: str, *, gem_p: float = 3.0) -> None:
    """Set how a timm backbone built with ``num_classes=0`` pools its features, in place.

    ``auto`` keeps the backbone's default; ``avg``/``mean`` -> timm ``global_pool="avg"`` (on ViTs the
    mean of the tokens after the final norm); ``cls`` -> ``"token"`` (needs a class token); ``gem``
    replaces a CNN's NCHW ``global_pool`` module with :class:`GeM` (so whatever the backbone does after
    pooling, e.g. MobileNetV3's conv head, still runs).
    """
    valid = ("auto", "avg", "cls", "mean", "gem")
    if pooling not in valid:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {list(valid)}")
    name = type(backbone).__name__
    if pooling == "auto":
        return
    if pooling in ("avg", "mean"):
        backbone.reset_classifier(0, global_pool="avg")
    elif pooling == "cls":
        if not _has_class_token(backbone):
            raise ValueError(
                f"pooling='cls' needs a backbone with a class token; {name} has none. "
                "Use pooling='auto', 'avg' or 'gem'."
            )
        backbone.reset_classifier(0, global_pool="token")
    else:  # gem
        current = getattr(backbone, "global_pool", None)
        if not isinstance(current, (SelectAdaptivePool2d, GeM)):
            raise ValueError(
                f"pooling='gem' is supported for CNN backbones with an NCHW global pool (ResNet, MobileNet, "
                f"EfficientNet, convnet4, ...), not {name} (ViT features are signed LayerNorm outputs, which "
                "GeM's clamp would discard). Use pooling='auto', 'avg' or 'cls'."
            )
        flatten = current.flatten if isinstance(current, GeM) else isinstance(current.flatten, nn.Flatten)
        backbone.global_pool = GeM(gem_p, flatten=flatten)
