"""Exact top-k against a full sort, faiss IndexFlat, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lookalike.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance, create_distance
from lookalike.knn import PAD_ID, topk

NAMES = ["euclidean", "squared_euclidean", "cosine", "dot"]


def reference_topk(q: torch.Tensor, g: torch.Tensor, k: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Full matrix, full stable sort (ties by gallery index), in float64."""
    d = create_distance(name)
    full = d(q.double(), g.double())
    v, i = torch.sort(full, dim=1, descending=d.higher_is_closer, stable=True)
    return v[:, :k].float(), i[:, :k]


def separated(n_q: int, n_g: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n_q, dim, generator=gen), torch.randn(n_g, dim, generator=gen)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("k", "qc", "gc"), [(1, 64, 100), (7, 33, 250), (60, 50, 400), (300, 1024, 32768)])
def test_topk_matches_full_sort(name: str, k: int, qc: int, gc: int) -> None:
    q, g = separated(120, 1500, 16, seed=k)
    v, i = topk(q, g, k, distance=name, query_chunk_size=qc, gallery_chunk_size=gc)
    rv, ri = reference_topk(q, g, k, name)
    assert v.shape == i.shape == (120, k)
    assert v.dtype == torch.float32 and i.dtype == torch.int64
    torch.testing.assert_close(v, rv, atol=2e-5, rtol=1e-5)
    # Ids agree except where float rounding swaps two nearly equal neighbours.
    assert (i == ri).float().mean() > 0.995


def test_topk_accepts_distance_objects_and_numpy() -> None:
    q, g = separated(20, 300, 8, seed=1)
    for dist in (
        EuclideanDistance(),
        CosineSimilarity(),
        DotProductSimilarity(),
        EuclideanDistance(squared=True),
    ):
        v1, i1 = topk(q.numpy(), g.numpy(), 5, distance=dist)
        v2, i2 = topk(q, g, 5, distance=dist.name)
        assert torch.equal(i1, i2) and torch.equal(v1, v2)
    # similarities come largest first, distances smallest first
    v, _ = topk(q, g, 5, distance="cosine")
    assert (v[:, :-1] >= v[:, 1:]).all()
    v, _ = topk(q, g, 5)
    assert (v[:, :-1] <= v[:, 1:]).all()


def test_unnormalised_euclidean() -> None:
    q, g = separated(30, 400, 8, seed=2)
    q, g = q * 3, g * torch.linspace(0.1, 5, 400).unsqueeze(1)
    dist = EuclideanDistance(normalize_embeddings=False)
    v, i = topk(q, g, 10, distance=dist, gallery_chunk_size=97)
    full = torch.cdist(q.double(), g.double())
    rv, ri = torch.sort(full, dim=1, stable=True)
    torch.testing.assert_close(v, rv[:, :10].float(), atol=1e-4, rtol=1e-5)
    assert torch.equal(i, ri[:, :10])


@pytest.mark.parametrize("k", [1, 5, 49, 50, 51, 120, 499, 700])
@pytest.mark.parametrize("gc", [64, 1000])
def test_ties_are_broken_by_gallery_index(k: int, gc: int) -> None:
    """Small integer vectors give many exactly equal dot products."""
    gen = torch.Generator().manual_seed(k)
    g = torch.randint(0, 3, (600, 3), generator=gen).float()
    q = torch.randint(0, 3, (40, 3), generator=gen).float()
    v, i = topk(q, g, k, distance="dot", query_chunk_size=16, gallery_chunk_size=gc)
    rv, ri = torch.sort(q @ g.T, dim=1, descending=True, stable=True)
    kk = min(k, 600)
    assert i.shape == v.shape == (40, k)
    assert torch.equal(i[:, :kk], ri[:, :kk])
    assert torch.equal(v[:, :kk], rv[:, :kk])
    assert (i[:, kk:] == -1).all() and (v[:, kk:] == float("-inf")).all()  # padding (dot: similarity)


def test_ties_exact_duplicates_euclidean() -> None:
    base = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    g = base.repeat(30, 1)  # item j duplicates item j % 10
    q = base[:3]
    _, i = topk(q, g, 30, gallery_chunk_size=64)
    for r in range(3):
        assert i[r].tolist() == [r + 10 * j for j in range(30)]


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_k_larger_than_gallery_is_padded_to_k_columns(backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    q, g = separated(5, 7, 4, seed=3)
    v, i = topk(q, g, 100, backend=backend)
    assert v.shape == i.shape == (5, 100)
    assert torch.equal(i[:, :7].sort(dim=1).values, torch.arange(7).expand(5, 7))
    assert (i[:, 7:] == PAD_ID).all() and (v[:, 7:] == float("inf")).all()
    assert torch.isfinite(v[:, :7]).all()


def test_empty_inputs() -> None:
    v, i = topk(torch.zeros(0, 4), torch.randn(10, 4), 3)
    assert v.shape == i.shape == (0, 3)
    for name, worst in (("euclidean", float("inf")), ("cosine", float("-inf"))):
        v, i = topk(torch.randn(2, 4), torch.zeros(0, 4), 3, distance=name)
        assert v.shape == i.shape == (2, 3)
        assert (i == PAD_ID).all() and (v == worst).all()


@pytest.mark.parametrize("k", [1, 3, 5, 6, 9])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_both_backends_follow_one_padding_convention(k: int, distance: str) -> None:
    """k below, at and above the gallery size, with and without excluded self matches: the same
    (Nq, k) shape, the same ids and padding from the torch and the faiss backend."""
    pytest.importorskip("faiss")
    gen = torch.Generator().manual_seed(k)
    g = torch.randn(6, 5, generator=gen)
    q = torch.cat([g[:3], torch.randn(2, 5, generator=gen)])  # 3 queries are gallery items
    query_ids, gallery_ids = torch.tensor([0, 1, 2, 10, 11]), torch.arange(6)
    for ids in ({}, {"query_ids": query_ids, "gallery_ids": gallery_ids}):
        tv, ti = topk(q, g, k, distance=distance, **ids)
        fv, fi = topk(q, g, k, distance=distance, backend="faiss", **ids)
        assert ti.shape == tv.shape == fi.shape == fv.shape == (5, k)
        assert torch.equal(ti, fi)
        torch.testing.assert_close(tv, fv, atol=1e-3, rtol=1e-5)  # sqrt of a ~0 self distance
        n_valid = (ti >= 0).sum(dim=1)
        expected = torch.tensor([min(k, 5 if ids else 6)] * 3 + [min(k, 6)] * 2)
        assert torch.equal(n_valid, expected)
        assert (ti[:, :-1] >= 0).logical_or(ti[:, 1:] < 0).all()  # padding only at the end


def test_excluding_ids_with_duplicates() -> None:
    """An item that is both query and gallery is never its own neighbour, even among exact duplicates."""
    base = torch.randn(6, 8, generator=torch.Generator().manual_seed(1))
    x = torch.cat([base, base])  # rows j and j+6 are identical
    ids = torch.arange(12)
    v, i = topk(x, x, 3, query_ids=ids, gallery_ids=ids)
    assert (i != ids.unsqueeze(1)).all()
    assert torch.equal(i[:, 0], (ids + 6) % 12)  # the duplicate comes first, at distance 0
    assert torch.allclose(v[:, 0], torch.zeros(12), atol=1e-3)


def test_excluding_ids_pads_when_too_few_remain() -> None:
    x = torch.randn(4, 3)
    ids = torch.arange(4)
    for name, worst in (("euclidean", float("inf")), ("cosine", float("-inf"))):
        v, i = topk(x, x, 10, distance=name, query_ids=ids, gallery_ids=ids)
        assert v.shape == (4, 10)
        assert (i[:, 3:] == -1).all() and (v[:, 3:] == worst).all()
        assert (i[:, :3] >= 0).all() and (i[:, :3] != ids.unsqueeze(1)).all()


def test_against_faiss_index_flat() -> None:
    faiss = pytest.importorskip("faiss")
    q, g = separated(200, 3000, 32, seed=4)
    qn, gn = F.normalize(q).numpy(), F.normalize(g).numpy()
    index = faiss.IndexFlatL2(32)
    index.add(gn)
    d2, fi = index.search(qn, 25)
    v, i = topk(q, g, 25, gallery_chunk_size=1000)
    np.testing.assert_allclose(v.numpy(), np.sqrt(np.maximum(d2, 0)), atol=1e-4)
    assert (i.numpy() == fi).mean() > 0.999
    ip = faiss.IndexFlatIP(32)
    ip.add(gn)
    s, si = ip.search(qn, 25)
    v, i = topk(q, g, 25, distance="cosine")
    np.testing.assert_allclose(v.numpy(), s, atol=1e-5)
    assert (i.numpy() == si).mean() > 0.999


@pytest.mark.parametrize("name", NAMES)
def test_faiss_backend_same_call(name: str) -> None:
    pytest.importorskip("faiss")
    q, g = separated(50, 800, 16, seed=5)
    v1, i1 = topk(q, g, 10, distance=name, backend="faiss")
    v2, i2 = topk(q, g, 10, distance=name)
    torch.testing.assert_close(v1, v2, atol=1e-4, rtol=1e-4)
    assert (i1 == i2).float().mean() > 0.99
    ids = torch.arange(800)
    _, i3 = topk(g, g, 5, distance=name, backend="faiss", query_ids=ids, gallery_ids=ids)
    assert (i3 != ids.unsqueeze(1)).all()


def test_errors_name_the_bad_value() -> None:
    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        topk(q, q, 0)
    with pytest.raises(ValueError, match="unknown distance 'manhattan'"):
        topk(q, q, 1, distance="manhattan")
    with pytest.raises(ValueError, match="unknown backend 'annoy'"):
        topk(q, q, 1, backend="annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"D=4.*D=5"):
        topk(q, torch.randn(3, 5), 1)
    with pytest.raises(ValueError, match="2-D"):
        topk(q[0], q, 1)
    with pytest.raises(ValueError, match="both query_ids and gallery_ids"):
        topk(q, q, 1, query_ids=torch.arange(3))
    with pytest.raises(ValueError, match="NaN"):
        topk(torch.full((2, 4), float("nan")), q, 1)


def test_float64_and_half_inputs_are_computed_in_float32() -> None:
    q, g = separated(10, 100, 8, seed=6)
    v1, i1 = topk(q.double(), g.double(), 5)
    _, i2 = topk(q, g, 5)
    assert v1.dtype == torch.float32
    assert torch.equal(i1, i2)


@pytest.mark.parametrize(("k", "gc"), [(200, 7000), (1000, None), (5, 2500)])
def test_wide_blocks_against_faiss(k: int, gc: int | None) -> None:
    """The run-maximum selection on wide blocks, several blocks per query chunk, vs IndexFlatL2."""
    faiss = pytest.importorskip("faiss")
    q, g = separated(64, 20000, 16, seed=k)
    qn, gn = F.normalize(q).numpy(), F.normalize(g).numpy()
    index = faiss.IndexFlatL2(16)
    index.add(gn)
    d2, fi = index.search(qn, k)
    v, i = topk(q, g, k, gallery_chunk_size=gc)
    np.testing.assert_allclose(v.numpy(), np.sqrt(np.maximum(d2, 0)), atol=1e-4)
    same_set = [len(set(a) & set(b)) / k for a, b in zip(i.tolist(), fi.tolist(), strict=True)]
    assert min(same_set) > 0.99
