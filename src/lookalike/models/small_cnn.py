"""A small CNN backbone for fast CPU training, registered in timm's model registry.

``lookalike_convnet4`` is the classic few-shot "Conv-4" (Vinyals et al. 2016, Snell et al. 2017):
four blocks of [conv3x3, BatchNorm, ReLU, maxpool 2x2], 64 channels each, followed by a global
average pool. It is registered with ``timm.models.register_model`` when ``lookalike.models`` is
imported, so ``timm.create_model("lookalike_convnet4", num_classes=0)`` works and the rest of
lookalike treats it like any other timm backbone.
"""

from __future__ import annotations

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["ConvNet4"]


class _ConvBlock(nn.Sequential):
    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)


class ConvNet4(nn.Module):
    """Conv-4: ``depth`` x [conv3x3 ``width`` ch, BN, ReLU, maxpool2], then a global pool.

    Follows timm's model interface: ``num_features``, ``forward_features`` (N, C, H, W) ->
    (N, width, H / 2**depth, W / 2**depth), ``forward_head(x, pre_logits=True)`` -> (N, width),
    ``reset_classifier``; ``blocks`` holds the conv blocks (used by ``freeze="last_n_blocks"``).
    """

    def __init__(
        self,
        *,
        num_classes: int = 0,
        in_chans: int = 3,
        width: int = 64,
        depth: int = 4,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"ConvNet4 needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = width
        self.drop_rate = drop_rate
        chans = [in_chans] + [width] * depth
        self.blocks = nn.Sequential(*[_ConvBlock(chans[i], chans[i + 1]) for i in range(depth)])
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: object) -> dict[str, object]:
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, 64, 64),
        "pool_size": (4, 4),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "blocks.0.conv",
        "classifier": "fc",
        **kwargs,
    }


# Read by ``register_model`` at decoration time: it must exist before the entrypoint below.
default_cfgs = generate_default_cfgs({"lookalike_convnet4": _cfg()})


@register_model
def lookalike_convnet4(pretrained: bool = False, **kwargs: object) -> ConvNet4:
    """Conv-4 (64 channels, 64x64 inputs by default); ``width=`` and ``depth=`` change its size."""
    return build_model_with_cfg(ConvNet4, "lookalike_convnet4", pretrained, **kwargs)
