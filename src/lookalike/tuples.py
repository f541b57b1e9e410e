"""Typed index tuples and the index arithmetic shared by miners and losses (both import it from here).

A miner returns either :class:`TripletIndices` ``(anchor, positive, negative)`` or
:class:`PairIndices` ``(a1, p, a2, n)`` (positive pairs a1-p, negative pairs a2-n). Both are
``NamedTuple``s, so they unpack like pytorch-metric-learning's plain tuples and PML accepts them.
Anchors index ``embeddings`` (N); positives and negatives index ``ref_emb`` (M), which is the
batch itself when no reference set is given.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "IndicesTuple",
    "PairIndices",
    "TripletIndices",
    "all_pairs",
    "all_triplets",
    "as_indices_tuple",
    "check_inputs",
    "label_masks",
    "to_pairs",
    "to_triplets",
    "triplets_from_masks",
]


class TripletIndices(NamedTuple):
    """Triplets: ``anchor`` (T,) into embeddings; ``positive``, ``negative`` (T,) into the reference."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


class PairIndices(NamedTuple):
    """Pairs: positive pairs ``(a1, p)`` (P,) and negative pairs ``(a2, n)`` (Q,)."""

    a1: torch.Tensor
    p: torch.Tensor
    a2: torch.Tensor
    n: torch.Tensor


IndicesTuple = TripletIndices | PairIndices


def as_indices_tuple(indices: tuple[torch.Tensor, ...]) -> IndicesTuple:
    """Wrap a plain 3- or 4-tuple of index tensors (e.g. from PML) in the matching typed tuple."""
    if isinstance(indices, TripletIndices | PairIndices):
        return indices
    if len(indices) == 3:
        return TripletIndices(*(_as_long(t) for t in indices))
    if len(indices) == 4:
        return PairIndices(*(_as_long(t) for t in indices))
    raise ValueError(
        f"indices_tuple must have 3 tensors (anchor, positive, negative) or 4 (a1, p, a2, n), "
        f"got {len(indices)}"
    )


def _as_long(t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t if t.dtype == torch.long else t.long()


def label_masks(
    labels: torch.Tensor, ref_labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,), (M,) -> same-label mask (N, M) without self-matches, and different-label mask (N, M).

    Self-matches (the diagonal) are excluded only when ``ref_labels`` is None, i.e. when the
    reference set is the batch itself.
    """
    ref = labels if ref_labels is None else ref_labels
    same = labels.unsqueeze(1) == ref.unsqueeze(0)
    diff = ~same
    if ref_labels is None:
        same.fill_diagonal_(False)
    return same, diff


def all_pairs(labels: torch.Tensor, ref_labels: torch.Tensor | None = None) -> PairIndices:
    """Every positive and negative pair, each in row-major (anchor, other) order."""
    same, diff = label_masks(labels, ref_labels)
    a1, p = torch.where(same)
    a2, n = torch.where(diff)
    return PairIndices(a1, p, a2, n)


def triplets_from_masks(pos: torch.Tensor, neg: torch.Tensor) -> TripletIndices:
    """Every (a, p, n) with ``pos[a, p]`` and ``neg[a, n]``, in lexicographic (a, p, n) order.

    Works on the (P, M) block of positive pairs x candidates instead of a dense (N, M, M) cube.
    """
    a, p = torch.where(pos)
    rows, n = torch.where(neg[a])
    return TripletIndices(a[rows], p[rows], n)


def all_triplets(labels: torch.Tensor, ref_labels: torch.Tensor | None = None) -> TripletIndices:
    """Every valid triplet, in lexicographic (anchor, positive, negative) order (as PML)."""
    same, diff = label_masks(labels, ref_labels)
    return triplets_from_masks(same, diff)


def to_pairs(
    indices: tuple[torch.Tensor, ...] | None, labels: torch.Tensor, ref_labels: torch.Tensor | None = None
) -> PairIndices:
    """Pairs from any indices: None -> all pairs; triplets (a, p, n) -> (a, p, a, n) (as PML)."""
    if indices is None:
        return all_pairs(labels, ref_labels)
    indices = as_indices_tuple(indices)
    if isinstance(indices, PairIndices):
        return indices
    a, p, n = indices
    return PairIndices(a, p, a, n)


def to_triplets(
    indices: tuple[torch.Tensor, ...] | None, labels: torch.Tensor, ref_labels: torch.Tensor | None = None
) -> TripletIndices:
    """Triplets from any indices: None -> all triplets; pairs -> each positive pair joined with
    every negative pair of the same anchor, ordered by positive pair then negative pair (as PML).
    """
    if indices is None:
        return all_triplets(labels, ref_labels)
    indices = as_indices_tuple(indices)
    if isinstance(indices, TripletIndices):
        return indices
    a1, p, a2, n = indices
    if len(a1) == 0 or len(a2) == 0:
        empty = a1.new_zeros(0)
        return TripletIndices(empty, empty.clone(), empty.clone())
    # Group negative pairs by anchor (stable, so their original order is kept within an anchor).
    num_anchors = int(max(int(a1.max()), int(a2.max()))) + 1
    order = torch.argsort(a2, stable=True)
    counts = torch.bincount(a2, minlength=num_anchors)
    starts = torch.cumsum(counts, 0) - counts
    per_pos = counts[a1]  # negatives available to each positive pair
    pos_rep = torch.repeat_interleave(torch.arange(len(a1), device=a1.device), per_pos)
    # Offset of each triplet within its positive pair's run of negatives.
    run_start = torch.cumsum(per_pos, 0) - per_pos
    offset = torch.arange(len(pos_rep), device=a1.device) - run_start[pos_rep]
    neg_sel = order[starts[a1[pos_rep]] + offset]
    return TripletIndices(a1[pos_rep], p[pos_rep], n[neg_sel])


def check_inputs(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None,
    ref_emb: torch.Tensor | None,
    ref_labels: torch.Tensor | None,
    *,
    labels_required: bool = True,
) -> None:
    """Validate the PML-style call ``(embeddings (N, D), labels (N,), ref_emb (M, D), ref_labels (M,))``."""
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
    if labels is None:
        if labels_required:
            raise ValueError("labels are required")
    elif labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"labels must have shape ({embeddings.shape[0]},) to match embeddings, got {tuple(labels.shape)}"
        )
    if (ref_emb is None) != (ref_labels is None):
        raise ValueError("ref_emb and ref_labels must be given together (or both left None)")
    if ref_emb is not None:
        if ref_emb.dim() != 2 or ref_emb.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"ref_emb must be (M, {embeddings.shape[1]}) like embeddings, got {tuple(ref_emb.shape)}"
            )
        if ref_labels.shape != (ref_emb.shape[0],):
            raise ValueError(
                f"ref_labels must have shape ({ref_emb.shape[0]},), got {tuple(ref_labels.shape)}"
            )
