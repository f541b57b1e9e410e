"""Losses against pytorch-metric-learning (PML): same tuples, same per-tuple values (reduction="none")."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from lookalike.distances import CosineSimilarity
from lookalike.losses import ArcFaceLoss, ContrastiveLoss, MarginLoss, MultiSimilarityLoss, TripletLoss
from lookalike.miners import PairIndices

ATOL = 1e-5


def pk_batch(p: int = 4, k: int = 3, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(p * k, d, generator=g)
    labels = torch.arange(p).repeat_interleave(k)
    perm = torch.randperm(p * k, generator=g)
    return emb[perm].contiguous(), labels[perm].contiguous()


NONE = pml_reducers.DoNothingReducer


def pml_values(out, *names):
    return torch.cat([torch.as_tensor(out[n]["losses"]).reshape(-1) for n in names])


def mined_triplets(emb, labels):
    from pytorch_metric_learning.miners import TripletMarginMiner

    return TripletMarginMiner(margin=0.3, type_of_triplets="all")(emb, labels)


@pytest.mark.parametrize("given", ["none", "triplets", "pairs"])
def test_contrastive_matches_pml(given):
    emb, labels = pk_batch(p=5, k=4, seed=7)
    idx = {"none": None, "triplets": mined_triplets(emb, labels), "pairs": lmu.get_all_pairs_indices(labels)}[
        given
    ]
    ours = ContrastiveLoss(pos_margin=0.25, neg_margin=0.9, reduction="none")
    theirs = pml_losses.ContrastiveLoss(pos_margin=0.25, neg_margin=0.9, reducer=NONE())
    out = theirs(emb, labels, idx)
    torch.testing.assert_close(
        ours(emb, labels, idx), pml_values(out, "pos_loss", "neg_loss"), atol=ATOL, rtol=0
    )
    # PML's default reducer = mean of non-zero positive losses + mean of non-zero negative losses.
    v = ours(emb, labels, idx)
    n_pos = len(lmu.convert_to_pairs(idx, labels)[0])
    pos, neg = v[:n_pos], v[n_pos:]
    want = pml_losses.ContrastiveLoss(pos_margin=0.25, neg_margin=0.9)(emb, labels, idx)
    torch.testing.assert_close(pos[pos > 0].mean() + neg[neg > 0].mean(), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("given", ["none", "triplets", "pairs"])
@pytest.mark.parametrize("smooth", [False, True])
def test_triplet_matches_pml(given, smooth):
    emb, labels = pk_batch(p=5, k=4, seed=8)
    idx = {"none": None, "triplets": mined_triplets(emb, labels), "pairs": lmu.get_all_pairs_indices(labels)}[
        given
    ]
    ours = TripletLoss(margin=0.2, smooth=smooth, reduction="none")(emb, labels, idx)
    out = pml_losses.TripletMarginLoss(margin=0.2, smooth_loss=smooth, reducer=NONE())(emb, labels, idx)
    torch.testing.assert_close(ours, pml_values(out, "loss"), atol=ATOL, rtol=0)
    want = pml_losses.TripletMarginLoss(margin=0.2, smooth_loss=smooth)(emb, labels, idx)
    torch.testing.assert_close(ours[ours > 0].mean(), want, atol=ATOL, rtol=0)


def test_triplet_with_ref_and_cosine_matches_pml():
    emb, labels = pk_batch(seed=9)
    ref, ref_labels = pk_batch(p=4, k=5, seed=10)
    ours = TripletLoss(margin=0.1, distance=CosineSimilarity(), reduction="none")(
        emb, labels, None, ref, ref_labels
    )
    theirs = pml_losses.TripletMarginLoss(
        margin=0.1, distance=pml_distances.CosineSimilarity(), reducer=NONE()
    )
    torch.testing.assert_close(
        ours, pml_values(theirs(emb, labels, None, ref, ref_labels), "loss"), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("num_classes", [None, 5])
def test_margin_matches_pml(num_classes):
    emb, labels = pk_batch(p=5, k=4, seed=11)
    ours = MarginLoss(margin=0.2, beta=1.1, learn_beta=True, num_classes=num_classes, nu=0.0)
    theirs = pml_losses.MarginLoss(margin=0.2, beta=1.1, learn_beta=True, num_classes=num_classes, nu=0.0)
    if num_classes:
        b = torch.tensor([0.9, 1.0, 1.1, 1.2, 1.3])
        with torch.no_grad():
            ours.beta.copy_(b)
            theirs.beta.copy_(b)
    torch.testing.assert_close(ours(emb, labels), theirs(emb, labels), atol=ATOL, rtol=0)
    ours.reduction = "none"
    theirs.reducer = NONE()
    torch.testing.assert_close(
        ours(emb, labels), pml_values(theirs(emb, labels), "margin_loss"), atol=ATOL, rtol=0
    )


def test_margin_nu_regulariser_matches_pml_global_beta():
    emb, labels = pk_batch(p=5, k=4, seed=12)
    ours = MarginLoss(margin=0.2, beta=1.0, nu=0.1)
    theirs = pml_losses.MarginLoss(margin=0.2, beta=1.0, nu=0.1, learn_beta=True)
    torch.testing.assert_close(ours(emb, labels), theirs(emb, labels), atol=ATOL, rtol=0)
    ours(emb, labels).backward()
    assert ours.beta.grad is not None and ours.beta.grad.abs().item() > 0


@pytest.mark.parametrize("given", ["none", "triplets"])
def test_multi_similarity_matches_pml(given):
    emb, labels = pk_batch(p=5, k=4, seed=13)
    idx = None if given == "none" else mined_triplets(emb, labels)
    ours = MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
    theirs = pml_losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
    torch.testing.assert_close(ours(emb, labels, idx), theirs(emb, labels, idx), atol=ATOL, rtol=0)
    ours.reduction = "none"
    out = pml_losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, reducer=NONE())(emb, labels, idx)
    torch.testing.assert_close(ours(emb, labels, idx), pml_values(out, "loss"), atol=ATOL, rtol=0)


def test_arcface_matches_pml():
    emb, labels = pk_batch(p=5, k=4, seed=14)
    ours = ArcFaceLoss(num_classes=5, embedding_size=8, margin=0.5, scale=64.0, reduction="none")
    theirs = pml_losses.ArcFaceLoss(
        num_classes=5, embedding_size=8, margin=math.degrees(0.5), scale=64, reducer=NONE()
    )
    with torch.no_grad():
        theirs.W.copy_(ours.proxies.T)
    torch.testing.assert_close(
        ours(emb, labels), pml_values(theirs(emb, labels), "loss"), atol=1e-4, rtol=1e-5
    )


@pytest.mark.parametrize("cls", [ContrastiveLoss, TripletLoss, MarginLoss])
def test_given_indices_with_duplicates_reduce_like_none(cls):
    emb, labels = pk_batch(seed=16)
    a1, p, a2, n = lmu.get_all_pairs_indices(labels)
    # Repeat some pairs and shuffle: every listed tuple counts, duplicates included.
    g = torch.Generator().manual_seed(0)
    sel_p = torch.randint(0, len(a1), (3 * len(a1),), generator=g)
    sel_n = torch.randint(0, len(a2), (len(a2),), generator=g)
    idx = PairIndices(a1[sel_p], p[sel_p], a2[sel_n], n[sel_n])
    none = cls(reduction="none")(emb, labels, idx)
    torch.testing.assert_close(cls(reduction="sum")(emb, labels, idx), none.sum(), atol=1e-3, rtol=1e-5)
    if cls is not MarginLoss:
        torch.testing.assert_close(cls(reduction="mean")(emb, labels, idx), none.mean(), atol=ATOL, rtol=0)
    # Gradients of the dense (counted) path equal those of summing the per-tuple values.
    e1, e2 = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
    cls(reduction="sum")(e1, labels, idx).backward()
    cls(reduction="none")(e2, labels, idx).sum().backward()
    torch.testing.assert_close(e1.grad, e2.grad, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- named reductions = PML's reducers

REDUCERS = {
    "mean": pml_reducers.MeanReducer,
    "sum": pml_reducers.SumReducer,
    "mean_nonzero": pml_reducers.AvgNonZeroReducer,
    "per_anchor": pml_reducers.PerAnchorReducer,
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero"])
@pytest.mark.parametrize("given", ["none", "triplets"])
def test_triplet_reductions_equal_pml_reducers(reduction, given):
    emb, labels = pk_batch(p=5, k=4, seed=31)
    idx = None if given == "none" else mined_triplets(emb, labels)
    ours = TripletLoss(margin=0.2, reduction=reduction)(emb, labels, idx)
    theirs = pml_losses.TripletMarginLoss(margin=0.2, reducer=REDUCERS[reduction]())(emb, labels, idx)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("reduction", list(REDUCERS))
@pytest.mark.parametrize("kind", ["positive", "negative"])
def test_contrastive_reductions_equal_pml_reducers(reduction, kind):
    """PML reduces positive and negative pairs separately and adds the two: with one kind of
    pair only, its reducers and our named reductions are the same thing."""
    emb, labels = pk_batch(p=5, k=4, seed=32)
    a1, p, a2, n = lmu.get_all_pairs_indices(labels)
    g = torch.Generator().manual_seed(0)
    keep_p = torch.randperm(len(a1), generator=g)[:20]  # anchors with 0 to 3 pairs, no duplicates
    keep_n = torch.randperm(len(a2), generator=g)[:60]
    empty = a1[:0]
    idx = (
        (a1[keep_p], p[keep_p], empty, empty) if kind == "positive" else (empty, empty, a2[keep_n], n[keep_n])
    )
    ours = ContrastiveLoss(pos_margin=0.3, neg_margin=0.9, reduction=reduction)(emb, labels, idx)
    theirs = pml_losses.ContrastiveLoss(pos_margin=0.3, neg_margin=0.9, reducer=REDUCERS[reduction]())
    torch.testing.assert_close(ours, theirs(emb, labels, idx), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("reduction", list(REDUCERS))
def test_multi_similarity_and_arcface_reductions_equal_pml_reducers(reduction):
    emb, labels = pk_batch(p=5, k=4, seed=33)
    idx = mined_triplets(emb, labels)  # some anchors get no pairs: zero terms
    ours = MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, reduction=reduction)(emb, labels, idx)
    theirs = pml_losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, reducer=REDUCERS[reduction]())
    torch.testing.assert_close(ours, theirs(emb, labels, idx), atol=ATOL, rtol=1e-5)
    arc = ArcFaceLoss(num_classes=5, embedding_size=8, margin=0.5, scale=16.0, reduction=reduction)
    pml_arc = pml_losses.ArcFaceLoss(
        num_classes=5, embedding_size=8, margin=math.degrees(0.5), scale=16, reducer=REDUCERS[reduction]()
    )
    with torch.no_grad():
        pml_arc.W.copy_(arc.proxies.T)
    torch.testing.assert_close(arc(emb, labels), pml_arc(emb, labels), atol=1e-4, rtol=1e-5)


def test_margin_default_is_pml_default_reducer():
    """MarginLoss's default "mean_nonzero" is PML's DivisorReducer (non-zero hinge terms)."""
    emb, labels = pk_batch(p=5, k=4, seed=34)
    idx = mined_triplets(emb, labels)
    ours = MarginLoss(margin=0.2, beta=1.0, nu=0.0)
    assert ours.reduction == "mean_nonzero"
    theirs = pml_losses.MarginLoss(margin=0.2, beta=1.0, nu=0.0, learn_beta=True)
    torch.testing.assert_close(ours(emb, labels, idx), theirs(emb, labels, idx), atol=ATOL, rtol=1e-5)
    for reduction in ("mean", "sum"):
        ours.reduction = reduction
        got = pml_losses.MarginLoss(margin=0.2, beta=1.0, learn_beta=True, reducer=REDUCERS[reduction]())
        torch.testing.assert_close(ours(emb, labels, idx), got(emb, labels, idx), atol=ATOL, rtol=1e-5)
