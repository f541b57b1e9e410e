"""Embedding heads: pooled features (N, feature_dim) -> embeddings (N, embed_dim), before L2 norm."""

from __future__ import annotations

from typing import Literal

from torch import nn

__all__ = ["HEADS", "create_head"]

HEADS = ("identity", "linear", "mlp")


def create_head(
    kind: Literal["identity", "linear", "mlp"],
    *,
    feature_dim: int,
    embed_dim: int | None,
    neck_bn: bool = False,
    dropout: float = 0.0,
    hidden_dim: int | None = None,
) -> nn.Sequential:
    """An nn.Sequential: [BatchNorm1d neck] -> [Dropout] -> identity | linear | mlp.

    - identity: no parameters (besides the neck); ``embed_dim`` must be None or ``feature_dim``.
    - linear: ``Linear(feature_dim, embed_dim)``.
    - mlp: ``Linear(feature_dim, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, embed_dim)``,
      ``hidden = hidden_dim or feature_dim``.

    ``embed_dim=None`` means ``feature_dim``.
    """
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; valid: {list(HEADS)}")
    if hidden_dim is not None and kind != "mlp":
        raise ValueError(f"hidden_dim={hidden_dim} is only used by the 'mlp' head, not {kind!r}")
    out_dim = feature_dim if embed_dim is None else embed_dim
    if kind == "identity" and out_dim != feature_dim:
        raise ValueError(
            f"the identity head outputs the backbone's features, feature_dim={feature_dim}, but "
            f"embed_dim={embed_dim} was asked; set embed_dim to {feature_dim} or None, or use head='linear'"
        )
    layers: list[nn.Module] = []
    if neck_bn:
        layers.append(nn.BatchNorm1d(feature_dim))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    if kind == "linear":
        layers.append(nn.Linear(feature_dim, out_dim))
    elif kind == "mlp":
        hidden = hidden_dim or feature_dim
        layers += [
            nn.Linear(feature_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        ]
    return nn.Sequential(*layers)
