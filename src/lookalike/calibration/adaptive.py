"""The threshold for the gallery that will be searched: the calibration pooled with the gallery's own
non-mated searches.

A calibration on val (:mod:`lookalike.calibration.open_set`) knows how the non-mated score falls
with gallery size for *val's* objects. The objects a gallery holds may crowd closer together or lie
further apart than val's (a different sample of classes; and a trained model's val split also picked
its checkpoint, so its classes look better separated than new ones). The gallery itself says how
close its objects lie: each of its images, searched against the gallery with its own object left
out, is a non-mated search on a gallery of ``n - 1`` objects. So the threshold a gallery uses is the
one whose *pooled* FPIR is the target:

    FPIR(T) = (w_cal * F_cal(n, T) + w_gal * n / (n - 1) * F_gal(T)) / (w_cal + w_gal)

- ``F_cal(n, T)``: the calibration's non-mated score distribution at the gallery's size ``n`` (the
  record keeps it at :data:`~lookalike.calibration.size_model.CURVE_LEVELS` for every size of its
  table); ``w_cal``: the calibration's number of objects.
- ``F_gal(T)``: the share of the gallery's probe searches (at most :data:`MAX_PROBES` of its images,
  seeded) scoring at or under ``T``, each searched as the matcher would (top ``depth`` items, the same
  decision score) with its own object's images skipped; ``n / (n - 1)`` carries it from ``n - 1``
  objects to ``n`` (for small rates FPIR grows in proportion to the objects met).
- ``w_gal = GALLERY_WEIGHT * (probed objects - 1)``: a gallery object counts :data:`GALLERY_WEIGHT`
  times a calibration object, since it is a sample of the very objects searched; scaled down when the
  probes are too few to see the target rate (fewer than :data:`MIN_EVENTS` expected false matches).

A small gallery leans on the calibration (its few objects say little), a large one on itself (where
the calibration would have to extrapolate beyond its own size). Measured in BENCHMARKS.md (issue 18):
on three data sets this holds FPIR within [0.025, 0.09] of a 0.05 target from an eighth to three
quarters of the test classes, where the calibration alone drifted 1.25-2.1x; ``GALLERY_WEIGHT`` was
set on those sets (1 left Omniglot's largest galleries at 0.10).

It is re-derived whenever the gallery changes (index build, add, remove). The probes are searched
again (one search, ``min(len, depth + their objects' images)`` deep) when the number of objects has
moved by :data:`REFIT_CHANGE` or more since they last were; in between, their stored scores (the
header keeps them) are carried to the new size by ``n / (n_probed - 1)``, so adding one image to a
large gallery costs no search. With no gallery part (one object; or a record of an older lookalike
without the distribution), the record's own threshold for the size is used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.calibration.record import GALLERY_FIGURES
from lookalike.metrics.identification import decision_scores

if TYPE_CHECKING:
    from lookalike.calibration.record import CalibrationRecord

__all__ = [
    "GALLERY_WEIGHT",
    "MAX_PROBES",
    "MIN_EVENTS",
    "REFIT_CHANGE",
    "GalleryFit",
    "adapts",
    "choose_probes",
    "fit_arrays",
    "fit_search",
    "pooled_threshold",
    "probe_depth",
    "self_search_scores",
]

#: A gallery object counts this many times a calibration object in the pooled FPIR (see the doc).
GALLERY_WEIGHT = 2.0
#: At most this many gallery images are searched as probes (seeded), whatever the gallery's size.
MAX_PROBES = 1000
#: The gallery part gets its full weight when the probes would see this many false matches at the target.
MIN_EVENTS = 10
#: A probe's search looks past at most this many images of its own object.
OWN_CAP = 1024
#: The probes are searched again when the gallery's objects have changed by this share since.
REFIT_CHANGE = 0.1


@dataclass(frozen=True)
class GalleryFit:
    """The threshold a gallery of ``objects`` objects set, and what it was set from."""

    threshold: float
    objects: int
    probes: int = 0
    probe_objects: int = 0
    gallery_weight: float = 0.0
    calibration_weight: float = 0.0
    #: the probes' scores, and the objects and items the gallery held when they were searched
    scores: tuple[float, ...] = ()
    probed_objects: int = 0
    probed_items: int = 0

    def figures(self) -> dict[str, Any]:
        """What the gallery header keeps beside the record (the keys :data:`GALLERY_FIGURES`): how the
        threshold was set, and the probe scores to set it again from (empty when the gallery took no
        part)."""
        if not self.scores:
            return {}
        values = (
            self.probes,
            self.probe_objects,
            self.probed_objects,
            self.probed_items,
            round(self.gallery_weight, 6),
            round(self.calibration_weight, 6),
            [float(f"{x:.7g}") for x in self.scores],
        )
        return dict(zip(GALLERY_FIGURES, values, strict=True))

    @classmethod
    def stored(cls, figures: Mapping[str, Any]) -> GalleryFit | None:
        """The probe part of a fit a header stored (None: none stored)."""
        scores = figures.get("gallery_scores")
        if not scores or "gallery_probed_objects" not in figures:
            return None
        return cls(
            threshold=float("nan"),
            objects=int(figures["gallery_probed_objects"]),
            probes=len(scores),
            probe_objects=int(figures.get("gallery_probe_objects", 0)),
            scores=tuple(float(x) for x in scores),
            probed_objects=int(figures["gallery_probed_objects"]),
            probed_items=int(figures.get("gallery_probed_items", 0)),
        )

    def stale(self, n_objects: int, n_items: int) -> bool:
        """Whether the probes should be searched again for a gallery of ``n_objects`` objects and
        ``n_items`` items: either has moved by :data:`REFIT_CHANGE` or more since they were."""
        return any(
            abs(now - then) >= REFIT_CHANGE * max(then, 1)
            for now, then in ((n_objects, self.probed_objects), (n_items, self.probed_items))
        )


def adapts(record: CalibrationRecord | None) -> bool:
    """Whether a gallery pools its own searches with this record (a per-size record that keeps its
    non-mated score distribution)."""
    return (
        record is not None
        and record.method == "object-profiles"
        and record.target_fpir is not None
        and bool(record.non_mated)
        and "calibration_objects" in record.figures
    )


def choose_probes(n_items: int, max_probes: int = MAX_PROBES, seed: int = 0) -> np.ndarray:
    """Positions (ascending) of the gallery items searched as probes: all of them up to
    ``max_probes``, else a seeded random ``max_probes``."""
    if n_items <= max_probes:
        return np.arange(n_items)
    return np.sort(np.random.default_rng(seed).choice(n_items, size=max_probes, replace=False))


def probe_depth(own_images: np.ndarray, depth: int, n_items: int) -> int:
    """How deep a probe search goes: past its own object's images (at most :data:`OWN_CAP`), then
    ``depth`` more, never beyond the gallery."""
    own = int(np.max(own_images)) if len(own_images) else 0
    return int(min(n_items, depth + min(own, OWN_CAP)))


def self_search_scores(
    labels: np.ndarray, distances: np.ndarray, probe_labels: np.ndarray, *, score: str, depth: int
) -> np.ndarray:
    """Decision scores of probes searched in the gallery they belong to, their own object left out:
    from each probe's (P, k) top-k ``labels`` (None: padding) and ``distances``, the first ``depth``
    items of other objects are what its search would have returned had its object not been
    enrolled. A probe that found no other object is dropped."""
    labels = np.asarray(labels, dtype=object)
    distances = np.asarray(distances, dtype=np.float64)
    own = np.asarray(probe_labels, dtype=object).reshape(-1, 1)
    other = np.not_equal(labels, None) & np.isfinite(distances) & (labels != own)
    order = np.argsort(~other, axis=1, kind="stable")[:, :depth]  # other objects first, in rank order
    kept = np.take_along_axis(other, order, axis=1)
    dist = np.where(kept, np.take_along_axis(distances, order, axis=1), np.inf)
    lab = np.where(kept, np.take_along_axis(labels, order, axis=1), None)
    found = kept[:, 0] if kept.shape[1] else np.zeros(len(labels), bool)
    return decision_scores(lab[found], dist[found], score=score)


def _curve_at(record: CalibrationRecord, n_objects: int) -> np.ndarray:
    """The calibration's non-mated scores at its levels for a gallery of ``n_objects`` (linear in log
    size between the sizes it keeps)."""
    sizes = np.log([n for n, _ in record.non_mated])
    scores = np.asarray([s for _, s in record.non_mated], dtype=np.float64)
    x = math.log(max(int(n_objects), 1))
    return np.array([np.interp(x, sizes, scores[:, j]) for j in range(scores.shape[1])])


def _calibration_fpir(curve: np.ndarray, levels: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The calibration's FPIR at thresholds ``t``: its levels interpolated (in log level) between the
    scores that reach them; 0 under the lowest, the top level over the highest."""
    curve = np.maximum.accumulate(curve)
    inside = np.exp(np.interp(t, curve, np.log(levels)))
    return np.where(t < curve[0], 0.0, np.where(t >= curve[-1], levels[-1], inside))


def pooled_threshold(
    record: CalibrationRecord,
    n_objects: int,
    probe_scores: np.ndarray,
    probe_objects: int,
    probed_objects: int | None = None,
) -> GalleryFit:
    """The loosest threshold whose pooled FPIR (see the module doc) is at most the record's target, for
    a gallery of ``n_objects`` whose probes (from ``probe_objects`` objects) scored ``probe_scores``
    when it held ``probed_objects`` (default ``n_objects``: searched just now)."""
    if not adapts(record):
        raise ValueError(f"a {record.method!r} record without its non-mated scores cannot pool a gallery's")
    target = float(record.target_fpir)  # type: ignore[arg-type]
    scores = np.sort(np.asarray(probe_scores, dtype=np.float64).reshape(-1))
    scores = scores[np.isfinite(scores)]
    w_cal = float(record.figures["calibration_objects"])
    w_gal = GALLERY_WEIGHT * max(int(probe_objects) - 1, 0) * min(1.0, len(scores) * target / MIN_EVENTS)
    probed = int(n_objects if probed_objects is None else probed_objects)
    if n_objects < 2 or probed < 2 or len(scores) == 0 or w_gal <= 0:
        return GalleryFit(record.threshold_for(max(int(n_objects), 1)), int(n_objects))
    curve = _curve_at(record, n_objects)
    levels = np.asarray(record.non_mated_levels, dtype=np.float64)
    lo, hi = min(curve[0], scores[0]), max(curve[-1], scores[-1])
    candidates = np.unique(
        np.concatenate([scores, np.nextafter(scores, -np.inf), curve, np.linspace(lo, hi, 4097)])
    )
    share = np.searchsorted(scores, candidates, side="right") / len(scores)
    carry = n_objects / (probed - 1)
    fpir = (w_cal * _calibration_fpir(curve, levels, candidates) + w_gal * carry * share) / (w_cal + w_gal)
    ok = np.flatnonzero(fpir <= target)
    threshold = candidates[ok[-1]] if len(ok) else np.nextafter(candidates[0], -np.inf)
    return GalleryFit(
        float(threshold), int(n_objects), len(scores), int(probe_objects), w_gal, w_cal, tuple(scores), probed
    )


def fit_search(
    record: CalibrationRecord,
    labels: np.ndarray,
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    *,
    max_probes: int = MAX_PROBES,
    seed: int = 0,
    previous: GalleryFit | None = None,
) -> GalleryFit:
    """The gallery's threshold from its item ``labels`` (N,) (in the order positions refer to) and a
    ``search(probe_positions, k) -> (distances (P, k), labels (P, k) object)`` of its probes in it.
    ``previous``: the probe scores stored at the last fit; reused (no search) unless stale."""
    labels = np.asarray(labels).astype(str)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n = len(classes)
    if not adapts(record) or n < 2:
        return GalleryFit(record.threshold_for(max(n, 1)), n)
    if previous is not None and not previous.stale(n, len(labels)):
        fit = pooled_threshold(
            record, n, np.asarray(previous.scores), previous.probe_objects, previous.probed_objects
        )
        return dataclasses.replace(fit, probed_items=previous.probed_items)
    probes = choose_probes(len(labels), max_probes, seed)
    k = probe_depth(counts[inverse[probes]], record.depth, len(labels))
    dist, found = search(probes, k)
    scores = self_search_scores(found, dist, labels[probes], score=record.score, depth=record.depth)
    fit = pooled_threshold(record, n, scores, len(np.unique(inverse[probes])))
    return dataclasses.replace(fit, probed_items=len(labels))


def fit_arrays(
    record: CalibrationRecord,
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    distance: str | None = None,
    max_probes: int = MAX_PROBES,
    seed: int = 0,
) -> GalleryFit:
    """:func:`fit_search` for a gallery given as (N, D) ``embeddings`` and their ``labels``, searched
    exactly (as a flat index would) in ``distance`` (default the record's)."""
    from lookalike.protocol import gallery_topk

    emb = np.asarray(embeddings, dtype=np.float32)
    names = np.asarray(labels).astype(str).astype(object)

    def search(probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, rows = gallery_topk(emb[probes], emb, k, distance=distance or record.distance)
        return dist, np.where(rows >= 0, names[np.maximum(rows, 0)], None)

    return fit_search(record, labels, search, max_probes=max_probes, seed=seed)
