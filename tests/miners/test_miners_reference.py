"""Miners against slow loop references and against pytorch-metric-learning (PML)."""

from __future__ import annotations

import pytest
import scipy.stats
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from lookalike.distances import CosineSimilarity, EuclideanDistance
from lookalike.losses import TripletLoss
from lookalike.miners import (
    BatchAllMiner,
    BatchHardMiner,
    DistanceWeightedMiner,
    PairIndices,
    SemiHardMiner,
    TripletIndices,
    create_miner,
    list_miners,
    miner_class,
)
from lookalike.tuples import as_indices_tuple, to_pairs, to_triplets


def pk_batch(p: int = 5, k: int = 4, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(p * k, d, generator=g)
    labels = torch.arange(p).repeat_interleave(k)
    perm = torch.randperm(p * k, generator=g)
    return emb[perm].contiguous(), labels[perm].contiguous()


def as_list(t):
    return list(zip(*(x.tolist() for x in t), strict=True))


def loop_valid(labels, ref_labels=None):
    same_batch = ref_labels is None
    ref_labels = labels if ref_labels is None else ref_labels
    pos = [
        (i, j)
        for i in range(len(labels))
        for j in range(len(ref_labels))
        if labels[i] == ref_labels[j] and not (same_batch and i == j)
    ]
    neg = [(i, j) for i in range(len(labels)) for j in range(len(ref_labels)) if labels[i] != ref_labels[j]]
    return pos, neg


def closeness(mat, distance):
    return mat if distance.higher_is_closer else -mat


# ---------------------------------------------------------------- batch-all


@pytest.mark.parametrize("with_ref", [False, True])
def test_batch_all_triplets_and_pairs_match_loop_and_pml(with_ref):
    emb, labels = pk_batch()
    ref, ref_labels = pk_batch(p=6, k=3, seed=1) if with_ref else (None, None)
    pos, neg = loop_valid(labels, ref_labels)
    want = [(a, p, n) for a, p in pos for a2, n in neg if a2 == a]
    got = BatchAllMiner()(emb, labels, ref, ref_labels)
    assert isinstance(got, TripletIndices) and as_list(got) == want  # lexicographic order
    assert as_list(got) == as_list(lmu.get_all_triplets_indices(labels, ref_labels))
    pairs = BatchAllMiner(tuple_type="pair")(emb, labels, ref, ref_labels)
    assert isinstance(pairs, PairIndices)
    assert as_list(pairs[:2]) == pos and as_list(pairs[2:]) == neg
    for ours, theirs in zip(pairs, lmu.get_all_pairs_indices(labels, ref_labels), strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("distance", [EuclideanDistance(), CosineSimilarity()], ids=["euclidean", "cosine"])
def test_batch_all_with_margin_matches_pml_triplet_margin_miner(distance):
    emb, labels = pk_batch(seed=2)
    pml_d = pml_distances.CosineSimilarity() if distance.higher_is_closer else pml_distances.LpDistance()
    got = BatchAllMiner(margin=0.1, distance=distance)(emb, labels)
    want = pml_miners.TripletMarginMiner(margin=0.1, type_of_triplets="all", distance=pml_d)(emb, labels)
    assert as_list(got) == as_list(want) and len(got.anchor) > 0


# ---------------------------------------------------------------- batch-hard


@pytest.mark.parametrize("distance", [EuclideanDistance(), CosineSimilarity()], ids=["euclidean", "cosine"])
@pytest.mark.parametrize("with_ref", [False, True])
def test_batch_hard_matches_loop_and_pml(distance, with_ref):
    emb, labels = pk_batch(seed=3)
    labels[0] = 77  # an anchor without positives is skipped
    ref, ref_labels = pk_batch(p=6, k=3, seed=4) if with_ref else (None, None)
    got = BatchHardMiner(distance=distance)(emb, labels, ref, ref_labels)
    close = closeness(distance(emb, ref), distance)
    pos, neg = loop_valid(labels, ref_labels)
    want = []
    for a in range(len(labels)):
        ps = [p for a2, p in pos if a2 == a]
        ns = [n for a2, n in neg if a2 == a]
        if ps and ns:
            want.append((a, min(ps, key=lambda p: close[a, p]), max(ns, key=lambda n: close[a, n])))
    assert as_list(got) == want
    pml_d = pml_distances.CosineSimilarity() if distance.higher_is_closer else pml_distances.LpDistance()
    assert as_list(got) == as_list(pml_miners.BatchHardMiner(distance=pml_d)(emb, labels, ref, ref_labels))


# ---------------------------------------------------------------- semi-hard


@pytest.mark.parametrize("distance", [EuclideanDistance(), CosineSimilarity()], ids=["euclidean", "cosine"])
@pytest.mark.parametrize("with_ref", [False, True])
def test_semihard_all_matches_loop_and_pml(distance, with_ref):
    emb, labels = pk_batch(seed=5)
    ref, ref_labels = pk_batch(p=6, k=3, seed=6) if with_ref else (None, None)
    got = SemiHardMiner(margin=0.3, distance=distance)(emb, labels, ref, ref_labels)
    mat = distance(emb, ref)
    close = closeness(mat, distance)
    pos, neg = loop_valid(labels, ref_labels)
    want = [(a, p, n) for a, p in pos for a2, n in neg if a2 == a and 0 < close[a, p] - close[a, n] <= 0.3]
    assert as_list(got) == want and len(want) > 0
    pml_d = pml_distances.CosineSimilarity() if distance.higher_is_closer else pml_distances.LpDistance()
    pml = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="semihard", distance=pml_d)
    assert as_list(got) == as_list(pml(emb, labels, ref, ref_labels))


def test_semihard_hardest_matches_loop():
    emb, labels = pk_batch(seed=7)
    got = SemiHardMiner(margin=0.3, per_anchor="hardest")(emb, labels)
    mat = EuclideanDistance()(emb)
    pos, neg = loop_valid(labels)
    want = []
    for a, p in pos:
        cands = [n for a2, n in neg if a2 == a and 0 < mat[a, n] - mat[a, p] <= 0.3]
        if cands:
            want.append((a, p, min(cands, key=lambda n: mat[a, n])))
    assert as_list(got) == want and len(want) > 0


def test_semihard_pipeline_matches_pml_pipeline():
    emb, labels = pk_batch(p=8, k=4, seed=8)
    idx = SemiHardMiner(margin=0.2)(emb, labels)
    ours = TripletLoss(margin=0.2, reduction="none")(emb, labels, idx)
    pml_idx = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")(emb, labels)
    theirs = pml_losses.TripletMarginLoss(margin=0.2, reducer=pml_reducers.DoNothingReducer())
    torch.testing.assert_close(ours, theirs(emb, labels, pml_idx)["loss"]["losses"], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- distance-weighted


def test_distance_weighted_tuples_are_valid_and_seeded():
    emb, labels = pk_batch(p=8, k=4, seed=9)
    miner = DistanceWeightedMiner(seed=3)
    a, p, n = miner(emb, labels)
    pos, _ = loop_valid(labels)
    assert as_list((a, p)) == pos  # one triplet per positive pair, in row-major order
    assert torch.all(labels[a] != labels[n])
    mat = EuclideanDistance()(emb)
    in_range = (mat < 1.4) & (labels[:, None] != labels[None])
    has = in_range.any(1)
    assert torch.all(in_range[a, n] | ~has[a])  # in range unless the anchor has none (uniform fallback)
    again = DistanceWeightedMiner(seed=3)(emb, labels)
    assert torch.equal(again.negative, n)
    assert not torch.equal(miner(emb, labels).negative, n)  # the generator moves on


def test_distance_weighted_sampling_is_closer_to_uniform_than_raw():
    # Uniform points on the sphere in R^8: raw distances pile up towards sqrt(2); weighting by
    # 1/q(d) should spread the sampled ones over [cutoff, nonzero_loss_cutoff].
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(512, 8, generator=g)
    labels = torch.arange(128).repeat_interleave(4)
    a, _, n = DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4, seed=0)(emb, labels)
    mat = EuclideanDistance()(emb)
    sampled = mat[a, n]
    raw = mat[labels[:, None] != labels[None]]
    raw_in = raw[(raw >= 0.5) & (raw < 1.4)]

    def ks(x):
        return scipy.stats.kstest(x.numpy(), "uniform", args=(0.5, 0.9)).statistic

    assert ks(sampled) < 0.1
    assert ks(sampled) < ks(raw_in) / 3
    assert ks(sampled) < ks(raw) / 5


def test_distance_weighted_needs_normalised_euclidean():
    with pytest.raises(ValueError, match="squared=True"):
        DistanceWeightedMiner(distance=EuclideanDistance(squared=True))
    with pytest.raises(ValueError, match="cutoff"):
        DistanceWeightedMiner(cutoff=1.5, nonzero_loss_cutoff=1.4)


# ---------------------------------------------------------------- tuples, registry


def test_pairs_to_triplets_matches_pml_order():
    _emb, labels = pk_batch(seed=10)
    pairs = lmu.get_all_pairs_indices(labels)
    g = torch.Generator().manual_seed(0)
    perm_p, perm_n = torch.randperm(len(pairs[0]), generator=g), torch.randperm(len(pairs[2]), generator=g)
    shuffled = (pairs[0][perm_p], pairs[1][perm_p], pairs[2][perm_n], pairs[3][perm_n])
    assert as_list(to_triplets(shuffled, labels)) == as_list(lmu.convert_to_triplets(shuffled, labels))
    trip = to_triplets(shuffled, labels)
    for ours, theirs in zip(to_pairs(trip, labels), lmu.convert_to_pairs(tuple(trip), labels), strict=True):
        assert torch.equal(ours, theirs)
    assert isinstance(as_indices_tuple(tuple(pairs)), PairIndices)


def test_tuples_unpack_like_pml():
    a, p, n = BatchHardMiner()(*pk_batch())
    a1, p1, a2, n2 = BatchAllMiner(tuple_type="pair")(*pk_batch())
    assert len(a) == len(p) == len(n) and len(a1) == len(p1) and len(a2) == len(n2)


def test_registry():
    assert list_miners() == ["batch_all", "batch_hard", "distance_weighted", "semihard"]
    m = create_miner("semihard", margin=0.1, per_anchor="hardest", distance="cosine")
    assert isinstance(m, SemiHardMiner) and isinstance(m.distance, CosineSimilarity)
    with pytest.raises(TypeError, match=r"margn.*valid: distance, margin, per_anchor"):
        create_miner("semihard", margn=0.1)
    with pytest.raises(ValueError, match=r"'hard'.*valid names: batch_all"):
        create_miner("hard")
    with pytest.raises(ValueError, match="'some'"):
        SemiHardMiner(per_anchor="some")
    with pytest.raises(ValueError, match="'quad'"):
        BatchAllMiner(tuple_type="quad")


def test_miner_class_for_inspection():
    assert miner_class("batch_hard") is BatchHardMiner
    with pytest.raises(ValueError, match="valid names"):
        miner_class("nope")


def test_miners_do_not_track_gradients():
    emb, labels = pk_batch()
    emb.requires_grad_(True)
    for m in (BatchAllMiner(margin=0.2), BatchHardMiner(), SemiHardMiner(), DistanceWeightedMiner(seed=0)):
        assert all(not t.requires_grad and t.dtype == torch.long for t in m(emb, labels))


def test_distance_weighted_state_dict_resumes_the_draws_exactly():
    from lookalike.miners import DistanceWeightedMiner

    g = torch.Generator().manual_seed(5)
    emb = torch.nn.functional.normalize(torch.randn(32, 8, generator=g), dim=1)
    labels = torch.arange(8).repeat_interleave(4)
    miner = DistanceWeightedMiner(seed=3)
    miner(emb, labels)
    state = {k: v.clone() for k, v in miner.state_dict().items()}
    expected = miner(emb, labels)
    resumed = DistanceWeightedMiner(seed=3)
    resumed.load_state_dict(state)
    got = resumed(emb, labels)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    fresh = DistanceWeightedMiner(seed=3)(emb, labels)
    assert not all(torch.equal(a, b) for a, b in zip(expected, fresh, strict=True))
