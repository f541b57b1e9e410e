"""Verification metrics and the match decision.

A comparison is a value (a distance, or a similarity when ``higher_is_closer=True``) and whether
the two sides are truly of the same class (``is_match``). A threshold t *accepts* a comparison
when ``value <= t`` (distances) or ``value >= t`` (similarities).

- FAR (false accept rate): accepted non-matches / non-matches.
- TAR (true accept rate): accepted matches / matches; FRR = 1 - TAR.
- :func:`roc_curve`, :func:`roc_auc`, :func:`eer`, :func:`tar_at_far` summarise all thresholds.
- :func:`calibrate_threshold` picks the number that later decides "match" / "no match":
  the loosest threshold whose FAR on the calibration set is at most ``target_far``, or the one
  with the best F1.
- :func:`open_set_evaluation`: queries whose class is absent from the gallery should be rejected;
  it applies a threshold to each query's nearest gallery item and reports the rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookalike._arrays import ArrayLike, as_embeddings, as_vector, to_numpy
from lookalike.distances import BaseDistance, resolve_distance
from lookalike.knn import Backend, topk

__all__ = [
    "OpenSetReport",
    "RocCurve",
    "Threshold",
    "calibrate_threshold",
    "eer",
    "nearest_neighbour_matches",
    "open_set_evaluation",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
]


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """The trapezoidal rule: ``np.trapezoid`` (NumPy >= 2.0), else ``np.trapz`` (NumPy 1.x, which
    pyproject allows; NumPy 2.4 removed it)."""
    rule = getattr(np, "trapezoid", None) or np.trapz
    return float(rule(y, x))


@dataclass(frozen=True)
class RocCurve:
    """TAR against FAR at every distinct threshold, from the strictest (accept nothing) to the loosest.

    ``far``, ``tar`` and ``thresholds`` are (T,) arrays; ``thresholds[0]`` accepts nothing.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    higher_is_closer: bool


@dataclass(frozen=True)
class Threshold:
    """A calibrated match threshold and how it did on the calibration set.

    Attributes:
        value: accept when ``value_of_pair <= value`` (or ``>=`` when ``higher_is_closer``).
        far, tar, frr, precision, f1: on the calibration set at this threshold.
        higher_is_closer: the convention of the values (False: distances).
        method: ``"far"`` (target FAR) or ``"f1"`` (best F1).
        target_far: the FAR asked for, or None.
    """

    value: float
    far: float
    tar: float
    frr: float
    precision: float
    f1: float
    higher_is_closer: bool
    method: str
    target_far: float | None = None

    def accepts(self, values: ArrayLike) -> np.ndarray:
        """(N,) values -> (N,) bool: which comparisons this threshold calls a match."""
        v = _as_float_array(values, "values")
        return v >= self.value if self.higher_is_closer else v <= self.value


@dataclass(frozen=True)
class OpenSetReport:
    """The result of :func:`open_set_evaluation`.

    Rates are fractions of the known queries (class present in the gallery) or of the unknown
    queries (class absent), NaN when there are none.

    Attributes:
        threshold: the threshold value used.
        n_known, n_unknown: query counts.
        false_accept_rate: unknown queries accepted (they should have been rejected).
        true_reject_rate: unknown queries rejected (1 - false_accept_rate).
        correct_accept_rate: known queries accepted with the right class (detection and
            identification rate).
        wrong_accept_rate: known queries accepted with a wrong class.
        false_reject_rate: known queries rejected.
        nearest_values, nearest_ids, accepted, known: per query, (Nq,) arrays.
    """

    threshold: float
    n_known: int
    n_unknown: int
    false_accept_rate: float
    true_reject_rate: float
    correct_accept_rate: float
    wrong_accept_rate: float
    false_reject_rate: float
    nearest_values: np.ndarray
    nearest_ids: np.ndarray
    accepted: np.ndarray
    known: np.ndarray


def roc_curve(values: ArrayLike, is_match: ArrayLike, *, higher_is_closer: bool = False) -> RocCurve:
    """The ROC curve over all distinct thresholds (ties move together, as in scikit-learn)."""
    v, m = _check_pairs(values, is_match)
    key = v if higher_is_closer else -v  # larger key = accepted first
    order = np.argsort(-key, kind="stable")
    key_sorted, m_sorted = key[order], m[order]
    n_pos = int(m.sum())
    n_neg = len(m) - n_pos
    last_of_value = np.r_[np.flatnonzero(np.diff(key_sorted) != 0), len(key_sorted) - 1]
    tp = np.cumsum(m_sorted)[last_of_value]
    fp = (last_of_value + 1) - tp
    thresholds_sorted = v[order][last_of_value]
    start = np.inf if higher_is_closer else -np.inf
    tar = np.r_[0.0, tp / n_pos] if n_pos else np.r_[0.0, np.full(len(tp), np.nan)]
    far = np.r_[0.0, fp / n_neg] if n_neg else np.r_[0.0, np.full(len(fp), np.nan)]
    return RocCurve(
        far=far, tar=tar, thresholds=np.r_[start, thresholds_sorted], higher_is_closer=higher_is_closer
    )


def roc_auc(values: ArrayLike, is_match: ArrayLike, *, higher_is_closer: bool = False) -> float:
    """Area under the ROC curve: the chance that a random match is closer than a random non-match
    (ties count one half). Needs both matches and non-matches."""
    curve = roc_curve(values, is_match, higher_is_closer=higher_is_closer)
    _need_both(curve)
    return _trapezoid(curve.tar, curve.far)


def eer(values: ArrayLike, is_match: ArrayLike, *, higher_is_closer: bool = False) -> float:
    """Equal error rate: where FAR equals FRR (1 - TAR), interpolated linearly along the ROC curve."""
    curve = roc_curve(values, is_match, higher_is_closer=higher_is_closer)
    _need_both(curve)
    frr = 1.0 - curve.tar
    diff = curve.far - frr  # increases from -1 to >= 0 along the curve
    j = int(np.argmax(diff >= 0))
    if j == 0 or diff[j] == 0:
        return float(curve.far[j])
    d0, d1 = diff[j - 1], diff[j]
    t = d0 / (d0 - d1)
    return float(curve.far[j - 1] + t * (curve.far[j] - curve.far[j - 1]))


def tar_at_far(
    values: ArrayLike, is_match: ArrayLike, fars: Sequence[float], *, higher_is_closer: bool = False
) -> np.ndarray:
    """TAR at the loosest threshold whose FAR is at most each of ``fars`` (no interpolation).

    Returns a (len(fars),) array aligned with ``fars``.
    """
    fars_a = np.asarray(fars, dtype=np.float64).reshape(-1)
    if fars_a.size == 0 or bool(((fars_a < 0) | (fars_a > 1) | ~np.isfinite(fars_a)).any()):
        raise ValueError(f"fars must be a non-empty sequence of rates in [0, 1], got {list(fars)!r}")
    curve = roc_curve(values, is_match, higher_is_closer=higher_is_closer)
    _need_both(curve)
    # far is non-decreasing: the last point with far <= target has the highest tar.
    idx = np.searchsorted(curve.far, fars_a, side="right") - 1
    return curve.tar[idx]


def calibrate_threshold(
    values: ArrayLike,
    is_match: ArrayLike,
    *,
    target_far: float | None = None,
    higher_is_closer: bool = False,
) -> Threshold:
    """Pick the match threshold on a calibration (validation) set.

    With ``target_far``: the loosest threshold whose FAR on this set is <= ``target_far`` (so the
    highest TAR that keeps the promise); without: the threshold with the best F1 of "match".
    The threshold is one of the values (or, to accept nothing, just beyond the closest one).
    """
    if target_far is not None and not (0.0 <= float(target_far) <= 1.0):
        raise ValueError(f"target_far must be in [0, 1], got {target_far!r}")
    curve = roc_curve(values, is_match, higher_is_closer=higher_is_closer)
    _need_both(curve)
    v, m = _check_pairs(values, is_match)
    n_pos = int(m.sum())
    n_neg = len(m) - n_pos
    tp = curve.tar * n_pos
    fp = curve.far * n_neg
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    f1 = np.divide(
        2 * tp, 2 * tp + fp + (n_pos - tp), out=np.zeros_like(tp), where=(2 * tp + fp + n_pos - tp) > 0
    )
    if target_far is not None:
        j = int(np.searchsorted(curve.far, float(target_far), side="right") - 1)
        method = "far"
    else:
        j = int(np.argmax(f1))
        method = "f1"
    value = float(curve.thresholds[j])
    if j == 0:  # accept nothing: just beyond the closest value
        closest = float(v.max()) if higher_is_closer else float(v.min())
        value = float(np.nextafter(closest, np.inf if higher_is_closer else -np.inf))
    return Threshold(
        value=value,
        far=float(curve.far[j]),
        tar=float(curve.tar[j]),
        frr=float(1.0 - curve.tar[j]),
        precision=float(precision[j]),
        f1=float(f1[j]),
        higher_is_closer=higher_is_closer,
        method=method,
        target_far=None if target_far is None else float(target_far),
    )


def nearest_neighbour_matches(
    queries: ArrayLike,
    query_labels: ArrayLike,
    gallery: ArrayLike,
    gallery_labels: ArrayLike,
    *,
    distance: BaseDistance | str | None = None,
    backend: Backend = "torch",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's nearest gallery item: ``(values, ids, is_match)``, each (Nq,).

    ``is_match`` is True when that item has the query's label: the comparisons to calibrate an
    identification threshold on (pass ``higher_is_closer=distance.higher_is_closer``).
    """
    dist = resolve_distance(distance)
    gallery = as_embeddings(gallery, "gallery")
    if gallery.shape[0] == 0:
        raise ValueError("the gallery is empty: a query's nearest gallery item needs at least one item")
    values, ids = topk(queries, gallery, 1, distance=dist, backend=backend)
    ql = as_vector(query_labels, "query_labels", n=len(values), like="queries")
    gl = as_vector(gallery_labels, "gallery_labels", n=len(gallery), like="gallery")
    ids_np = ids[:, 0].cpu().numpy()
    return values[:, 0].cpu().numpy().astype(np.float64), ids_np, gl[ids_np] == ql


def open_set_evaluation(
    queries: ArrayLike,
    query_labels: ArrayLike,
    gallery: ArrayLike,
    gallery_labels: ArrayLike,
    *,
    threshold: Threshold | float,
    distance: BaseDistance | str | None = None,
    backend: Backend = "torch",
) -> OpenSetReport:
    """Apply a match threshold to each query's nearest gallery item.

    Queries whose class is absent from the gallery ("unknown") should be rejected; the report gives
    the false accept rate among them at this threshold, and for the known queries how many were
    accepted with the right class, with a wrong class, or rejected.
    """
    dist = resolve_distance(distance)
    if isinstance(threshold, Threshold):
        if threshold.higher_is_closer != dist.higher_is_closer:
            raise ValueError(
                f"the threshold was calibrated with higher_is_closer={threshold.higher_is_closer}, "
                f"but {dist!r} has higher_is_closer={dist.higher_is_closer}"
            )
        t = threshold.value
    else:
        t = float(threshold)
    values, ids, correct = nearest_neighbour_matches(
        queries, query_labels, gallery, gallery_labels, distance=dist, backend=backend
    )
    ql = as_vector(query_labels, "query_labels", n=len(values), like="queries")
    gl = as_vector(gallery_labels, "gallery_labels", n=len(gallery), like="gallery")
    known = np.isin(ql, gl)
    accepted = values >= t if dist.higher_is_closer else values <= t
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    far = _rate(accepted & ~known, n_unknown)
    return OpenSetReport(
        threshold=t,
        n_known=n_known,
        n_unknown=n_unknown,
        false_accept_rate=far,
        true_reject_rate=1.0 - far if n_unknown else float("nan"),
        correct_accept_rate=_rate(accepted & known & correct, n_known),
        wrong_accept_rate=_rate(accepted & known & ~correct, n_known),
        false_reject_rate=_rate(~accepted & known, n_known),
        nearest_values=values,
        nearest_ids=ids,
        accepted=accepted,
        known=known,
    )


def _rate(mask: np.ndarray, n: int) -> float:
    return float(mask.sum() / n) if n else float("nan")


def _as_float_array(x: ArrayLike, what: str) -> np.ndarray:
    arr = to_numpy(x)
    return as_vector(arr.astype(np.float64, copy=False).reshape(-1) if arr.ndim <= 1 else arr, what)


def _check_pairs(values: ArrayLike, is_match: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    v = _as_float_array(values, "values")
    m_raw = to_numpy(is_match)
    if m_raw.shape != v.shape:
        raise ValueError(f"is_match must have the shape of values {v.shape}, got {m_raw.shape}")
    if m_raw.dtype != bool and not (np.issubdtype(m_raw.dtype, np.integer) and np.isin(m_raw, (0, 1)).all()):
        raise ValueError(f"is_match must be booleans (or 0/1), got dtype {m_raw.dtype}")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or infinite entries")
    return v, m_raw.astype(bool)


def _need_both(curve: RocCurve) -> None:
    if np.isnan(curve.tar[-1]) or np.isnan(curve.far[-1]):
        raise ValueError("need both matching and non-matching comparisons (is_match has only one value)")
