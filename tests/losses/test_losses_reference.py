"""Losses against slow loop references and against pytorch-metric-learning (PML)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lookalike.distances import CosineSimilarity, EuclideanDistance
from lookalike.losses import (
    ArcFaceLoss,
    ContrastiveLoss,
    MarginLoss,
    MultiSimilarityLoss,
    RangeLoss,
    TripletLoss,
    create_loss,
    list_losses,
    loss_class,
)
from lookalike.miners import PairIndices, TripletIndices

ATOL = 1e-5


def pk_batch(p: int = 4, k: int = 3, d: int = 8, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(p * k, d, generator=g, dtype=dtype)
    labels = torch.arange(p).repeat_interleave(k)
    perm = torch.randperm(p * k, generator=g)
    return emb[perm].contiguous(), labels[perm].contiguous()


# ---------------------------------------------------------------- slow, obvious references


def ref_value(kind: str, u: torch.Tensor, v: torch.Tensor) -> float:
    """One distance/similarity, the obvious way."""
    if kind in ("euclidean", "squared_euclidean"):
        u, v = u / u.norm(), v / v.norm()
        sq = sum(float(a - b) ** 2 for a, b in zip(u, v, strict=True))
        return sq if kind == "squared_euclidean" else math.sqrt(sq)
    u, v = u / u.norm(), v / v.norm()
    return sum(float(a * b) for a, b in zip(u, v, strict=True))


def loop_pairs(labels, ref_labels=None):
    same_batch = ref_labels is None
    ref_labels = labels if ref_labels is None else ref_labels
    pos, neg = [], []
    for i in range(len(labels)):
        for j in range(len(ref_labels)):
            if same_batch and i == j:
                continue
            (pos if labels[i] == ref_labels[j] else neg).append((i, j))
    return pos, neg


def loop_triplets(labels, ref_labels=None):
    pos, neg = loop_pairs(labels, ref_labels)
    return [(a, p, n) for a, p in pos for a2, n in neg if a2 == a]


def higher_is_closer(kind):
    return kind in ("cosine",)


def gap(kind, closer, farther):
    return closer - farther if higher_is_closer(kind) else farther - closer


def loop_contrastive(emb, labels, kind, pos_margin, neg_margin, ref=None, ref_labels=None):
    ref = emb if ref is None else ref
    pos, neg = loop_pairs(labels, ref_labels)
    out = [max(gap(kind, pos_margin, ref_value(kind, emb[a], ref[p])), 0.0) for a, p in pos]
    out += [max(gap(kind, ref_value(kind, emb[a], ref[n]), neg_margin), 0.0) for a, n in neg]
    return torch.tensor(out)


def loop_triplet(emb, labels, kind, margin, smooth, ref=None, ref_labels=None):
    ref = emb if ref is None else ref
    out = []
    for a, p, n in loop_triplets(labels, ref_labels):
        v = margin - gap(kind, ref_value(kind, emb[a], ref[p]), ref_value(kind, emb[a], ref[n]))
        out.append(math.log1p(math.exp(v)) if smooth else max(v, 0.0))
    return torch.tensor(out)


def loop_margin(emb, labels, margin, betas):
    out, active = [], 0
    for a, p, n in loop_triplets(labels):
        b = betas[int(labels[a])] if len(betas) > 1 else betas[0]
        pos = max(ref_value("euclidean", emb[a], emb[p]) - b + margin, 0.0)
        neg = max(b - ref_value("euclidean", emb[a], emb[n]) + margin, 0.0)
        active += (pos > 0) + (neg > 0)
        out.append(pos + neg)
    return torch.tensor(out), active


def loop_multi_similarity(emb, labels, alpha, beta, base):
    out = []
    for i in range(len(labels)):
        pos = [
            ref_value("cosine", emb[i], emb[j])
            for j in range(len(labels))
            if j != i and labels[j] == labels[i]
        ]
        neg = [ref_value("cosine", emb[i], emb[j]) for j in range(len(labels)) if labels[j] != labels[i]]
        lp = math.log(1 + sum(math.exp(-alpha * (s - base)) for s in pos)) / alpha if pos else 0.0
        ln = math.log(1 + sum(math.exp(beta * (s - base)) for s in neg)) / beta if neg else 0.0
        out.append(lp + ln)
    return torch.tensor(out)


def loop_range(x, labels, k, margin, alpha, beta):
    """Per-class values (alpha * intra_c + beta * inter) for classes with >= 2 samples, and parts."""
    classes = sorted(set(labels.tolist()))
    intra = []
    for c in classes:
        idx = [i for i in range(len(labels)) if labels[i] == c]
        ds = sorted(
            (float(((x[i] - x[j]) ** 2).sum()) for ii, i in enumerate(idx) for j in idx[ii + 1 :]),
            reverse=True,
        )[:k]
        if ds:
            intra.append(len(ds) / sum(1.0 / d for d in ds))
    centres = {c: x[labels == c].mean(0) for c in classes}
    dmin = min(
        float(((centres[c1] - centres[c2]) ** 2).sum())
        for i, c1 in enumerate(classes)
        for c2 in classes[i + 1 :]
    )
    inter = max(margin - dmin, 0.0)
    return torch.tensor([alpha * v + beta * inter for v in intra]), intra, inter


# ---------------------------------------------------------------- against the loops

DIST = {
    "euclidean": EuclideanDistance(),
    "squared_euclidean": EuclideanDistance(squared=True),
    "cosine": CosineSimilarity(),
}


@pytest.mark.parametrize("kind", list(DIST))
def test_contrastive_matches_loop(kind):
    emb, labels = pk_batch()
    pm, nm = (0.1, 0.9) if kind == "cosine" else (0.2, 1.1)
    loss = ContrastiveLoss(pos_margin=pm, neg_margin=nm, distance=DIST[kind], reduction="none")
    want = loop_contrastive(emb, labels, kind, pm, nm)
    torch.testing.assert_close(loss(emb, labels), want, atol=ATOL, rtol=0)
    mean = ContrastiveLoss(pos_margin=pm, neg_margin=nm, distance=DIST[kind])(emb, labels)
    torch.testing.assert_close(mean, want.mean(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", list(DIST))
@pytest.mark.parametrize("smooth", [False, True])
def test_triplet_matches_loop(kind, smooth):
    emb, labels = pk_batch()
    loss = TripletLoss(margin=0.3, smooth=smooth, distance=DIST[kind], reduction="none")
    want = loop_triplet(emb, labels, kind, 0.3, smooth)
    torch.testing.assert_close(loss(emb, labels), want, atol=ATOL, rtol=0)
    s = TripletLoss(margin=0.3, smooth=smooth, distance=DIST[kind], reduction="sum")(emb, labels)
    torch.testing.assert_close(s, want.sum(), atol=1e-4, rtol=0)


def test_triplet_and_contrastive_with_ref_match_loop():
    emb, labels = pk_batch(seed=1)
    ref, ref_labels = pk_batch(p=4, k=4, seed=2)
    got = TripletLoss(margin=0.2, reduction="none")(emb, labels, None, ref, ref_labels)
    torch.testing.assert_close(
        got, loop_triplet(emb, labels, "euclidean", 0.2, False, ref, ref_labels), atol=ATOL, rtol=0
    )
    got = ContrastiveLoss(reduction="none")(emb, labels, None, ref, ref_labels)
    want = loop_contrastive(emb, labels, "euclidean", 0.0, 1.0, ref, ref_labels)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("num_classes", [None, 4])
def test_margin_matches_loop(num_classes):
    emb, labels = pk_batch(seed=3)
    loss = MarginLoss(margin=0.2, beta=1.0, num_classes=num_classes, reduction="none")
    if num_classes:
        with torch.no_grad():
            loss.beta.copy_(torch.tensor([0.9, 1.0, 1.1, 1.2]))
    betas = loss.beta.detach().tolist()
    want, active = loop_margin(emb, labels, 0.2, betas)
    torch.testing.assert_close(loss(emb, labels), want, atol=ATOL, rtol=0)
    loss.reduction = "mean_nonzero"
    torch.testing.assert_close(loss(emb, labels), want.sum() / active, atol=ATOL, rtol=0)


def test_multi_similarity_matches_loop():
    emb, labels = pk_batch(seed=4)
    loss = MultiSimilarityLoss(alpha=2.0, beta=10.0, base=0.5, reduction="none")
    torch.testing.assert_close(
        loss(emb, labels), loop_multi_similarity(emb, labels, 2.0, 10.0, 0.5), atol=ATOL, rtol=0
    )


def test_arcface_matches_loop():
    emb, labels = pk_batch(seed=5)
    loss = ArcFaceLoss(num_classes=4, embedding_size=8, margin=0.5, scale=16.0, reduction="none")
    w = F.normalize(loss.proxies.detach(), dim=1)
    x = F.normalize(emb, dim=1)
    want = []
    for i in range(len(labels)):
        logits = []
        for c in range(4):
            cos = float(x[i] @ w[c])
            if c == int(labels[i]):
                theta = math.acos(max(-1.0, min(1.0, cos)))
                cos = math.cos(theta + 0.5) if theta <= math.pi - 0.5 else cos - 0.5 * math.sin(0.5)
            logits.append(16.0 * cos)
        m = max(logits)
        want.append(m + math.log(sum(math.exp(v - m) for v in logits)) - logits[int(labels[i])])
    torch.testing.assert_close(loss(emb, labels), torch.tensor(want), atol=1e-4, rtol=0)


def test_range_loss_hand_computed():
    # Class 0: squared distances 1, 4, 5; class 1: one pair at 1; class 2: one point.
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    raw = EuclideanDistance(normalize_embeddings=False)
    # k=2: intra_0 = 2 / (1/5 + 1/4) = 40/9, intra_1 = 1. Centres (1/3, 2/3), (4, 1/2), (0, 5):
    # D = (11/3)^2 + (1/6)^2 = 485/36, inter = 20 - 485/36 = 235/36.
    mk = lambda red, k=2: RangeLoss(k=k, margin=20.0, distance=raw, reduction=red)  # noqa: E731
    assert mk("mean")(x, labels).item() == pytest.approx((40 / 9 + 1) / 2 + 235 / 36, abs=1e-5)  # 9.25
    assert mk("sum")(x, labels).item() == pytest.approx(40 / 9 + 1 + 235 / 36, abs=1e-5)
    torch.testing.assert_close(mk("none")(x, labels), torch.tensor([40 / 9 + 235 / 36, 1 + 235 / 36]))
    assert mk("sum", k=1)(x, labels).item() == pytest.approx(5 + 1 + 235 / 36, abs=1e-5)
    assert mk("sum", k=3)(x, labels).item() == pytest.approx(3 / (1 / 5 + 1 / 4 + 1) + 1 + 235 / 36, abs=1e-5)
    # Margin met: no inter term.
    assert RangeLoss(k=2, margin=1.0, distance=raw, reduction="sum")(x, labels).item() == pytest.approx(
        49 / 9
    )
    weighted = RangeLoss(k=2, margin=20.0, alpha=0.5, beta=2.0, distance=raw)(x, labels).item()
    assert weighted == pytest.approx(0.5 * (40 / 9 + 1) / 2 + 2 * 235 / 36, abs=1e-5)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_range_loss_matches_loop(k):
    emb, labels = pk_batch(p=5, k=4, seed=6)
    labels[0] = 99  # a singleton class
    loss = RangeLoss(k=k, margin=1.5, alpha=0.7, beta=1.3, reduction="none")
    want, _, _ = loop_range(F.normalize(emb, dim=1), labels, k, 1.5, 0.7, 1.3)
    torch.testing.assert_close(loss(emb, labels), want, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- gradients

GRAD_LOSSES = {
    "contrastive": lambda: ContrastiveLoss(pos_margin=0.1, neg_margin=1.2),
    "triplet": lambda: TripletLoss(margin=0.5),
    "triplet_smooth_cosine": lambda: TripletLoss(margin=0.5, smooth=True, distance=CosineSimilarity()),
    "margin": lambda: MarginLoss(margin=0.3, beta=1.0, num_classes=3),
    "multi_similarity": lambda: MultiSimilarityLoss(alpha=2.0, beta=5.0),
    "range": lambda: RangeLoss(k=2, margin=3.0),
    "arcface": lambda: ArcFaceLoss(num_classes=3, embedding_size=4, margin=0.3, scale=4.0),
}


@pytest.mark.parametrize("name", list(GRAD_LOSSES))
def test_gradcheck(name):
    torch.manual_seed(0)
    loss = GRAD_LOSSES[name]().double()
    emb = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert torch.autograd.gradcheck(lambda e: loss(e, labels), (emb,), eps=1e-6, atol=1e-5)


def test_gradcheck_with_ref_and_indices():
    torch.manual_seed(1)
    emb = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    ref_labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    idx = TripletIndices(torch.tensor([0, 1, 2, 5]), torch.tensor([0, 3, 1, 2]), torch.tensor([1, 2, 0, 6]))
    loss = TripletLoss(margin=1.0)
    assert torch.autograd.gradcheck(
        lambda e, r: loss(e, labels, idx, r, ref_labels), (emb, ref), eps=1e-6, atol=1e-5
    )


# ---------------------------------------------------------------- reductions, edge cases, registry

ALL_TUPLE_LOSSES = [ContrastiveLoss, TripletLoss, MarginLoss, MultiSimilarityLoss]


@pytest.mark.parametrize("cls", ALL_TUPLE_LOSSES)
def test_reductions_agree(cls):
    emb, labels = pk_batch(seed=15)
    none = cls(reduction="none")(emb, labels)
    torch.testing.assert_close(cls(reduction="sum")(emb, labels), none.sum(), atol=1e-4, rtol=0)
    torch.testing.assert_close(cls(reduction="mean")(emb, labels), none.mean(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("cls", [*ALL_TUPLE_LOSSES, RangeLoss])
def test_no_tuples_gives_zero_with_grad(cls):
    emb = torch.randn(4, 8, requires_grad=True)
    labels = torch.arange(4)  # no positives at all
    if cls is RangeLoss:
        out = RangeLoss(margin=0.0)(emb, labels)  # singletons: no intra term; margin met
    else:
        out = cls()(emb, labels, TripletIndices(*(torch.zeros(0, dtype=torch.long),) * 3))
    assert out.shape == () and out.item() == 0.0 and out.requires_grad
    out.backward()
    assert emb.grad is not None and torch.all(emb.grad == 0)


def test_empty_tuples_reduction_none_is_empty():
    emb = torch.randn(4, 8, requires_grad=True)
    empty = PairIndices(*(torch.zeros(0, dtype=torch.long),) * 4)
    out = ContrastiveLoss(reduction="none")(emb, torch.arange(4), empty)
    assert out.shape == (0,) and out.requires_grad


def test_triplet_all_valid_but_satisfied_is_zero_with_grad():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], requires_grad=True)
    out = TripletLoss(margin=0.1)(emb, torch.tensor([0, 0, 1, 1]))
    assert out.item() == 0.0
    out.backward()
    assert torch.all(emb.grad == 0)


def test_registry_lists_and_builds():
    assert list_losses() == ["arcface", "contrastive", "margin", "multi_similarity", "range", "triplet"]
    loss = create_loss("triplet", margin=0.3, distance="cosine")
    assert (
        isinstance(loss, TripletLoss) and loss.margin == 0.3 and isinstance(loss.distance, CosineSimilarity)
    )


def test_loss_class_for_inspection():
    assert loss_class("margin") is MarginLoss
    with pytest.raises(ValueError, match="valid names"):
        loss_class("nope")


def test_every_registered_loss_builds_and_runs():
    emb, labels = pk_batch()
    for name in list_losses():
        kw = {"num_classes": 4, "embedding_size": 8} if name == "arcface" else {}
        out = create_loss(name, **kw)(emb.clone().requires_grad_(True), labels)
        assert out.shape == () and torch.isfinite(out)


def test_registry_is_strict():
    with pytest.raises(TypeError, match=r"marg\b.*valid: distance, margin, reduction, smooth"):
        create_loss("triplet", marg=0.3)
    with pytest.raises(ValueError, match=r"'tripplet'.*valid names: arcface, contrastive"):
        create_loss("tripplet")
    with pytest.raises(ValueError, match="'avg'"):
        TripletLoss(reduction="avg")
    with pytest.raises(TypeError):
        TripletLoss(0.2)  # options are keyword-only


def test_bad_inputs_name_the_value():
    emb, labels = pk_batch()
    with pytest.raises(ValueError, match=r"labels must have shape \(12,\)"):
        TripletLoss()(emb, labels[:5])
    with pytest.raises(ValueError, match="together"):
        TripletLoss()(emb, labels, None, emb)
    with pytest.raises(ValueError, match="got label 7"):
        MarginLoss(num_classes=4)(emb, torch.where(labels == 0, 7, labels))
    with pytest.raises(ValueError, match="3 tensors"):
        TripletLoss()(emb, labels, (labels, labels))
    with pytest.raises(ValueError, match="ArcFaceLoss is a proxy loss: it takes no indices_tuple"):
        ArcFaceLoss(num_classes=4, embedding_size=8)(emb, labels, TripletIndices(labels, labels, labels))
    with pytest.raises(ValueError, match=r"RangeLoss is computed on the whole batch: .* and no ref_emb"):
        RangeLoss()(emb, labels, None, emb, labels)


def test_learnable_parameters_are_exposed():
    assert [n for n, _ in MarginLoss().named_parameters()] == ["beta"]
    assert list(dict(MarginLoss(learn_beta=False).named_buffers())) == ["beta"]
    assert [n for n, _ in ArcFaceLoss(num_classes=3, embedding_size=4).named_parameters()] == ["proxies"]
    assert list(TripletLoss().parameters()) == []


# ---------------------------------------------------------------- the reduction contract


def loop_reduce(terms: list[float], anchors: list[int], n: int, reduction: str) -> float:
    """The named reductions of lookalike.losses.reduction, the obvious way."""
    if reduction == "sum":
        return sum(terms)
    if reduction == "mean":
        return sum(terms) / len(terms)
    if reduction == "mean_nonzero":
        nonzero = [t for t in terms if t > 0]
        return sum(nonzero) / len(nonzero) if nonzero else 0.0
    per_anchor = []
    for i in range(n):
        mine = [t for t, a in zip(terms, anchors, strict=True) if a == i]
        per_anchor.append(sum(mine) / len(mine) if mine else 0.0)
    return sum(per_anchor) / n


def contract_case(name: str, emb, labels):
    """(loss class with fixed options, per-term loop values, the anchor of each term)."""
    n = len(labels)
    if name == "contrastive":
        pos, neg = loop_pairs(labels)
        terms = loop_contrastive(emb, labels, "euclidean", 0.3, 0.9).tolist()
        return (
            lambda **kw: ContrastiveLoss(pos_margin=0.3, neg_margin=0.9, **kw),
            terms,
            [a for a, _ in pos + neg],
        )
    if name == "triplet":
        terms = loop_triplet(emb, labels, "euclidean", 0.3, False).tolist()
        return lambda **kw: TripletLoss(margin=0.3, **kw), terms, [a for a, _, _ in loop_triplets(labels)]
    if name == "margin":
        terms = loop_margin(emb, labels, 0.2, [1.0])[0].tolist()
        return (
            lambda **kw: MarginLoss(margin=0.2, beta=1.0, **kw),
            terms,
            [a for a, _, _ in loop_triplets(labels)],
        )
    if name == "multi_similarity":
        terms = loop_multi_similarity(emb, labels, 2.0, 10.0, 0.5).tolist()
        return lambda **kw: MultiSimilarityLoss(alpha=2.0, beta=10.0, base=0.5, **kw), terms, list(range(n))
    raise AssertionError(name)


@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero", "per_anchor"])
@pytest.mark.parametrize("name", ["contrastive", "triplet", "margin", "multi_similarity"])
def test_named_reductions_match_loop(name, reduction):
    emb, labels = pk_batch(seed=21)
    labels[0] = 3  # classes of unequal size, so anchors have unequal numbers of tuples
    make, terms, anchors = contract_case(name, emb, labels)
    want = loop_reduce(terms, anchors, len(labels), reduction)
    if name == "margin" and reduction == "mean_nonzero":  # two hinge terms per triplet (docstring)
        total, active = loop_margin(emb, labels, 0.2, [1.0])
        want = float(total.sum()) / active
    got = make(reduction=reduction)(emb, labels)
    assert got.shape == ()
    assert got.item() == pytest.approx(want, abs=1e-5, rel=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero", "per_anchor"])
def test_named_reductions_with_mined_pairs_match_loop(reduction):
    """Mined pairs (a subset, anchors with 0, 1 or several pairs) through the gather path."""
    emb, labels = pk_batch(p=5, k=4, seed=22)
    pos, neg = loop_pairs(labels)
    g = torch.Generator().manual_seed(3)
    pos = [pos[i] for i in torch.randperm(len(pos), generator=g)[:9].tolist()]
    neg = [neg[i] for i in torch.randperm(len(neg), generator=g)[:25].tolist()]
    idx = PairIndices(*(torch.tensor(c) for c in (*zip(*pos, strict=True), *zip(*neg, strict=True))))
    loss = ContrastiveLoss(pos_margin=0.3, neg_margin=0.9, reduction="none")
    terms = loss(emb, labels, idx).tolist()
    assert terms == pytest.approx(
        [max(ref_value("euclidean", emb[a], emb[p]) - 0.3, 0.0) for a, p in pos]
        + [max(0.9 - ref_value("euclidean", emb[a], emb[n]), 0.0) for a, n in neg],
        abs=1e-5,
    )
    want = loop_reduce(terms, [a for a, _ in pos + neg], len(labels), reduction)
    loss.reduction = reduction
    assert loss(emb, labels, idx).item() == pytest.approx(want, abs=1e-5, rel=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero", "per_anchor"])
def test_arcface_named_reductions_match_loop(reduction):
    emb, labels = pk_batch(seed=23)
    loss = ArcFaceLoss(num_classes=4, embedding_size=8, margin=0.3, scale=8.0, reduction="none")
    terms = loss(emb, labels).tolist()
    loss.reduction = reduction
    want = loop_reduce(terms, list(range(len(labels))), len(labels), reduction)
    assert loss(emb, labels).item() == pytest.approx(want, abs=1e-5, rel=1e-5)


def test_defaults_and_refusals_of_the_contract():
    defaults = {name: loss_class(name)().reduction for name in list_losses() if name != "arcface"}
    defaults["arcface"] = ArcFaceLoss(num_classes=2, embedding_size=2).reduction
    assert defaults == {
        "arcface": "mean",
        "contrastive": "mean",
        "margin": "mean_nonzero",  # the paper's normalisation
        "multi_similarity": "mean",
        "range": "mean",
        "triplet": "mean",
    }
    with pytest.raises(ValueError, match=r"'per_anchor' for RangeLoss; valid: mean, sum, none"):
        RangeLoss(reduction="per_anchor")
    with pytest.raises(ValueError, match=r"'avg'; valid: mean, mean_nonzero, per_anchor, sum, none"):
        TripletLoss(reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero", "per_anchor"])
def test_contrastive_pair_masks_reduce_like_indices(reduction):
    """The cross-batch memory's mask path gives what the index path gives, for every reduction."""
    emb, labels = pk_batch(seed=24)
    ref, ref_labels = pk_batch(p=4, k=5, seed=25)
    loss = ContrastiveLoss(pos_margin=0.3, neg_margin=0.9, reduction=reduction)
    same = labels[:, None] == ref_labels[None, :]
    same[0] = False  # anchor 0 loses its positives
    diff = labels[:, None] != ref_labels[None, :]
    a1, p = torch.where(same)
    a2, n = torch.where(diff)
    want = loss(emb, labels, PairIndices(a1, p, a2, n), ref, ref_labels)
    torch.testing.assert_close(loss.loss_from_pair_masks(emb, ref, same, diff), want, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")), ids=str)
def test_shipped_configs_build_their_loss_and_miner(path):
    """The example configs pass loss/miner options through YAML: they must still load and build,
    and their losses keep the contract's default reduction."""
    from lookalike.config import load_config
    from lookalike.miners import create_miner

    cfg = load_config(path)
    loss = create_loss(cfg.loss.name, **cfg.loss.kwargs())
    assert loss.reduction == ("mean_nonzero" if cfg.loss.name == "margin" else "mean")
    if cfg.miner.name is not None:
        emb, labels = pk_batch()
        idx = create_miner(cfg.miner.name, **cfg.miner.kwargs())(emb, labels)
        assert torch.isfinite(loss(emb, labels, idx))
