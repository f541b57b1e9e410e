"""The embedder: timm backbone -> pooling -> head -> L2 normalisation."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lookalike.models.backbones import Preprocessing, create_timm_backbone, resolve_preprocessing
from lookalike.models.config import ModelConfig
from lookalike.models.freezing import apply_freeze, block_depths, frozen_batchnorms
from lookalike.models.heads import create_head
from lookalike.models.pooling import set_pooling
from lookalike.models.weights import LoadReport, load_weights

__all__ = ["Embedder", "create_embedder", "create_embedder_from"]

logger = logging.getLogger(__name__)


def _feature_dim(backbone: nn.Module) -> int:
    """Width of a timm backbone's pooled output (num_classes=0): head_hidden_size, else num_features."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


class Embedder(nn.Module):
    """images (N, C, H, W) -> L2-normalised embeddings (N, embed_dim).

    ``features`` (pooled backbone output, (N, feature_dim)) and ``embed_features`` (head + L2 norm)
    split the forward pass so that a frozen backbone's features can be computed once and cached.
    Build it with :func:`create_embedder`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        *,
        config: ModelConfig,
        preprocessing: Preprocessing,
        feature_dim: int,
        embed_dim: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config
        self.preprocessing = preprocessing
        self.feature_dim = feature_dim
        self.embed_dim = embed_dim
        self.load_report: LoadReport | None = None  # set when config.weights was loaded

    @property
    def backbone_trainable(self) -> bool:
        """False when no backbone parameter trains (freeze='frozen'): its features can be cached."""
        return any(p.requires_grad for p in self.backbone.parameters())

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> pooled backbone features (N, feature_dim), no head, not normalised."""
        return self.backbone(images)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """(N, feature_dim) -> L2-normalised embeddings (N, embed_dim)."""
        return F.normalize(self.head(features), p=2, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> L2-normalised embeddings (N, embed_dim)."""
        return self.embed_features(self.features(images))

    def train(self, mode: bool = True) -> Embedder:
        """Like nn.Module.train, but a frozen backbone (and frozen BatchNorm layers) stay in eval mode."""
        super().train(mode)
        if mode:
            if not self.backbone_trainable:
                self.backbone.eval()
            else:
                for bn in frozen_batchnorms(self.backbone):
                    bn.eval()
        return self

    def param_groups(
        self,
        *,
        lr: float,
        backbone_lr: float | None = None,
        weight_decay: float = 0.0,
        layer_decay: float | None = None,
    ) -> list[dict[str, Any]]:
        """Parameter groups for AdamW over the trainable parameters.

        The backbone gets ``backbone_lr`` (``lr`` when None), the head ``lr``. Biases, norm weights,
        GeM's p (every parameter with ndim <= 1) and the backbone's ``no_weight_decay()`` names (ViT
        position embeddings and tokens) get no weight decay. Empty groups are left out; each group has
        a ``name`` (backbone, backbone_no_decay, head, head_no_decay).

        ``layer_decay=d`` splits the backbone groups by depth from the top (see
        :func:`~lookalike.models.freezing.block_depths`): a parameter ``depth`` blocks below the last one
        gets ``backbone_lr * d ** depth``; those groups also carry ``depth`` and ``lr_scale`` (d ** depth).
        """
        skip = set(self.backbone.no_weight_decay()) if hasattr(self.backbone, "no_weight_decay") else set()
        depths: dict[str, int] = {}
        if layer_decay is not None and self.backbone_trainable:
            depths, _ = block_depths(self.backbone)
        groups: list[dict[str, Any]] = []
        for part, module, part_lr in (
            ("backbone", self.backbone, lr if backbone_lr is None else backbone_lr),
            ("head", self.head, lr),
        ):
            buckets: dict[tuple[int, bool], list[nn.Parameter]] = {}
            for name, param in module.named_parameters():
                if not param.requires_grad:
                    continue
                no_wd = param.ndim <= 1 or (part == "backbone" and name in skip)
                depth = depths.get(name, 0) if part == "backbone" else 0
                buckets.setdefault((depth, no_wd), []).append(param)
            for depth, no_wd in sorted(buckets, key=lambda key: (-key[0], key[1])):
                group: dict[str, Any] = {
                    "name": f"{part}_no_decay" if no_wd else part,
                    "params": buckets[depth, no_wd],
                    "lr": part_lr,
                    "weight_decay": 0.0 if no_wd else weight_decay,
                }
                if part == "backbone" and layer_decay is not None:
                    scale = layer_decay**depth
                    group.update(lr=part_lr * scale, depth=depth, lr_scale=scale)
                groups.append(group)
        return groups


def create_embedder(config: ModelConfig) -> Embedder:
    """Build an :class:`Embedder` from a :class:`ModelConfig`.

    Order: create the timm backbone (downloading with ``pretrained=True``), load ``weights=PATH`` into
    it (the report is kept on ``embedder.load_report``), set the pooling, build the head, freeze.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(
            f"create_embedder takes a ModelConfig, got {type(config).__name__}; "
            "use create_embedder_from(name, **options) for keyword arguments"
        )
    backbone = create_timm_backbone(
        config.backbone,
        pretrained=config.pretrained,
        in_chans=config.in_chans,
        image_size=config.image_size,
        **config.backbone_kwargs,
    )
    report = load_weights(backbone, config.weights) if config.weights is not None else None
    set_pooling(backbone, config.pooling, gem_p=config.gem_p)
    feature_dim = _feature_dim(backbone)
    head = create_head(
        config.head,
        feature_dim=feature_dim,
        embed_dim=config.embed_dim,
        neck_bn=config.neck_bn,
        dropout=config.dropout,
        hidden_dim=config.mlp_hidden_dim,
    )
    apply_freeze(backbone, config.freeze, last_n_blocks=config.last_n_blocks)
    embedder = Embedder(
        backbone,
        head,
        config=config,
        preprocessing=resolve_preprocessing(backbone, image_size=config.image_size, in_chans=config.in_chans),
        feature_dim=feature_dim,
        embed_dim=config.embed_dim or feature_dim,
    )
    embedder.load_report = report
    return embedder.train()  # applies the frozen-backbone eval rule from the start


def create_embedder_from(backbone: str, **options: Any) -> Embedder:
    """``create_embedder(ModelConfig(backbone=backbone, **options))``; unknown options raise TypeError."""
    valid = set(ModelConfig.model_fields) - {"backbone"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for create_embedder_from; valid: {sorted(valid)}")
    return create_embedder(ModelConfig(backbone=backbone, **options))
