"""Distance-weighted sampling (Wu, Manmatha, Smola and Krähenbühl, 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.distances import BaseDistance, EuclideanDistance
from lookalike.miners.base import BaseMiner, Ref
from lookalike.tuples import TripletIndices, label_masks

__all__ = ["DistanceWeightedMiner", "inverse_density_log_weights"]


def inverse_density_log_weights(mat: torch.Tensor, dim: int, *, cutoff: float) -> torch.Tensor:
    """(N, M) Euclidean distances on the unit sphere in R^dim -> (N, M) log(1 / q(d)).

    The density of the distance between two uniform points on the sphere is
    ``q(d) ∝ d^(dim-2) (1 - d²/4)^((dim-3)/2)``; d is clipped below at ``cutoff`` (and just below 2).
    """
    d = mat.clamp(min=cutoff, max=2.0 - 1e-4)
    return -((dim - 2.0) * torch.log(d) + ((dim - 3.0) / 2.0) * torch.log1p(-0.25 * d * d))


class DistanceWeightedMiner(BaseMiner):
    """One negative per (anchor, positive) pair, drawn with probability ∝ 1 / q(d(a, n)).

    Negatives at distance >= ``nonzero_loss_cutoff`` get weight zero (they would give no loss);
    distances below ``cutoff`` are weighted as if at ``cutoff``. When an anchor has no negative
    closer than ``nonzero_loss_cutoff``, its negatives are drawn uniformly (as the paper's code).
    The result is that the sampled distances spread out over [cutoff, nonzero_loss_cutoff]
    instead of piling up near sqrt(2).

    Args:
        cutoff, nonzero_loss_cutoff: see above.
        seed: seeds this miner's own ``torch.Generator`` (reproducible draws); None uses torch's
            global random state.
        distance: must be ``EuclideanDistance()`` (unsquared, normalised), the model's assumption.

    Returns :class:`TripletIndices`, the positive pairs in row-major order (PML samples positives
    at random instead; here every positive pair is used once).
    """

    repr_fields = ("cutoff", "nonzero_loss_cutoff", "seed")

    def __init__(
        self,
        *,
        cutoff: float = 0.5,
        nonzero_loss_cutoff: float = 1.4,
        seed: int | None = None,
        distance: BaseDistance | str | None = None,
    ) -> None:
        super().__init__(distance=distance)
        distance = self.distance
        if not (
            isinstance(distance, EuclideanDistance) and not distance.squared and distance.normalize_embeddings
        ):
            raise ValueError(
                "DistanceWeightedMiner needs EuclideanDistance(squared=False, normalize_embeddings=True), "
                f"got {distance!r}"
            )
        if not 0 <= cutoff < nonzero_loss_cutoff:
            raise ValueError(
                f"need 0 <= cutoff < nonzero_loss_cutoff, got {cutoff!r} and {nonzero_loss_cutoff!r}"
            )
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The seeded generators' states, by device (for exact resume); empty when unseeded."""
        return {str(device): gen.get_state() for device, gen in self._generators.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state and self.seed is None:
            raise ValueError("this DistanceWeightedMiner has seed=None: it has no generator state to load")
        for device, gen_state in state.items():
            self._generator(torch.device(device)).set_state(gen_state)

    def mine(self, embeddings: Tensor, labels: Tensor, ref_emb: Ref, ref_labels: Ref) -> TripletIndices:
        same, diff = label_masks(labels, ref_labels)
        mat = self.distance(embeddings, ref_emb)
        log_w = inverse_density_log_weights(mat, embeddings.shape[1], cutoff=self.cutoff)
        allowed = diff & (mat < self.nonzero_loss_cutoff)
        # Anchors with no negative in range fall back to all their negatives, uniformly.
        fallback = ~allowed.any(dim=1, keepdim=True)
        log_w = torch.where(fallback, torch.zeros_like(log_w), log_w)
        allowed = torch.where(fallback, diff, allowed)
        log_w = log_w.masked_fill(~allowed, float("-inf"))
        weights = torch.exp(log_w - log_w.amax(dim=1, keepdim=True).clamp_min(-1e30))
        weights = torch.nan_to_num(weights, nan=0.0)

        a, p = torch.where(same)
        rows = torch.where(diff[a].any(dim=1))[0]  # pairs whose anchor has a negative at all
        a, p = a[rows], p[rows]
        if len(a) == 0:
            return TripletIndices(a, p, a.clone())
        n = torch.multinomial(weights[a], 1, replacement=True, generator=self._generator(mat.device)).squeeze(
            1
        )
        return TripletIndices(a, p, n)
