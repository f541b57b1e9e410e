"""The reduction contract shared by every loss.

A loss first computes its *terms*: one value per tuple (triplet losses: per triplet; pair
losses: per pair, positive pairs first) or per anchor (multi-similarity, ArcFace), which is what
``reduction="none"`` returns and what pytorch-metric-learning (PML) computes before its reducer.
``reduction`` then names how the terms become one number:

=================  ==========================================================  =====================
name               value                                                       PML reducer
=================  ==========================================================  =====================
``"none"``         the terms themselves, shape (T,)                            ``DoNothingReducer``
``"sum"``          the sum of the terms                                        ``SumReducer``
``"mean"``         the sum / T (all terms, zeros included)                     ``MeanReducer``
``"mean_nonzero"`` the sum / the number of terms > 0 (0 when there are none)   ``AvgNonZeroReducer``
``"per_anchor"``   each anchor's mean over its terms (0 for an anchor with     ``PerAnchorReducer``
                   none), then the mean over the N anchors (rows of embeddings)
=================  ==========================================================  =====================

No terms at all gives a zero that is still connected to the graph. Every listed tuple is a
term, duplicates included. The default is ``"mean"`` for every loss except
:class:`~lookalike.losses.MarginLoss`, whose paper normalises by the number of non-zero pair
terms (``"mean_nonzero"``). Where a loss departs from the table (PML reduces a pair loss's
positive and negative pairs separately and adds the two; the margin loss counts two hinge terms
per triplet; the range loss has one term per class), its docstring says so.
"""

from __future__ import annotations

import torch

__all__ = ["REDUCTIONS", "check_reduction", "reduce_terms"]

REDUCTIONS = ("mean", "mean_nonzero", "per_anchor", "sum", "none")


def check_reduction(reduction: str, *, valid: tuple[str, ...] = REDUCTIONS, owner: str = "") -> str:
    """``reduction`` if it is one of ``valid``, else a ValueError listing them."""
    if reduction not in valid:
        where = f" for {owner}" if owner else ""
        raise ValueError(f"unknown reduction {reduction!r}{where}; valid: {', '.join(valid)}")
    return reduction


def reduce_terms(
    terms: torch.Tensor,
    reduction: str,
    *,
    anchors: torch.Tensor | None = None,
    num_anchors: int | None = None,
) -> torch.Tensor:
    """Reduce the terms (T,) as ``reduction`` names (see the module docstring).

    ``anchors`` (T,) and ``num_anchors`` (N) are needed by ``"per_anchor"`` only; None means each
    term is its own anchor (losses with one term per embedding), so it equals ``"mean"``.
    """
    if reduction == "none":
        return terms
    if reduction == "sum" or terms.numel() == 0:
        return terms.sum()
    if reduction == "mean":
        return terms.mean()
    if reduction == "mean_nonzero":
        return terms.sum() / (terms > 0).sum().clamp_min(1)
    if reduction == "per_anchor":
        if anchors is None:
            return terms.mean()
        assert num_anchors is not None, "per_anchor needs num_anchors with anchors"
        sums = terms.new_zeros(num_anchors).index_add(0, anchors, terms)
        counts = torch.bincount(anchors, minlength=num_anchors).clamp_min(1)
        return (sums / counts.to(terms.dtype)).mean()
    raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
