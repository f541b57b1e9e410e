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
   galleries of 1 to 2^20 objects. The record keeps that table, and the simulated non-mated
   score distribution of each size, which a gallery pools with its own images' non-mated
   searches when it sets its threshold, and again when it grows or shrinks
   (:mod:`lookalike.calibration.adaptive`: the objects of a gallery may crowd closer than val's).

Why this method: the FPIR of a threshold rises with the number of enrolled objects a non-mated
search meets (a bigger gallery has a closer stranger). Modelling each search's own per-object
distances (rather than one pooled impostor distribution) keeps the searches that are close to
everything, which a pooled ``1 - (1 - p)^n`` undercounts; order statistics make any size cost the
same, and, unlike resampling galleries, reach sizes beyond the calibration split's. It works for
the nearest distance and the ratio (whose non-mated value is the first two objects' distances).
Measured (calibrated on C classes of a split, galleries of other classes of the same split, target
0.05): FPIR 0.031 / 0.026 / 0.030 / 0.034 at 1x / 2x / 4x / 6x C = 16 glyph classes, 0.045 /
0.052 / 0.086 at 1x / 2x / 4x C = 9 Omniglot classes: below the calibration's lowest per-object
distance the profile is extrapolated and the growth is underestimated, so the covered range is
``1 .. SIZE_FACTOR x`` the calibration's objects, and a gallery outside it warns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lookalike.calibration.record import DECISION_DEPTH, CalibrationRecord
from lookalike.calibration.size_model import CURVE_LEVELS, object_profiles, size_table
from lookalike.distances import create_distance
from lookalike.metrics.identification import SCORES, decision_scores, fnir_at_fpir
from lookalike.protocol import ProtocolError, check_gallery_distance, from_values, split_rows, union_rows

if TYPE_CHECKING:
    import pandas as pd

    from lookalike.models.inference import InferenceModel

__all__ = ["SIZE_FACTOR", "calibrate_model", "calibrate_open_set", "choose_score", "score_fnir"]

#: The calibration covers galleries of up to this many times its own number of objects (measured:
#: beyond about twice, FPIR drifts up; see the module doc).
SIZE_FACTOR = 2
#: FNIR differences up to this are a tie, won by the simpler score.
TIE = 0.01


def _distances(emb: np.ndarray, distance: str) -> np.ndarray:
    """(N, N) gallery distances of every image to every image (the diagonal included): the
    distance matrix itself, not a top-N search sorted and scattered back."""
    values = create_distance(check_gallery_distance(distance))(torch.as_tensor(np.asarray(emb, np.float32)))
    return from_values(values, distance).astype(np.float32)


def score_fnir(
    dist: np.ndarray,
    labels: np.ndarray,
    *,
    target_fpir: float,
    depth: int = DECISION_DEPTH,
    repeats: int = 4,
    seed: int = 0,
    open_set_share: float = 0.5,
) -> dict[str, float]:
    """Mean FNIR at ``target_fpir`` of each score over ``repeats`` seeded enrolments of the classes
    (``open_set_share`` of them left out and searched as non-mated; ``dist`` (N, N) gallery
    distances between the images, ``labels`` (N,))."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 4:
        raise ValueError(f"choosing a decision score needs at least 4 classes, found {len(classes)}")
    results: dict[str, list[float]] = {s: [] for s in SCORES}
    for r in range(repeats):
        n_out = min(max(1, round(open_set_share * len(classes))), len(classes) - 2)
        enrolled = np.random.default_rng(seed + r).permutation(classes)[n_out:]
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
    open_set_share: float = 0.5,
) -> CalibrationRecord:
    """Calibrate on the (N, D) ``embeddings`` of one split with their ``labels`` (N,); see the
    module doc. ``score``: use this decision score instead of choosing one; ``open_set_share``: the
    share of classes searched as non-mated while choosing it."""
    if not 0.0 < target_fpir < 1.0:
        raise ValueError(f"target_fpir must be a rate in (0, 1), got {target_fpir!r}")
    if not 0.0 < open_set_share < 1.0:
        raise ValueError(f"open_set_share must be in (0, 1), got {open_set_share!r}")
    check_gallery_distance(distance)
    labels = np.asarray(labels).astype(str)
    emb = np.asarray(embeddings, dtype=np.float32)
    if len(emb) != len(labels):
        raise ValueError(f"{len(emb)} embeddings for {len(labels)} labels")
    dist = _distances(emb, distance)
    fnir = score_fnir(
        dist,
        labels,
        target_fpir=target_fpir,
        depth=depth,
        repeats=repeats,
        seed=seed,
        open_set_share=open_set_share,
    )
    chosen = score or choose_score(fnir)
    profiles = object_profiles(dist, labels, labels)
    n_objects = profiles.shape[1] + 1
    table, curves = size_table(profiles, target_fpir, score=chosen, depth=depth, seed=seed)
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
            "open_set_share": open_set_share,
            "seed": seed,
        },
        non_mated=tuple(curves),
        non_mated_levels=CURVE_LEVELS,
    )


def calibrate_model(
    model: InferenceModel,
    frame: pd.DataFrame,
    *,
    split: str = "val",
    target_fpir: float = 0.05,
    score: str | None = None,
    open_set_share: float = 0.5,
    seed: int = 0,
    batch_size: int = 128,
    device: Any = None,
    num_workers: int = 0,
    progress: bool = False,
) -> CalibrationRecord:
    """Embed every image of ``split`` of a split manifest with ``model`` (in its gallery distance)
    and :func:`calibrate_open_set` on them; the record names the split."""
    import dataclasses

    import torch

    from lookalike.embed import embed_frame

    if not 0.0 < target_fpir < 1.0:  # before the (slow) embedding
        raise ValueError(f"target_fpir must be a rate in (0, 1), got {target_fpir!r}")
    try:
        rows = union_rows(*split_rows(frame, split, queries="all"))
    except ProtocolError as err:
        raise ValueError(str(err)) from None
    labels = rows["label"].astype(str).to_numpy()
    if len(set(labels)) < 4:
        raise ValueError(
            f"split {split!r} has {len(set(labels))} classes; calibration needs at least 4 classes (at least "
            "2 classes enrolled and 2 searched as unknown objects)"
        )
    embedder = model.embedder
    if device is None:
        device = next(iter(embedder.parameters()), torch.empty(0)).device
    emb = embed_frame(
        embedder, rows, batch_size=batch_size, device=device, num_workers=num_workers, progress=progress
    )
    record = calibrate_open_set(
        emb.numpy(),
        labels,
        target_fpir=target_fpir,
        distance=model.distance,
        score=score,
        open_set_share=open_set_share,
        seed=seed,
    )
    return dataclasses.replace(record, figures={**record.figures, "split": split})
