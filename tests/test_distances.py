import math

import pytest
import torch

from lookalike.distances import (
    CosineSimilarity,
    DotProductSimilarity,
    EuclideanDistance,
    create_distance,
    list_distances,
)


def _loop_matrix(x, y, fn):
    return torch.tensor([[fn(a, b) for b in y] for a in x], dtype=x.dtype)


@pytest.fixture
def xy():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(
        4, 5, generator=g, dtype=torch.float64
    )


def test_euclidean_matches_loop_on_normalised_vectors(xy):
    x, y = xy
    xn, yn = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    ref = _loop_matrix(xn, yn, lambda a, b: math.sqrt(float(((a - b) ** 2).sum())))
    torch.testing.assert_close(EuclideanDistance()(x, y), ref)
    torch.testing.assert_close(EuclideanDistance(squared=True)(x, y), ref**2)
    torch.testing.assert_close(EuclideanDistance().paired(x[:4], y), ref.diagonal())


def test_raw_euclidean_and_similarities(xy):
    x, y = xy
    ref = _loop_matrix(x, y, lambda a, b: math.sqrt(float(((a - b) ** 2).sum())))
    torch.testing.assert_close(EuclideanDistance(normalize_embeddings=False)(x, y), ref)
    dot = _loop_matrix(x, y, lambda a, b: float((a * b).sum()))
    torch.testing.assert_close(DotProductSimilarity()(x, y), dot)
    cos = _loop_matrix(x, y, lambda a, b: float((a * b).sum() / (a.norm() * b.norm())))
    torch.testing.assert_close(CosineSimilarity()(x, y), cos)
    torch.testing.assert_close(CosineSimilarity().paired(x[:4], y), cos.diagonal())


def test_direction_and_margin_gap():
    assert not EuclideanDistance().higher_is_closer and CosineSimilarity().higher_is_closer
    d, s = EuclideanDistance(), CosineSimilarity()
    assert d.closer(torch.tensor(0.1), torch.tensor(0.5)) and s.closer(torch.tensor(0.9), torch.tensor(0.5))
    assert float(d.margin_gap(torch.tensor(0.1), torch.tensor(0.5))) == pytest.approx(0.4)
    assert float(s.margin_gap(torch.tensor(0.9), torch.tensor(0.5))) == pytest.approx(0.4)


def test_self_distance_has_finite_gradient():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    EuclideanDistance()(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    y = x.detach().clone().requires_grad_(True)
    EuclideanDistance().paired(y, y).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_registry_and_errors():
    assert list_distances() == ["cosine", "dot", "euclidean", "squared_euclidean"]
    assert create_distance("squared_euclidean").squared
    with pytest.raises(ValueError, match="valid names: cosine, dot, euclidean"):
        create_distance("manhattan")
    with pytest.raises(ValueError, match="2-D"):
        EuclideanDistance()(torch.zeros(3))
    with pytest.raises(ValueError, match=r"D=3.*D=4"):
        EuclideanDistance()(torch.zeros(2, 3), torch.zeros(2, 4))


def test_resolve_distance_takes_a_name_an_object_or_none():
    from lookalike.distances import resolve_distance
    from lookalike.losses import MultiSimilarityLoss, TripletLoss
    from lookalike.miners import BatchHardMiner, DistanceWeightedMiner

    assert isinstance(resolve_distance(None), EuclideanDistance)
    cos = CosineSimilarity()
    assert resolve_distance(cos) is cos and resolve_distance(None, default=cos) is cos
    assert isinstance(TripletLoss(distance="cosine").distance, CosineSimilarity)
    assert isinstance(BatchHardMiner(distance="dot").distance, DotProductSimilarity)
    assert isinstance(MultiSimilarityLoss().distance, CosineSimilarity)  # its own default
    with pytest.raises(ValueError, match=r"unknown distance 'cosin'; valid names: cosine, dot, euclidean"):
        TripletLoss(distance="cosin")
    with pytest.raises(TypeError, match=r"BaseDistance or one of the names cosine, dot"):
        BatchHardMiner(distance=3)
    with pytest.raises(ValueError, match="DistanceWeightedMiner needs EuclideanDistance"):
        DistanceWeightedMiner(distance="cosine")
