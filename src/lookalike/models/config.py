"""The typed, strict configuration of an embedder (the ``model:`` section of a training config)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lookalike.models.backbones import resolve_backbone_name

__all__ = ["RESERVED_BACKBONE_KWARGS", "ModelConfig"]

#: Keyword arguments of ``timm.create_model`` that lookalike sets itself from ModelConfig fields.
RESERVED_BACKBONE_KWARGS = frozenset(
    {"model_name", "pretrained", "num_classes", "global_pool", "in_chans", "img_size", "checkpoint_path"}
)


class ModelConfig(BaseModel):
    """An embedder: timm backbone -> pooling -> (BatchNorm neck) -> head -> L2 normalisation."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = Field(
        "mobilenetv2_100",
        description="timm model name (optionally 'arch.tag') or a lookalike alias such as 'dinov2_vits14' "
        "or 'convnet4'; see lookalike.models.list_backbones().",
    )
    pretrained: bool = Field(
        False,
        description="Download the backbone's pretrained weights through timm's hub path. Fails offline: "
        "use `weights` with a local file instead.",
    )
    weights: str | None = Field(
        None,
        description="Path to a local .safetensors/.pt/.pth state dict in timm key names, loaded into the "
        "backbone (classifier keys are reported as unexpected and ignored; shape mismatches are refused).",
    )
    embed_dim: int | None = Field(
        128,
        ge=1,
        description="Size of the output embedding. None = the backbone's feature_dim. The identity head "
        "requires None or exactly feature_dim.",
    )
    head: Literal["identity", "linear", "mlp"] = Field(
        "linear",
        description="identity: pooled features as they are; linear: Linear(feature_dim, embed_dim); "
        "mlp: Linear(feature_dim, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, embed_dim).",
    )
    mlp_hidden_dim: int | None = Field(
        None, ge=1, description="Hidden width of the mlp head. None = feature_dim. Only for head='mlp'."
    )
    neck_bn: bool = Field(False, description="BatchNorm1d on the pooled features before the head.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the pooled features before the head.")
    pooling: Literal["auto", "avg", "cls", "mean", "gem"] = Field(
        "auto",
        description="auto: the backbone's default (avg for CNNs, CLS token or avg for ViTs); avg/mean: "
        "average over positions or patch tokens; cls: the class token (ViTs only); gem: generalised mean "
        "pooling with a learnable p (CNNs with an NCHW global pool only).",
    )
    gem_p: float = Field(
        3.0, gt=0.0, description="Initial p of GeM pooling (learnable). Only for pooling='gem'."
    )
    freeze: Literal["full", "frozen", "last_n_blocks"] = Field(
        "full",
        description="full: everything trains; frozen: the backbone is fixed (requires_grad False, kept in "
        "eval mode) and only the head trains, so its features can be cached; last_n_blocks: only the last "
        "`last_n_blocks` blocks of the backbone, its final norm/conv head, and the head train.",
    )
    last_n_blocks: int = Field(
        0, ge=0, description="Number of trailing backbone blocks to train; only with freeze='last_n_blocks'."
    )
    image_size: int | None = Field(
        None,
        ge=1,
        description="Input height and width. None = the backbone's default. ViTs are built for this size "
        "(timm's img_size).",
    )
    in_chans: int = Field(
        3,
        description="Input channels: 3 (RGB) or 1 (images converted to grayscale, mean/std averaged over "
        "the backbone's channels; pretrained weights have their first conv summed over channels by timm).",
    )
    backbone_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for timm.create_model (e.g. drop_path_rate, or width for "
        "convnet4). Plain YAML values only; unknown ones are rejected by timm.",
    )

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        resolve_backbone_name(value)  # raises a ValueError naming close matches
        return value

    @field_validator("in_chans")
    @classmethod
    def _readable_channels(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError(
                f"in_chans={value} cannot be fed: images are read as RGB, so in_chans must be 3 (colour) or "
                "1 (grayscale)"
            )
        return value

    @field_validator("backbone_kwargs")
    @classmethod
    def _no_reserved_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(RESERVED_BACKBONE_KWARGS & value.keys())
        if reserved:
            raise ValueError(
                f"backbone_kwargs may not set {reserved}: lookalike sets them from the fields backbone, "
                "pretrained, weights, pooling, in_chans and image_size"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.pretrained and self.weights is not None:
            raise ValueError(
                f"pretrained=True and weights={self.weights!r} both ask for weights; choose one "
                "(weights=PATH for a local file, pretrained=True to download)"
            )
        if self.freeze == "last_n_blocks" and self.last_n_blocks < 1:
            raise ValueError(f"freeze='last_n_blocks' needs last_n_blocks >= 1, got {self.last_n_blocks}")
        if self.freeze != "last_n_blocks" and self.last_n_blocks != 0:
            raise ValueError(
                f"last_n_blocks={self.last_n_blocks} is only used with freeze='last_n_blocks', "
                f"not freeze={self.freeze!r}; set it to 0 or change freeze"
            )
        if self.mlp_hidden_dim is not None and self.head != "mlp":
            raise ValueError(
                f"mlp_hidden_dim={self.mlp_hidden_dim} is only used with head='mlp', not {self.head!r}"
            )
        return self
