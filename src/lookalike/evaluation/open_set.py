"""Open-set identification measured on a split, and how it changes with the gallery's size.

Vocabulary (NIST FRVT 1:N, see :mod:`lookalike.metrics.identification`): a *mated* search has its
object enrolled in the gallery, a *non-mated* search does not; FPIR, FNIR and the wrong-match rate.

The protocol, the same for every function here (an :class:`EvalSet` holds a split's images):

- *enrolled classes*: the classes whose gallery images are in the gallery;
- *mated searches*: the query images of enrolled classes (an image that is also a gallery item is
  never compared with itself);
- *non-mated searches*: every image (query or gallery) of the classes not enrolled;
- a search's decision score comes from its top ``depth`` neighbours
  (:func:`lookalike.metrics.identification.decision_scores`).

*Gallery size* counts **enrolled classes** (objects, FRVT's N); the number of gallery images is
reported beside it. With *distractors* (images of objects never searched for) the gallery grows
by distractor **images** on top of a fixed set of enrolled classes; both counts are reported.

:func:`open_set_report`: FNIR at target FPIRs and the DET curve of each decision score, with a
seeded share of the classes held out as the non-mated ones. :func:`gallery_size_sweep`: the same
figures (and hit_rate@1 / MAP@R of the mated searches) at each number of enrolled classes, over
several random draws. :func:`distractor_sweep`: at growing numbers of distractors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.metrics.identification import (
    SCORES,
    DetCurve,
    decision_scores,
    det_curve,
    identification_rates,
    threshold_at_fpir,
    wilson_interval,
)
from lookalike.metrics.retrieval import retrieval_metrics
from lookalike.protocol import gallery_topk

__all__ = [
    "DEFAULT_DEPTH",
    "FPIR_TARGETS",
    "EvalSet",
    "FnirAtFpir",
    "OpenSetReport",
    "RatesAtThreshold",
    "SizePoint",
    "distractor_counts",
    "distractor_sweep",
    "gallery_size_sweep",
    "open_set_report",
]

#: The FPIRs FNIR is reported at.
FPIR_TARGETS: tuple[float, ...] = (0.1, 0.05, 0.01, 0.001)
#: Neighbours a search retrieves for its decision score.
DEFAULT_DEPTH = 10
#: Below this many searches a rate is shown with its confidence interval.
SMALL_COUNT = 1000

ThresholdForSize = Callable[[int], float]


@dataclass(frozen=True)
class EvalSet:
    """A split's images as open-set evaluation sees them.

    ``embeddings`` (N, D) float32; ``labels`` (N,) str; ``is_query`` / ``is_gallery`` (N,) bool (an
    image may be both: leave-one-out); ``ids`` (N,) int64 row ids, unique.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    is_query: np.ndarray
    is_gallery: np.ndarray
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __post_init__(self) -> None:
        n = len(self.embeddings)
        object.__setattr__(self, "labels", np.asarray(self.labels).astype(str))
        if len(self.ids) == 0:
            object.__setattr__(self, "ids", np.arange(n, dtype=np.int64))
        for name in ("labels", "is_query", "is_gallery", "ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} embeddings")
        if len(np.unique(self.ids)) != n:
            raise ValueError("ids must be unique (one row id per image)")

    @property
    def classes(self) -> np.ndarray:
        """The sorted classes that have gallery images (those a gallery can enrol)."""
        return np.unique(self.labels[self.is_gallery])


@dataclass(frozen=True)
class FnirAtFpir:
    """FNIR at the threshold that gives ``fpir`` on the non-mated searches, for one decision score.

    ``fnir_ci95``: Wilson interval of ``n_false_negative / n_mated``; ``fpir_resolved``: False when
    there are too few non-mated searches to resolve ``fpir`` (fewer than 1 / fpir).
    """

    score: str
    fpir: float
    fnir: float
    threshold: float
    n_mated: int
    n_false_negative: int
    n_non_mated: int
    fnir_ci95: tuple[float, float]
    fpir_resolved: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "fnir_ci95": list(self.fnir_ci95)}


@dataclass(frozen=True)
class RatesAtThreshold:
    """FPIR / FNIR / wrong-match rate at a given threshold, counts summed over draws, with Wilson
    intervals (95 %)."""

    score: str
    threshold: float
    fpir: float
    fnir: float
    wrong_match_rate: float
    n_mated: int
    n_non_mated: int
    n_false_positive: int
    n_false_negative: int
    n_wrong_match: int
    fpir_ci95: tuple[float, float]
    fnir_ci95: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "fpir_ci95": list(self.fpir_ci95), "fnir_ci95": list(self.fnir_ci95)}


@dataclass(frozen=True)
class OpenSetReport:
    """FNIR at each target FPIR and the DET curve, per decision score, on one gallery."""

    n_classes: int
    n_enrolled_classes: int
    n_gallery_images: int
    n_mated: int
    n_non_mated: int
    fnir_at_fpir: tuple[FnirAtFpir, ...]
    det: dict[str, DetCurve]
    depth: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the DET curves are left to the plot)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("fnir_at_fpir", "det")}
        out["fnir_at_fpir"] = [row.to_dict() for row in self.fnir_at_fpir]
        return out


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


@dataclass(frozen=True)
class _Draw:
    """One gallery's searches: top-k labels/distances, truth, and its retrieval figures."""

    labels: np.ndarray
    distances: np.ndarray
    query_labels: np.ndarray
    mated: np.ndarray
    n_gallery: int
    hit_rate_at_1: float
    map_at_r: float


def open_set_report(
    data: EvalSet,
    *,
    distance: str = "euclidean",
    non_mated_share: float = 0.25,
    seed: int = 0,
    targets: Sequence[float] = FPIR_TARGETS,
    scores: Sequence[str] = SCORES,
    depth: int = DEFAULT_DEPTH,
) -> OpenSetReport:
    """Hold out ``round(non_mated_share * classes)`` classes (seeded; at least 1, at most all but
    1), enrol the rest, and measure FNIR at each target FPIR and the DET curve of each score."""
    enrolled = open_set_classes(data.classes, non_mated_share, seed)
    draw = _search(data, enrolled, None, distance=distance, depth=depth, retrieval=False)
    rows = tuple(_fnir_rows([draw], targets, scores))
    dets = {s: det_curve(*_scored(draw, s)) for s in scores}
    return OpenSetReport(
        n_classes=len(data.classes),
        n_enrolled_classes=len(enrolled),
        n_gallery_images=draw.n_gallery,
        n_mated=int(draw.mated.sum()),
        n_non_mated=int((~draw.mated).sum()),
        fnir_at_fpir=rows,
        det=dets,
        depth=depth,
    )


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
    threshold: float | ThresholdForSize | None = None,
    threshold_score: str = "nearest",
) -> list[SizePoint]:
    """At each size (a number of **enrolled classes**), ``draws`` galleries enrolling that many
    classes drawn at random (seeded); the other classes' images are the non-mated searches.

    ``threshold``: a fixed threshold, or a function of the gallery size in classes (a calibration
    that sets the threshold for any size), applied to ``threshold_score``: gives ``at_threshold``.
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
        found = [_search(data, enrolled, None, distance=distance, depth=depth) for enrolled in picks]
        point = _point(found, int(size), 0, targets, scores, threshold, threshold_score)
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
    threshold: float | ThresholdForSize | None = None,
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
        found = _search(data, base, (distractors[pick], names[pick]), distance=distance, depth=depth)
        point = _point([found], len(base), int(count), targets, scores, threshold, threshold_score)
        points.append(dataclasses.replace(point, enrolled=(tuple(base.tolist()),)))
    return points


def open_set_classes(classes: np.ndarray, non_mated_share: float, seed: int) -> np.ndarray:
    """The classes enrolled when ``non_mated_share`` of ``classes`` are held out (seeded)."""
    if not 0.0 < non_mated_share < 1.0:
        raise ValueError(f"non_mated_share must be in (0, 1), got {non_mated_share!r}")
    if len(classes) < 2:
        raise ValueError(
            f"open-set evaluation needs at least 2 classes with gallery images, got {len(classes)}"
        )
    n_held = min(len(classes) - 1, max(1, round(non_mated_share * len(classes))))
    order = np.random.default_rng(seed).permutation(len(classes))
    return classes[np.sort(order[n_held:])]


def _search(
    data: EvalSet,
    enrolled: np.ndarray,
    distractors: tuple[np.ndarray, np.ndarray] | None,
    *,
    distance: str,
    depth: int,
    retrieval: bool = True,
) -> _Draw:
    """Search every mated and non-mated image of ``data`` against the gallery of ``enrolled``
    classes (+ ``distractors``: embeddings and labels that no search has)."""
    in_gallery = np.isin(data.labels, enrolled)
    g = data.is_gallery & in_gallery
    s = (data.is_query & in_gallery) | ~in_gallery
    g_emb, g_lab, g_ids = data.embeddings[g], data.labels[g], data.ids[g]
    if distractors is not None and len(distractors[0]):
        g_emb = np.concatenate([g_emb, distractors[0]])
        g_lab = np.concatenate([g_lab, distractors[1]])
        g_ids = np.concatenate([g_ids, data.ids.max() + 1 + np.arange(len(distractors[0]), dtype=np.int64)])
    dist, rows = gallery_topk(
        data.embeddings[s], g_emb, depth, distance=distance, query_ids=data.ids[s], gallery_ids=g_ids
    )
    labels = np.where(rows >= 0, g_lab.astype(object)[np.maximum(rows, 0)], None)
    mated = _mated(data, s, g)
    hit1 = mapr = float("nan")
    if retrieval:
        hit1, mapr = _retrieval(data, s & in_gallery, g_emb, g_lab, g_ids, distance)
    return _Draw(labels, dist, data.labels[s], mated, len(g_emb), hit1, mapr)


def _mated(data: EvalSet, searched: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(searched,) bool: the search's class has a gallery item other than the image itself."""
    classes, counts = np.unique(data.labels[gallery], return_counts=True)
    per_class = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    n = np.array([per_class.get(label, 0) for label in data.labels[searched]])
    return n - gallery[searched].astype(int) > 0


def _distractor_names(n: int, labels: Sequence[str] | None) -> np.ndarray:
    """Labels no search has: ``distractor:<label>`` (or ``distractor:<i>``, one object each)."""
    if labels is None:
        return np.array([f"\x00distractor:{i}" for i in range(n)])
    if len(labels) != n:
        raise ValueError(f"{len(labels)} distractor labels for {n} distractors; give one per distractor")
    return np.array([f"\x00distractor:{label}" for label in labels])


def _retrieval(
    data: EvalSet, mated: np.ndarray, g_emb: np.ndarray, g_lab: np.ndarray, g_ids: np.ndarray, distance: str
) -> tuple[float, float]:
    if not mated.any():
        return float("nan"), float("nan")
    report = retrieval_metrics(
        data.embeddings[mated],
        data.labels[mated],
        g_emb,
        g_lab,
        ks=(1,),
        distance=distance,
        query_ids=data.ids[mated],
        gallery_ids=g_ids,
    )
    return float(report.metrics["hit_rate@1"]), float(report.metrics["map@r"])


def _scored(draw: _Draw, score: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scores, predicted labels, query labels, mated) of a draw's searches for one score."""
    values = decision_scores(draw.labels, draw.distances, score=score)
    return values, draw.labels[:, 0] if draw.labels.shape[1] else None, draw.query_labels, draw.mated


def _fnir_rows(draws: Sequence[_Draw], targets: Sequence[float], scores: Sequence[str]) -> list[FnirAtFpir]:
    """FNIR at each target FPIR and score; each draw's threshold set on its own non-mated searches,
    counts summed over draws."""
    rows = []
    for score in scores:
        scored = [_scored(d, score) for d in draws]
        for target in targets:
            n_mated = n_fn = n_non = 0
            thresholds = []
            for values, predicted, truth, mated in scored:
                t = threshold_at_fpir(values[~mated], target) if (~mated).any() else float("nan")
                thresholds.append(t)
                if np.isnan(t):
                    continue
                rates = identification_rates(values, predicted, truth, mated, threshold=t)
                n_mated += rates.n_mated
                n_fn += rates.n_false_negative
                n_non += rates.n_non_mated
            fnir = n_fn / n_mated if n_mated else float("nan")
            rows.append(
                FnirAtFpir(
                    score=score,
                    fpir=float(target),
                    fnir=fnir,
                    threshold=float(np.nanmean(thresholds))
                    if not np.isnan(thresholds).all()
                    else float("nan"),
                    n_mated=n_mated,
                    n_false_negative=n_fn,
                    n_non_mated=n_non,
                    fnir_ci95=wilson_interval(n_fn, n_mated),
                    fpir_resolved=n_non * float(target) >= len(draws),
                )
            )
    return rows


def _rates_at(
    draws: Sequence[_Draw], size: int, threshold: float | ThresholdForSize, score: str
) -> RatesAtThreshold:
    t = float(threshold(size) if callable(threshold) else threshold)
    totals = np.zeros(5, dtype=np.int64)  # mated, non-mated, fp, fn, wrong
    for draw in draws:
        r = identification_rates(*_scored(draw, score), threshold=t)
        totals += (r.n_mated, r.n_non_mated, r.n_false_positive, r.n_false_negative, r.n_wrong_match)
    n_m, n_n, fp, fn, wrong = (int(x) for x in totals)
    return RatesAtThreshold(
        score=score,
        threshold=t,
        fpir=fp / n_n if n_n else float("nan"),
        fnir=fn / n_m if n_m else float("nan"),
        wrong_match_rate=wrong / n_m if n_m else float("nan"),
        n_mated=n_m,
        n_non_mated=n_n,
        n_false_positive=fp,
        n_false_negative=fn,
        n_wrong_match=wrong,
        fpir_ci95=wilson_interval(fp, n_n),
        fnir_ci95=wilson_interval(fn, n_m),
    )


def _point(
    draws: Sequence[_Draw],
    size: int,
    n_distractors: int,
    targets: Sequence[float],
    scores: Sequence[str],
    threshold: float | ThresholdForSize | None,
    threshold_score: str,
) -> SizePoint:
    return SizePoint(
        size_classes=size,
        size_images=float(np.mean([d.n_gallery for d in draws])),
        n_distractors=n_distractors,
        draws=len(draws),
        hit_rate_at_1=float(np.nanmean([d.hit_rate_at_1 for d in draws])),
        map_at_r=float(np.nanmean([d.map_at_r for d in draws])),
        fnir_at_fpir=tuple(_fnir_rows(draws, targets, scores)),
        at_threshold=None if threshold is None else _rates_at(draws, size, threshold, threshold_score),
    )
