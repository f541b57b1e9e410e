"""Pairwise distances and similarities between embeddings.

Every loss, miner and search takes a ``distance=`` object. A distance knows whether larger
values mean closer (``higher_is_closer``: True for similarities), so code that ranks or applies
margins can be written once for both kinds.

The call conventions follow pytorch-metric-learning's distances:
``distance(x)`` is the (N, N) matrix of x against itself, ``distance(x, y)`` the (N, M) matrix
of x against y, ``distance.paired(x, y)`` the (N,) values of matching rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lookalike._arrays import check_embeddings

__all__ = [
    "BaseDistance",
    "CosineSimilarity",
    "DotProductSimilarity",
    "EuclideanDistance",
    "closeness",
    "create_distance",
    "list_distances",
    "resolve_distance",
]


class BaseDistance:
    """A pairwise distance or similarity.

    Subclasses implement :meth:`_matrix` and :meth:`_paired` on already-normalised inputs.
    """

    name: str = "base"
    higher_is_closer: bool = False

    def __init__(self, *, normalize_embeddings: bool = True) -> None:
        self.normalize_embeddings = normalize_embeddings

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalise rows of ``x`` (N, D) when this distance works on normalised embeddings."""
        return F.normalize(x, p=2, dim=-1) if self.normalize_embeddings else x

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D) x (M, D) -> (N, M); ``y=None`` compares ``x`` with itself."""
        check_embeddings(x, "x")
        x = self.normalize(x)
        if y is None:
            y = x
        else:
            check_embeddings(y, "y")
            if y.shape[1] != x.shape[1]:
                raise ValueError(f"embedding sizes differ: x has D={x.shape[1]}, y has D={y.shape[1]}")
            y = self.normalize(y)
        return self._matrix(x, y)

    def paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, D), (N, D) -> (N,): the value for each row of ``x`` with the same row of ``y``."""
        if x.shape != y.shape:
            raise ValueError(f"paired() needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
        return self._paired(self.normalize(x), self.normalize(y))

    def closer(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Elementwise: is value ``a`` strictly closer than value ``b``?"""
        return a > b if self.higher_is_closer else a < b

    def margin_gap(self, closer: torch.Tensor, farther: torch.Tensor) -> torch.Tensor:
        """How much ``closer`` beats ``farther``, positive when it does, in either convention.

        For distances this is ``farther - closer``; for similarities ``closer - farther``.
        """
        return closer - farther if self.higher_is_closer else farther - closer

    def _matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalize_embeddings={self.normalize_embeddings})"


class EuclideanDistance(BaseDistance):
    """Euclidean distance, by default on L2-normalised embeddings (values in [0, 2]).

    ``squared=True`` gives the squared Euclidean distance. The matrix is computed with
    ``torch.cdist`` (as pytorch-metric-learning does), whose gradient at a zero distance is zero.
    """

    higher_is_closer = False

    def __init__(self, *, squared: bool = False, normalize_embeddings: bool = True) -> None:
        super().__init__(normalize_embeddings=normalize_embeddings)
        self.squared = squared
        self.name = "squared_euclidean" if squared else "euclidean"

    def _matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x, y, p=2)
        return d.pow(2) if self.squared else d

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = x - y
        sq = (diff * diff).sum(dim=-1)
        if self.squared:
            return sq
        # The gradient of sqrt at 0 is infinite; route zero distances through a safe branch.
        zero = sq == 0
        safe = torch.where(zero, torch.ones_like(sq), sq)
        return torch.where(zero, torch.zeros_like(sq), safe.sqrt())

    def __repr__(self) -> str:
        return f"EuclideanDistance(squared={self.squared}, normalize_embeddings={self.normalize_embeddings})"


class CosineSimilarity(BaseDistance):
    """Cosine similarity (always on normalised embeddings); larger is closer, values in [-1, 1]."""

    name = "cosine"
    higher_is_closer = True

    def __init__(self) -> None:
        super().__init__(normalize_embeddings=True)

    def _matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ y.T

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x * y).sum(dim=-1)

    def __repr__(self) -> str:
        return "CosineSimilarity()"


class DotProductSimilarity(BaseDistance):
    """Dot product of the raw embeddings (``normalize_embeddings=False`` by default); larger is closer."""

    name = "dot"
    higher_is_closer = True

    def __init__(self, *, normalize_embeddings: bool = False) -> None:
        super().__init__(normalize_embeddings=normalize_embeddings)

    def _matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ y.T

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x * y).sum(dim=-1)


def resolve_distance(
    distance: BaseDistance | str | None, *, default: BaseDistance | None = None
) -> BaseDistance:
    """The ``distance=`` option of a loss or miner as a distance object.

    None gives ``default`` (Euclidean on L2-normalised embeddings unless another is given); a name
    goes through :func:`create_distance` (so ``distance: cosine`` works in a YAML config); a
    distance object is used as it is.
    """
    if distance is None:
        return EuclideanDistance() if default is None else default
    if isinstance(distance, str):
        return create_distance(distance)
    if not isinstance(distance, BaseDistance):
        raise TypeError(
            f"distance must be a lookalike.distances.BaseDistance or one of the names "
            f"{', '.join(list_distances())}; got {distance!r}"
        )
    return distance


def closeness(mat: torch.Tensor, distance: BaseDistance) -> torch.Tensor:
    """Values of ``mat`` where larger always means closer (the similarity, or minus the distance)."""
    return mat if distance.higher_is_closer else -mat


_REGISTRY = {
    "euclidean": lambda: EuclideanDistance(),
    "squared_euclidean": lambda: EuclideanDistance(squared=True),
    "cosine": lambda: CosineSimilarity(),
    "dot": lambda: DotProductSimilarity(),
}


def list_distances() -> list[str]:
    """Names accepted by :func:`create_distance`."""
    return sorted(_REGISTRY)


def create_distance(name: str) -> BaseDistance:
    """Build a distance by name: ``euclidean`` (the default elsewhere), ``squared_euclidean``,
    ``cosine``, ``dot``."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown distance {name!r}; valid names: {', '.join(list_distances())}") from None
