"""Open-set identification at each gallery size: enrolled classes drawn at random, or distractors.

*Gallery size* counts **enrolled classes** (objects, FRVT's N); the number of gallery images is
reported beside it. With *distractors* (images of objects never searched for, as MegaFace adds)
the gallery grows by distractor **images** on top of a fixed set of enrolled classes; both counts
are reported. The searches are those of :mod:`lookalike.evaluation.open_set`.

:func:`gallery_size_sweep`: FNIR at each target FPIR, hit_rate@1 and MAP@R of the mated searches,
and the rates at a given (calibrated) threshold, at each number of enrolled classes over several
random draws. :func:`distractor_sweep`: the same at growing numbers of distractors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.evaluation.open_set import (
    DEFAULT_DEPTH,
    FPIR_TARGETS,
    EvalSet,
    FnirAtFpir,
    RatesAtThreshold,
    Searches,
    fnir_rows,
    open_set_classes,
    rates_at_threshold,
    search_enrolled,
)
from lookalike.metrics.identification import SCORES

if TYPE_CHECKING:
    from lookalike.calibration.record import CalibrationRecord

__all__ = [
    "SizePoint",
    "ThresholdForSize",
    "distractor_counts",
    "distractor_sweep",
    "drawn_gallery_threshold",
    "gallery_size_sweep",
]

#: A threshold as a function of the gallery's size in enrolled classes (a calibration for any size).
ThresholdForSize = Callable[[int], float]


@dataclass(frozen=True)
class SizePoint:
    """Figures at one gallery size, averaged over ``draws`` random galleries of that size.

    ``size_classes``: enrolled classes; ``size_images``: gallery images (mean over draws);
    ``n_distractors``: distractor images among them. ``hit_rate@1`` / ``map@r`` over the mated
    searches; ``fnir_at_fpir`` with counts summed over draws (each draw sets its own threshold on
    its non-mated searches); ``at_threshold``: the rates at the given (e.g. calibrated) threshold.
    """

    size_classes: int
    size_images: float
    n_distractors: int
    draws: int
    hit_rate_at_1: float
    map_at_r: float
    fnir_at_fpir: tuple[FnirAtFpir, ...]
    at_threshold: RatesAtThreshold | None = None
    #: the enrolled classes of each draw (not in the JSON)
    enrolled: tuple[tuple[str, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "size_classes": self.size_classes,
            "size_images": self.size_images,
            "n_distractors": self.n_distractors,
            "draws": self.draws,
            "hit_rate@1": self.hit_rate_at_1,
            "map@r": self.map_at_r,
            "fnir_at_fpir": [row.to_dict() for row in self.fnir_at_fpir],
        }
        if self.at_threshold is not None:
            out["at_threshold"] = self.at_threshold.to_dict()
        return out


def gallery_size_sweep(
    data: EvalSet,
    sizes: Sequence[int],
    *,
    draws: int = 3,
    seed: int = 0,
    distance: str = "euclidean",
    targets: Sequence[float] = FPIR_TARGETS,
    scores: Sequence[str] = SCORES,
    depth: int = DEFAULT_DEPTH,
    threshold: float | ThresholdForSize | CalibrationRecord | None = None,
    threshold_score: str = "nearest",
) -> list[SizePoint]:
    """At each size (a number of **enrolled classes**), ``draws`` galleries enrolling that many
    classes drawn at random (seeded); the other classes' images are the non-mated searches.

    ``threshold``: a fixed threshold, a function of the gallery size in classes (a calibration
    that sets the threshold for any size), or a calibration record (each drawn gallery sets its own
    threshold from it and its own images, as ``lookalike index build`` does), applied to
    ``threshold_score``: gives ``at_threshold``. In :func:`distractor_sweep` the function is asked
    for the gallery's objects: the enrolled classes plus the distractors' objects.
    """
    classes = data.classes
    bad = [s for s in sizes if not 1 <= int(s) <= len(classes)]
    if bad or not sizes:
        raise ValueError(
            f"gallery sizes are numbers of enrolled classes in [1, {len(classes)}] (the classes with "
            f"gallery images), got {list(sizes)}"
        )
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    points = []
    for size in sizes:
        picks = [classes[np.sort(rng.permutation(len(classes))[: int(size)])] for _ in range(draws)]
        found = [search_enrolled(data, enrolled, None, distance=distance, depth=depth) for enrolled in picks]
        limits = [drawn_gallery_threshold(threshold, data, e, None, int(size), distance) for e in picks]
        point = _point(found, int(size), 0, targets, scores, limits, threshold_score)
        points.append(dataclasses.replace(point, enrolled=tuple(tuple(e.tolist()) for e in picks)))
    return points


def distractor_counts(n: int) -> list[int]:
    """0, then 10, 100, 1000, ... below ``n``, then ``n`` (MegaFace's ladder)."""
    counts, step = [0], 10
    while step < n:
        counts.append(step)
        step *= 10
    return [*counts, n] if n > 0 else counts


def distractor_sweep(
    data: EvalSet,
    distractors: np.ndarray,
    *,
    distractor_labels: Sequence[str] | None = None,
    counts: Sequence[int] | None = None,
    non_mated_share: float = 0.25,
    seed: int = 0,
    distance: str = "euclidean",
    targets: Sequence[float] = FPIR_TARGETS,
    scores: Sequence[str] = SCORES,
    depth: int = DEFAULT_DEPTH,
    threshold: float | ThresholdForSize | CalibrationRecord | None = None,
    threshold_score: str = "nearest",
) -> list[SizePoint]:
    """The split's classes less a held-out share (seeded, the non-mated ones) enrolled, plus the
    first ``count`` of the ``distractors`` (M, D) (in a seeded random order) for each count
    (default :func:`distractor_counts`). Distractors are never searched and match no search:
    ``distractor_labels`` (M,) groups them into objects (for the decision scores that look for
    another label); without it each distractor is an object of its own."""
    distractors = np.asarray(distractors, dtype=np.float32)
    if distractors.ndim != 2 or distractors.shape[1] != data.embeddings.shape[1]:
        raise ValueError(
            f"distractors must be (M, {data.embeddings.shape[1]}) embeddings like the split's, "
            f"got shape {distractors.shape}"
        )
    names = _distractor_names(len(distractors), distractor_labels)
    counts = distractor_counts(len(distractors)) if counts is None else list(counts)
    if any(not 0 <= c <= len(distractors) for c in counts):
        raise ValueError(f"distractor counts must be in [0, {len(distractors)}], got {counts}")
    base = open_set_classes(data.classes, non_mated_share, seed)
    order = np.random.default_rng([seed, 1]).permutation(len(distractors))
    points = []
    for count in counts:
        pick = order[: int(count)]
        found = search_enrolled(data, base, (distractors[pick], names[pick]), distance=distance, depth=depth)
        objects = len(base) + len(np.unique(names[pick]))  # what a gallery counts its threshold for
        extra = (distractors[pick], names[pick])
        limits = [drawn_gallery_threshold(threshold, data, base, extra, objects, distance)]
        point = _point([found], len(base), int(count), targets, scores, limits, threshold_score)
        points.append(dataclasses.replace(point, enrolled=(tuple(base.tolist()),)))
    return points


def _distractor_names(n: int, labels: Sequence[str] | None) -> np.ndarray:
    """Labels no search has: ``distractor:<label>`` (or ``distractor:<i>``, one object each)."""
    if labels is None:
        return np.array([f"\x00distractor:{i}" for i in range(n)])
    if len(labels) != n:
        raise ValueError(f"{len(labels)} distractor labels for {n} distractors; give one per distractor")
    return np.array([f"\x00distractor:{label}" for label in labels])


def _point(
    draws: Sequence[Searches],
    size: int,
    n_distractors: int,
    targets: Sequence[float],
    scores: Sequence[str],
    thresholds: Sequence[float | None],
    threshold_score: str,
) -> SizePoint:
    """``thresholds``: each draw's (None: no rates at a threshold)."""
    given = None if any(t is None for t in thresholds) else [float(t) for t in thresholds]  # type: ignore[arg-type]
    return SizePoint(
        size_classes=size,
        size_images=float(np.mean([d.n_gallery for d in draws])),
        n_distractors=n_distractors,
        draws=len(draws),
        hit_rate_at_1=float(np.nanmean([d.hit_rate_at_1 for d in draws])),
        map_at_r=float(np.nanmean([d.map_at_r for d in draws])),
        fnir_at_fpir=tuple(fnir_rows(draws, targets, scores)),
        at_threshold=None if given is None else rates_at_threshold(draws, given, threshold_score),
    )


def drawn_gallery_threshold(
    threshold: float | ThresholdForSize | CalibrationRecord | None,
    data: EvalSet,
    enrolled: np.ndarray,
    distractors: tuple[np.ndarray, np.ndarray] | None,
    objects: int,
    distance: str,
) -> float | None:
    """The threshold a gallery of the ``enrolled`` classes' gallery images (+ ``distractors``:
    embeddings and labels), ``objects`` objects in all, uses: ``threshold`` itself, its value for
    that size, or (a record) the one the gallery sets from its own images."""
    from lookalike.calibration.adaptive import fit_arrays
    from lookalike.calibration.record import CalibrationRecord

    if threshold is None:
        return None
    if isinstance(threshold, CalibrationRecord):
        g = data.is_gallery & np.isin(data.labels, enrolled)
        emb, labels = data.embeddings[g], data.labels[g].astype(str)
        if distractors is not None and len(distractors[0]):
            emb = np.concatenate([emb, distractors[0]])
            labels = np.concatenate([labels, np.asarray(distractors[1]).astype(str)])
        return fit_arrays(threshold, emb, labels, distance=distance).threshold
    return float(threshold(objects) if callable(threshold) else threshold)
