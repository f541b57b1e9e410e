"""Open-set identification metrics (1:N search), in the NIST FRVT 1:N vocabulary.

A *search* sends one query to a gallery and gets its top-k (labels and gallery distances, nearest
first). It is *mated* when the query's object is enrolled in the gallery, *non-mated* otherwise.
A decision score is computed from the top-k (lower = more confident), and the search answers
"match: <label of the nearest item>" when ``score <= threshold``, else "no match".

- FPIR (false positive identification rate) = non-mated searches answered "match" / non-mated
  searches.
- FNIR (false negative identification rate) = mated searches not answered "match" with the right
  object / mated searches. It includes the *wrong matches*:
- wrong-match rate = mated searches answered "match" with a wrong object / mated searches.

Both FPIR and FNIR depend on the gallery's size; see :mod:`lookalike.calibration` for setting a
threshold for any size.

Decision scores (:data:`SCORES`), from one search's top-k (``d1`` = nearest distance):

- ``nearest``: ``d1``.
- ``ratio``: ``d1 / d_other``, where ``d_other`` is the distance of the nearest retrieved item whose
  label differs from the nearest item's label. The top-k is searched for it only as deep as it goes
  (no second pass over the gallery); when every retrieved item has the nearest item's label,
  ``d_other`` is taken as the last retrieved distance, a lower bound of the true one, so the score
  is an upper bound of the true ratio (the decision errs toward "no match"). ``d_other == 0``
  gives 1.
- ``znorm`` (cohort z-norm): ``(d1 - mean(cohort)) / std(cohort)``, the cohort being the nearest
  distance of each of the first :data:`COHORT` *other* labels found in the top-k (one distance per
  label, so that a label with many images does not fill it). With fewer than two such labels the
  score is 0 (``d1`` is taken as typical of the cohort), which any useful threshold (negative)
  answers "no match"; the standard deviation is floored at 1e-6.

Rates come with their counts; :func:`wilson_interval` gives a confidence interval for a rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "COHORT",
    "SCORES",
    "DetCurve",
    "IdentificationRates",
    "decision_scores",
    "det_curve",
    "fnir_at_fpir",
    "identification_rates",
    "other_label_distance",
    "threshold_at_fpir",
    "threshold_for_size",
    "wilson_interval",
]

#: The decision scores, simplest first (a tie in the choice goes to the earlier one).
SCORES: tuple[str, ...] = ("nearest", "ratio", "znorm")
_STD_FLOOR = 1e-6
#: How many other labels form the z-norm cohort.
COHORT = 4


@dataclass(frozen=True)
class IdentificationRates:
    """FPIR / FNIR / wrong-match rate at one threshold, with the counts they come from."""

    threshold: float
    fpir: float
    fnir: float
    wrong_match_rate: float
    n_mated: int
    n_non_mated: int
    n_false_positive: int
    n_false_negative: int
    n_wrong_match: int

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)

    @classmethod
    def from_counts(
        cls, threshold: float, *, n_mated: int, n_non_mated: int, fp: int, fn: int, wrong: int
    ) -> IdentificationRates:
        """The rates from their counts (a rate over zero searches is NaN)."""
        return cls(
            threshold=float(threshold),
            fpir=_rate(fp, n_non_mated),
            fnir=_rate(fn, n_mated),
            wrong_match_rate=_rate(wrong, n_mated),
            n_mated=n_mated,
            n_non_mated=n_non_mated,
            n_false_positive=fp,
            n_false_negative=fn,
            n_wrong_match=wrong,
        )


@dataclass(frozen=True)
class DetCurve:
    """The detection error trade-off: ``fpir`` and ``fnir`` (M,) at ``thresholds`` (M,), ascending
    thresholds (FPIR rising, FNIR falling)."""

    thresholds: np.ndarray
    fpir: np.ndarray
    fnir: np.ndarray


def _check_topk(labels: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=object)
    distances = np.asarray(distances, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != distances.shape:
        raise ValueError(
            f"labels and distances must both be (Q, k), got shapes {labels.shape} and {distances.shape}"
        )
    return labels, distances


def _valid(labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """(Q, k) mask of real neighbours (padding: label None or distance not finite)."""
    return np.isfinite(distances) & np.not_equal(labels, None)


def other_label_distance(labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """(Q,) distance of the nearest retrieved item whose label is not the nearest item's; the last
    retrieved distance when every retrieved item has that label; inf for an empty row."""
    labels, distances = _check_topk(labels, distances)
    valid = _valid(labels, distances)
    if labels.shape[1] == 0:
        return np.full(len(labels), np.inf)
    other = valid & (labels != labels[:, :1])
    first_other = np.argmax(other, axis=1)
    n_valid = valid.sum(axis=1)
    last = distances[np.arange(len(labels)), np.maximum(n_valid - 1, 0)]
    found = distances[np.arange(len(labels)), first_other]
    out = np.where(other.any(axis=1), found, last)
    return np.where(n_valid > 0, out, np.inf)


def decision_scores(labels: np.ndarray, distances: np.ndarray, *, score: str = "nearest") -> np.ndarray:
    """(Q,) decision scores (lower = more confident match) from (Q, k) top-k ``labels`` and gallery
    ``distances``, nearest first; padding is label None or distance inf. A search with no neighbour
    scores inf. See the module doc for each score."""
    if score not in SCORES:
        raise ValueError(f"unknown decision score {score!r}; valid: {', '.join(SCORES)}")
    labels, distances = _check_topk(labels, distances)
    valid = _valid(labels, distances)
    if labels.shape[1] == 0:
        return np.full(len(labels), np.inf)
    d1 = np.where(valid[:, 0], distances[:, 0], np.inf)
    if score == "nearest":
        return d1
    if score == "ratio":
        d_other = other_label_distance(labels, distances)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(d_other > 0, d1 / d_other, 1.0)
        return np.where(np.isfinite(d1), ratio, np.inf)
    return np.where(np.isfinite(d1), _znorm(labels, distances, valid), np.inf)


def _znorm(labels: np.ndarray, distances: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.zeros(len(labels))
    for q in range(len(labels)):
        seen = {labels[q, 0]}
        cohort = []
        for lab, d, ok in zip(labels[q, 1:], distances[q, 1:], valid[q, 1:], strict=True):
            if ok and lab not in seen:
                seen.add(lab)
                cohort.append(d)
                if len(cohort) == COHORT:
                    break
        if len(cohort) >= 2:
            c = np.asarray(cohort)
            out[q] = (distances[q, 0] - c.mean()) / max(float(c.std()), _STD_FLOOR)
    return out


def _outcomes(
    scores: np.ndarray, predicted: np.ndarray, query_labels: np.ndarray, mated: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(scores)
    predicted = np.asarray(predicted, dtype=object).reshape(-1)
    query_labels = np.asarray(query_labels, dtype=object).reshape(-1)
    mated = np.asarray(mated).reshape(-1)
    for name, arr in (("predicted", predicted), ("query_labels", query_labels), ("mated", mated)):
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries for {n} scores; give one per search")
    if mated.dtype != bool:
        raise ValueError(f"mated must be booleans (one per search), got dtype {mated.dtype}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    right = np.asarray(
        [p is not None and str(p) == str(t) for p, t in zip(predicted, query_labels, strict=True)]
    )
    return scores, right.astype(bool), mated, predicted


def identification_rates(
    scores: np.ndarray,
    predicted: np.ndarray,
    query_labels: np.ndarray,
    mated: np.ndarray,
    *,
    threshold: float,
) -> IdentificationRates:
    """FPIR, FNIR and wrong-match rate at ``threshold`` (match when ``score <= threshold``).

    ``scores`` (Q,), ``predicted`` (Q,) the nearest item's label (None: no neighbour),
    ``query_labels`` (Q,), ``mated`` (Q,) bools. A rate over zero searches is NaN.
    """
    scores, right, mated, _ = _outcomes(scores, predicted, query_labels, mated)
    accepted = scores <= float(threshold)
    n_mated, n_non = int(mated.sum()), int((~mated).sum())
    fp = int((accepted & ~mated).sum())
    fn = int((mated & ~(accepted & right)).sum())
    wrong = int((mated & accepted & ~right).sum())
    return IdentificationRates.from_counts(
        threshold, n_mated=n_mated, n_non_mated=n_non, fp=fp, fn=fn, wrong=wrong
    )


def threshold_at_fpir(non_mated_scores: np.ndarray, target_fpir: float) -> float:
    """The loosest threshold whose FPIR on these non-mated scores is at most ``target_fpir``:
    ``floor(target * n)`` of the n scores are at or under it (ties: fewer), and it lies just under
    the next score (the smallest score itself, nudged down, when none may be accepted)."""
    if not 0.0 < float(target_fpir) < 1.0:
        raise ValueError(f"target_fpir must be a rate in (0, 1), got {target_fpir!r}")
    scores = np.asarray(non_mated_scores, dtype=np.float64).reshape(-1)
    s = np.sort(scores[np.isfinite(scores)])  # an infinite score (no neighbour) is never accepted
    if len(s) == 0:
        raise ValueError("no finite non-mated score to set a threshold on")
    allowed = math.floor(float(target_fpir) * len(scores) + 1e-9)
    if allowed >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[allowed], -np.inf))


def threshold_for_size(table: Sequence[Sequence[float]], n_objects: int) -> float:
    """The threshold for a gallery of ``n_objects`` enrolled objects from a table
    ``[(objects, threshold), ...]`` ascending in size: linear in log size between its points, its
    first / last value outside them."""
    if len(table) == 0:
        raise ValueError("the threshold table is empty")
    sizes = np.log(np.asarray([n for n, _ in table], dtype=np.float64))
    values = np.asarray([t for _, t in table], dtype=np.float64)
    return float(np.interp(np.log(max(int(n_objects), 1)), sizes, values))


def fnir_at_fpir(
    scores: np.ndarray,
    predicted: np.ndarray,
    query_labels: np.ndarray,
    mated: np.ndarray,
    targets: Sequence[float],
) -> np.ndarray:
    """(len(targets),) FNIR at the threshold :func:`threshold_at_fpir` sets on the same searches'
    non-mated scores for each target FPIR (an upper bound of what a held-out threshold gives)."""
    scores, _, mated, predicted = _outcomes(scores, predicted, query_labels, mated)
    out = []
    for target in targets:
        t = threshold_at_fpir(scores[~mated], target)
        out.append(identification_rates(scores, predicted, query_labels, mated, threshold=t).fnir)
    return np.asarray(out, dtype=np.float64)


def det_curve(
    scores: np.ndarray, predicted: np.ndarray, query_labels: np.ndarray, mated: np.ndarray
) -> DetCurve:
    """FPIR and FNIR at every distinct finite score taken as the threshold (ascending)."""
    scores, right, mated, _ = _outcomes(scores, predicted, query_labels, mated)
    thresholds = np.unique(scores[np.isfinite(scores)])
    n_non, n_mated = int((~mated).sum()), int(mated.sum())
    non = np.sort(scores[~mated])
    good = np.sort(scores[mated & right])  # mated searches whose nearest item is right
    fp = np.searchsorted(non, thresholds, side="right")
    hits = np.searchsorted(good, thresholds, side="right")
    fpir = fp / n_non if n_non else np.full(len(thresholds), np.nan)
    fnir = 1.0 - hits / n_mated if n_mated else np.full(len(thresholds), np.nan)
    return DetCurve(thresholds=thresholds, fpir=np.asarray(fpir, float), fnir=np.asarray(fnir, float))


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a rate ``successes / n`` (``(nan, nan)`` when n == 0)."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n == 0:
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return low, 1.0 if successes == n else min(1.0, centre + half)


def _rate(count: int, n: int) -> float:
    return count / n if n else float("nan")
