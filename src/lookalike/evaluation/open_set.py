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

:func:`open_set_report`: FNIR at target FPIRs and the DET curve of each decision score, with a
seeded share of the classes held out as the non-mated ones; :mod:`~lookalike.evaluation.gallery_sizes`
the same figures at each gallery size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.calibration.record import DECISION_DEPTH
from lookalike.metrics.identification import (
    SCORES,
    DetCurve,
    IdentificationRates,
    decision_scores,
    det_curve,
    identification_rates,
    threshold_at_fpir,
    wilson_interval,
)
from lookalike.metrics.retrieval import retrieval_metrics
from lookalike.protocol import gallery_topk

if TYPE_CHECKING:
    from lookalike.evaluation.tables import EmbeddingTable

__all__ = [
    "DEFAULT_DEPTH",
    "FPIR_TARGETS",
    "EvalSet",
    "FnirAtFpir",
    "OpenSetReport",
    "RatesAtThreshold",
    "Searches",
    "fnir_rows",
    "open_set_classes",
    "open_set_report",
    "rates_at_threshold",
    "scored",
    "search_enrolled",
]

#: The FPIRs FNIR is reported at.
FPIR_TARGETS: tuple[float, ...] = (0.1, 0.05, 0.01, 0.001)
#: Neighbours a search retrieves for its decision score: as deep as a gallery search looks
#: (:data:`lookalike.calibration.DECISION_DEPTH`), so the scores are the ones a search decides on.
DEFAULT_DEPTH = DECISION_DEPTH


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

    @classmethod
    def from_table(cls, table: EmbeddingTable) -> EvalSet:
        """A loaded embeddings table (without roles, every item is a query and a gallery item)."""
        ids = table.ids if table.ids is not None else np.arange(len(table.labels))
        if not np.issubdtype(np.asarray(ids).dtype, np.integer):
            ids = np.arange(len(table.labels))  # string ids: their row number serves
        return cls(
            embeddings=np.ascontiguousarray(table.embeddings, dtype=np.float32),
            labels=np.asarray(table.labels).astype(str),
            is_query=table.query_mask(),
            is_gallery=table.gallery_mask(),
            ids=np.asarray(ids, dtype=np.int64),
        )

    @property
    def classes(self) -> np.ndarray:
        """The sorted classes that have gallery images (those a gallery can enrol)."""
        return np.unique(self.labels[self.is_gallery])


@dataclass(frozen=True)
class FnirAtFpir:
    """FNIR at the threshold that gives ``fpir`` on the non-mated searches, for one decision score.

    ``threshold``: its mean over draws; ``fnir_ci95``: Wilson interval (95 %) of
    ``n_false_negative / n_mated``; ``fpir_resolved``: False when
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


@dataclass(frozen=True, kw_only=True)
class RatesAtThreshold(IdentificationRates):
    """:class:`~lookalike.metrics.identification.IdentificationRates` of one decision score, counts
    summed over draws, with Wilson intervals (95 %)."""

    score: str
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
    #: the rates at a given (calibrated) threshold, when one was given
    at_threshold: RatesAtThreshold | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the DET curves are left to the plot)."""
        skip = ("fnir_at_fpir", "det", "at_threshold")
        out = {k: v for k, v in self.__dict__.items() if k not in skip}
        out["fnir_at_fpir"] = [row.to_dict() for row in self.fnir_at_fpir]
        if self.at_threshold is not None:
            out["at_threshold"] = self.at_threshold.to_dict()
        return out


@dataclass(frozen=True)
class Searches:
    """One gallery's searches (Q of them): top-k ``labels`` (Q, depth) and gallery ``distances``
    (Q, depth), the ``query_labels`` (Q,) and ``mated`` (Q,), the gallery's size in images, and
    hit_rate@1 / MAP@R of its mated searches (NaN when not computed)."""

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
    threshold: float | None = None,
    threshold_score: str = "nearest",
) -> OpenSetReport:
    """Hold out ``round(non_mated_share * classes)`` classes (seeded; at least 1, at most all but
    1), enrol the rest, and measure FNIR at each target FPIR and the DET curve of each score;
    ``threshold``: also the rates of ``threshold_score`` at it."""
    enrolled = open_set_classes(data.classes, non_mated_share, seed)
    draw = search_enrolled(data, enrolled, None, distance=distance, depth=depth, retrieval=False)
    rows = tuple(fnir_rows([draw], targets, scores))
    dets = {s: det_curve(*scored(draw, s)) for s in scores}
    at = None if threshold is None else rates_at_threshold([draw], threshold, threshold_score)
    return OpenSetReport(
        n_classes=len(data.classes),
        n_enrolled_classes=len(enrolled),
        n_gallery_images=draw.n_gallery,
        n_mated=int(draw.mated.sum()),
        n_non_mated=int((~draw.mated).sum()),
        fnir_at_fpir=rows,
        det=dets,
        depth=depth,
        at_threshold=at,
    )


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


def search_enrolled(
    data: EvalSet,
    enrolled: np.ndarray,
    distractors: tuple[np.ndarray, np.ndarray] | None,
    *,
    distance: str,
    depth: int,
    retrieval: bool = True,
) -> Searches:
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
    return Searches(labels, dist, data.labels[s], mated, len(g_emb), hit1, mapr)


def _mated(data: EvalSet, searched: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(searched,) bool: the search's class has a gallery item other than the image itself."""
    classes, counts = np.unique(data.labels[gallery], return_counts=True)
    per_class = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    n = np.array([per_class.get(label, 0) for label in data.labels[searched]])
    return n - gallery[searched].astype(int) > 0


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


def scored(draw: Searches, score: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scores, predicted labels, query labels, mated) of a draw's searches for one score."""
    values = decision_scores(draw.labels, draw.distances, score=score)
    return values, draw.labels[:, 0] if draw.labels.shape[1] else None, draw.query_labels, draw.mated


def fnir_rows(draws: Sequence[Searches], targets: Sequence[float], scores: Sequence[str]) -> list[FnirAtFpir]:
    """FNIR at each target FPIR and score; each draw's threshold set on its own non-mated searches,
    counts summed over draws."""
    rows = []
    for score in scores:
        per_draw = [scored(d, score) for d in draws]
        rows.extend(_fnir_row(per_draw, score, float(target)) for target in targets)
    return rows


def _fnir_row(per_draw: list[tuple[np.ndarray, ...]], score: str, target: float) -> FnirAtFpir:
    n_mated = n_fn = n_non = 0
    thresholds = []
    for values, predicted, truth, mated in per_draw:
        if not (~mated).any():
            continue
        t = threshold_at_fpir(values[~mated], target)
        thresholds.append(t)
        rates = identification_rates(values, predicted, truth, mated, threshold=t)
        n_mated += rates.n_mated
        n_fn += rates.n_false_negative
        n_non += rates.n_non_mated
    return FnirAtFpir(
        score=score,
        fpir=target,
        fnir=n_fn / n_mated if n_mated else float("nan"),
        threshold=float(np.mean(thresholds)) if thresholds else float("nan"),
        n_mated=n_mated,
        n_false_negative=n_fn,
        n_non_mated=n_non,
        fnir_ci95=wilson_interval(n_fn, n_mated),
        fpir_resolved=bool(thresholds) and n_non * target >= len(thresholds),
    )


def rates_at_threshold(
    draws: Sequence[Searches], threshold: float | Sequence[float], score: str
) -> RatesAtThreshold:
    """FPIR / FNIR / wrong-match rate of ``score`` at ``threshold`` (one, or one per draw: the rates'
    ``threshold`` is then their mean), counts summed over ``draws``."""
    each = [float(threshold)] * len(draws) if np.ndim(threshold) == 0 else [float(x) for x in threshold]  # type: ignore[union-attr]
    if len(each) != len(draws):
        raise ValueError(f"{len(each)} thresholds for {len(draws)} draws; give one, or one per draw")
    t = float(np.mean(each)) if each else float("nan")
    totals = np.zeros(5, dtype=np.int64)  # mated, non-mated, fp, fn, wrong
    for draw, limit in zip(draws, each, strict=True):
        r = identification_rates(*scored(draw, score), threshold=limit)
        totals += (r.n_mated, r.n_non_mated, r.n_false_positive, r.n_false_negative, r.n_wrong_match)
    n_m, n_n, fp, fn, wrong = (int(x) for x in totals)
    base = IdentificationRates.from_counts(t, n_mated=n_m, n_non_mated=n_n, fp=fp, fn=fn, wrong=wrong)
    return RatesAtThreshold(
        **base.__dict__, score=score, fpir_ci95=wilson_interval(fp, n_n), fnir_ci95=wilson_interval(fn, n_m)
    )
