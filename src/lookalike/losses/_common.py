"""Tensor helpers shared by the losses: gathering pair values and the zero-with-gradient."""

from __future__ import annotations

import torch

__all__ = [
    "check_class_labels",
    "gather_pairs",
    "pair_counts",
    "refuse_tuples",
    "sum_over_pairs",
    "zero_with_grad",
]


def refuse_tuples(owner: str, why: str, indices_tuple: object, ref_emb: object) -> None:
    """For the losses computed on the batch alone (proxies, class centres): no tuples, no reference."""
    if indices_tuple is not None or ref_emb is not None:
        raise ValueError(
            f"{owner} {why}: it takes no indices_tuple (use no miner and no cross-batch memory) "
            "and no ref_emb"
        )


def check_class_labels(owner: str, labels: torch.Tensor, num_classes: int) -> None:
    """For the losses with one parameter per class: every label in ``[0, num_classes)``."""
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"{owner}(num_classes={num_classes}) got label {int(labels[bad][0])}; "
            f"labels must be in [0, {num_classes})"
        )


def zero_with_grad(embeddings: torch.Tensor, reduction: str, *extra: torch.Tensor) -> torch.Tensor:
    """A zero loss that is still connected to the graph (so ``.backward()`` works and gives zeros).

    ``reduction="none"`` gives an empty (0,) tensor.
    """
    z = embeddings.sum() * 0
    for t in extra:
        if t is not None and t.requires_grad:
            z = z + t.sum() * 0
    return z.reshape(1)[:0] if reduction == "none" else z


def gather_pairs(mat: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``mat[rows, cols]`` through a flat index (its backward is a cheap 1-D scatter-add)."""
    return mat.reshape(-1)[rows * mat.shape[1] + cols]


def sum_over_pairs(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``values[rows, cols].sum()`` for (N, M) ``values``, the cheapest way for the pair count.

    Few pairs: a gather (its backward scatters only those cells). Many pairs (all negatives of a
    batch, say): multiply by per-cell counts, elementwise both ways, instead of gathering and
    scatter-adding hundreds of thousands of entries.
    """
    if len(rows) * 8 < values.numel():
        return values[rows, cols].sum()
    return (values * pair_counts(values, rows, cols)).sum()


def pair_counts(mat: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(N, M) counts of how many times each cell ``(rows[i], cols[i])`` is listed, in ``mat``'s dtype."""
    n, m = mat.shape
    return torch.bincount(rows * m + cols, minlength=n * m).reshape(n, m).to(mat.dtype)
