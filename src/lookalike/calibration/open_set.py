"""Open-set calibration for a target FPIR at any gallery size (issue: the decision keeps its promise).

On the calibration split (classes never trained on), :func:`calibrate_open_set`:

1. *chooses the decision score* (:data:`lookalike.metrics.identification.SCORES`) by FNIR at the
   target FPIR: ``repeats`` times, a seeded half of the classes is enrolled (their images are
   mated searches, each against the others, never itself) and the other half searched as
   non-mated; each score's threshold is set on those non-mated searches and its FNIR read on the
   mated ones, averaged over the repeats. The lowest wins; within ``tie`` of a simpler score, the
   simpler one does.
2. *sets the threshold for every gallery size* with the chosen score: every image's per-object
   distances to the other classes form its non-mated profile, and the size model
   (:mod:`lookalike.calibration.size_model`) gives the threshold whose FPIR is the target on
   galleries of 1 to 2^20 objects. The record keeps that table; a gallery sets its threshold
   from it for its own size, and again when it grows or shrinks.

Why this method: the FPIR of a threshold rises with the number of enrolled objects a non-mated
search meets (a bigger gallery has a closer stranger). Modelling each search's own per-object
distances (rather than one pooled impostor distribution) keeps the queries that are close to
everything, which pooled ``1 - (1 - p)^n`` undercounts, and order statistics make any size cost
the same. The covered range is ``1 .. size_factor x`` the calibration's objects: below its lowest
per-object distance the profile is extrapolated, and the measurements (BENCHMARKS.md) hold there.
"""

from __future__ import annotations

import numpy as np

from lookalike.calibration.record import DECISION_DEPTH, CalibrationRecord
from lookalike.calibration.size_model import object_profiles, size_thresholds
from lookalike.metrics.identification import SCORES, decision_scores, fnir_at_fpir
from lookalike.protocol import check_gallery_distance, gallery_topk

__all__ = ["SIZE_FACTOR", "calibrate_open_set", "choose_score", "score_fnir"]

#: The calibration covers galleries of up to this many times its own number of objects.
SIZE_FACTOR = 8
#: FNIR differences up to this are a tie, won by the simpler score.
TIE = 0.01


def _distances(emb: np.ndarray, distance: str) -> np.ndarray:
    """(N, N) gallery distances of every image to every image (the diagonal included)."""
    d, rows = gallery_topk(emb, emb, len(emb), distance=distance)
    out = np.empty(d.shape, dtype=np.float32)
    np.put_along_axis(out, rows, d.astype(np.float32), axis=1)
    return out


def score_fnir(
    dist: np.ndarray, labels: np.ndarray, *, target_fpir: float, depth: int, repeats: int, seed: int
) -> dict[str, float]:
    """Mean FNIR at ``target_fpir`` of each score over ``repeats`` seeded half/half enrolments of
    the classes (``dist`` (N, N) gallery distances between the images, ``labels`` (N,))."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 4:
        raise ValueError(f"choosing a decision score needs at least 4 classes, found {len(classes)}")
    results: dict[str, list[float]] = {s: [] for s in SCORES}
    for r in range(repeats):
        enrolled = np.random.default_rng(seed + r).permutation(classes)[: len(classes) // 2]
        in_gallery = np.isin(labels, enrolled)
        d = np.where(in_gallery[None, :], dist, np.inf)
        np.fill_diagonal(d, np.inf)  # never its own neighbour
        top = np.argsort(d, axis=1, kind="stable")[:, : min(depth, int(in_gallery.sum()))]
        top_d = np.take_along_axis(d, top, axis=1)
        top_labels = np.where(np.isfinite(top_d), labels[top], None).astype(object)
        mated = in_gallery & (counts[inverse] > 1)
        keep = mated | ~in_gallery  # an enrolled class with one image has no mate left to find
        for s in SCORES:
            scores = decision_scores(top_labels[keep], top_d[keep], score=s)
            fnir = fnir_at_fpir(scores, top_labels[keep, 0], labels[keep], mated[keep], [target_fpir])
            results[s].append(float(fnir[0]))
    return {s: float(np.mean(v)) for s, v in results.items()}


def choose_score(fnir: dict[str, float], *, tie: float = TIE) -> str:
    """The score with the lowest FNIR; a simpler one (earlier in SCORES) within ``tie`` of it wins."""
    best = min(fnir.values())
    return next(s for s in SCORES if s in fnir and fnir[s] <= best + tie)


def calibrate_open_set(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    target_fpir: float = 0.05,
    distance: str = "euclidean",
    score: str | None = None,
    depth: int = DECISION_DEPTH,
    repeats: int = 4,
    seed: int = 0,
) -> CalibrationRecord:
    """Calibrate on the (N, D) ``embeddings`` of one split with their ``labels`` (N,); see the
    module doc. ``score``: use this decision score instead of choosing one."""
    if not 0.0 < target_fpir < 1.0:
        raise ValueError(f"target FPIR must be a rate in (0, 1), got {target_fpir!r}")
    check_gallery_distance(distance)
    labels = np.asarray(labels).astype(str)
    emb = np.asarray(embeddings, dtype=np.float32)
    if len(emb) != len(labels):
        raise ValueError(f"{len(emb)} embeddings for {len(labels)} labels")
    dist = _distances(emb, distance)
    fnir = score_fnir(dist, labels, target_fpir=target_fpir, depth=depth, repeats=repeats, seed=seed)
    chosen = score or choose_score(fnir)
    profiles = object_profiles(dist, labels, labels)
    n_objects = profiles.shape[1] + 1
    table = size_thresholds(profiles, target_fpir, score=chosen, depth=depth, seed=seed)
    return CalibrationRecord(
        method="object-profiles",
        target_fpir=float(target_fpir),
        thresholds=tuple(table),
        score=chosen,
        distance=distance,
        depth=depth,
        size_range=(1, SIZE_FACTOR * n_objects),
        figures={
            "calibration_objects": n_objects,
            "calibration_images": len(labels),
            "fnir_at_target": fnir,
            "seed": seed,
        },
    )
