"""Calibrating the match threshold on a validation split, open set included.

The decision a gallery search makes is "the nearest item is close enough: it is that object" or
"no match". Its threshold is chosen on the val split (classes never trained on) like this:

1. A seeded share of the val classes (``open_set_share``) is *held out*: their images stay queries
   but leave the gallery, so their nearest gallery item is always of another class. These are the
   open-set impostors that real use meets (an object nobody has enrolled).
2. Each query's nearest gallery item gives one comparison (its distance): *genuine* when the item
   has the query's class, *impostor* otherwise (a held-out class, or a known class whose nearest
   item is of a wrong class: accepting it would name the wrong object).
3. The threshold is the loosest whose false accept rate (FAR, accepted impostors / impostors) on
   these comparisons is at most ``target_far``
   (:func:`lookalike.metrics.verification.calibrate_threshold`); ROC AUC, EER and TAR@FAR are
   reported with it.

Queries: with ``queries="all"`` (the default) every image of the split is a query against the other
gallery images (never itself), which gives many more comparisons than the one or few designated
query images per class; ``queries="roles"`` uses only the rows whose role is query.

:func:`calibrate_split` embeds a split of a split manifest and calibrates; :func:`calibrate_embeddings`
does the maths on embeddings; :func:`store_calibration` writes the result into a checkpoint's
``extra["calibration"]``, where :func:`lookalike.models.load_inference_model` reads it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lookalike.calibration.record import CalibrationRecord, write_checkpoint_calibration
from lookalike.metrics.verification import Threshold, calibrate_threshold, eer, roc_auc, tar_at_far
from lookalike.protocol import GALLERY_DISTANCES, ProtocolError, QueryMode, gallery_topk, union_rows
from lookalike.protocol import split_rows as protocol_split_rows

if TYPE_CHECKING:
    import pandas as pd

    from lookalike.models import Embedder
    from lookalike.models.inference import InferenceModel

__all__ = [
    "DISTANCES",
    "Calibration",
    "CalibrationError",
    "calibrate_checkpoint",
    "calibrate_embeddings",
    "calibrate_split",
    "held_out_classes",
    "store_calibration",
    "summary",
]

#: The distances a threshold is calibrated in: the gallery's (:data:`lookalike.protocol.GALLERY_DISTANCES`).
DISTANCES: tuple[str, ...] = GALLERY_DISTANCES


class CalibrationError(ValueError):
    """The data cannot calibrate a threshold (no such split, fewer than 2 classes, ...)."""


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold and the figures it came with.

    Attributes:
        threshold: the match threshold (accept when nearest distance <= ``threshold.value``).
        roc_auc, eer: over all thresholds, on the comparisons.
        tar_at_far: TAR at the loosest threshold with FAR <= ``target_far`` (equals ``tar``).
        far, tar: of the chosen threshold on the comparisons.
        target_far: the FAR asked for.
        n_genuine, n_impostor: comparisons of each kind; ``n_open_set`` of the impostors are queries
            of held-out classes.
        n_queries, n_classes, n_held_out_classes: the split's size in queries and classes.
        open_set_share, seed: how the held-out classes were drawn.
        distance: the distance of the comparisons.
        split: the split name (set by :func:`calibrate_split`).
        warnings: what limits these figures (e.g. too few impostors to resolve the target FAR).
    """

    threshold: Threshold
    roc_auc: float
    eer: float
    tar_at_far: float
    far: float
    tar: float
    target_far: float
    n_genuine: int
    n_impostor: int
    n_open_set: int
    n_queries: int
    n_classes: int
    n_held_out_classes: int
    open_set_share: float
    seed: int
    distance: str
    split: str | None = None
    queries: str = "all"
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain python types, the form stored in a checkpoint's ``extra["calibration"]``."""
        out = dataclasses.asdict(self)
        out["threshold"] = dataclasses.asdict(self.threshold)
        out["warnings"] = list(self.warnings)
        return out

    def to_record(self) -> CalibrationRecord:
        """The record of this one threshold (method ``fixed``; these figures kept with it)."""
        return CalibrationRecord(
            method="fixed",
            target_fpir=None,
            thresholds=((1, float(self.threshold.value)),),
            distance=self.distance,
            figures=self.to_dict(),
        )


def held_out_classes(classes: np.ndarray | list[str], share: float, seed: int) -> list[str]:
    """The classes whose gallery items are left out: ``round(share * n)`` of the sorted unique
    ``classes`` (at least 1 when ``share > 0``, at most n - 1), drawn by a permutation seeded with
    ``seed``: the same classes for the same seed whatever the row order."""
    if not 0.0 <= share < 1.0:
        raise CalibrationError(f"open_set_share must be in [0, 1), got {share!r}")
    unique = sorted({str(c) for c in classes})
    n = len(unique)
    if share == 0.0 or n == 0:
        return []
    count = min(max(1, round(share * n)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return sorted(unique[i] for i in order[:count])


def calibrate_embeddings(
    query_embeddings: torch.Tensor | np.ndarray,
    query_labels: np.ndarray | list[str],
    gallery_embeddings: torch.Tensor | np.ndarray,
    gallery_labels: np.ndarray | list[str],
    *,
    target_far: float = 0.01,
    open_set_share: float = 0.5,
    seed: int = 0,
    distance: str = "euclidean",
    query_ids: np.ndarray | None = None,
    gallery_ids: np.ndarray | None = None,
) -> Calibration:
    """Calibrate on embeddings: (Nq, D) queries and (Ng, D) gallery with their labels.

    ``query_ids``/``gallery_ids`` (integer row ids) keep an image that is both query and gallery
    from being its own nearest item. ``distance``: one of :data:`DISTANCES`. See the module doc for
    the procedure.
    """
    _check_rates(target_far, open_set_share)
    if distance not in DISTANCES:
        raise CalibrationError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    ql = np.asarray([str(x) for x in np.asarray(query_labels).tolist()], dtype=object)
    classes = sorted(set(ql.tolist()))
    if len(classes) < 2:
        raise CalibrationError(
            f"calibration needs queries of at least 2 classes (one held out of the gallery as the "
            f"unknown object, one kept), found {len(classes)}: {classes}"
        )
    held = held_out_classes(classes, open_set_share, seed)
    values, genuine, open_set = _nearest_comparisons(
        query_embeddings, ql, gallery_embeddings, gallery_labels, held, distance, query_ids, gallery_ids
    )
    threshold = calibrate_threshold(values, genuine, target_far=target_far)
    n_gen, n_imp = int(genuine.sum()), int((~genuine).sum())
    warnings = []
    if n_imp * target_far < 1.0:
        warnings.append(
            f"only {n_imp} impostor comparisons: the smallest non-zero FAR they can measure is "
            f"{1 / n_imp:.3g}, above the target {target_far}; the threshold accepts no impostor of this "
            "set, and its true FAR is uncertain (use a larger val split)"
        )
    return Calibration(
        threshold=threshold,
        roc_auc=roc_auc(values, genuine),
        eer=eer(values, genuine),
        tar_at_far=float(tar_at_far(values, genuine, [target_far])[0]),
        far=threshold.far,
        tar=threshold.tar,
        target_far=float(target_far),
        n_genuine=n_gen,
        n_impostor=n_imp,
        n_open_set=int(open_set.sum()),
        n_queries=len(values),
        n_classes=len(classes),
        n_held_out_classes=len(held),
        open_set_share=float(open_set_share),
        seed=int(seed),
        distance=distance,
        warnings=tuple(warnings),
    )


def _nearest_comparisons(
    query_embeddings: torch.Tensor | np.ndarray,
    ql: np.ndarray,
    gallery_embeddings: torch.Tensor | np.ndarray,
    gallery_labels: np.ndarray | list[str],
    held: list[str],
    distance: str,
    query_ids: np.ndarray | None,
    gallery_ids: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's nearest kept gallery item: (distance, genuine, query of a held-out class), for
    the queries that have one; raises when either kind of comparison is missing."""
    gl = np.asarray([str(x) for x in np.asarray(gallery_labels).tolist()], dtype=object)
    keep = ~np.isin(gl, held)
    if not keep.any():
        raise CalibrationError("no gallery item is left once the held-out classes are removed")
    q = torch.as_tensor(np.asarray(query_embeddings, dtype=np.float32))
    g = torch.as_tensor(np.asarray(gallery_embeddings, dtype=np.float32))[torch.as_tensor(keep)]
    ids_kw: dict[str, Any] = {}
    if query_ids is not None and gallery_ids is not None:
        ids_kw = {"query_ids": np.asarray(query_ids), "gallery_ids": np.asarray(gallery_ids)[keep]}
    values, idx = gallery_topk(q, g, 1, distance=distance, **ids_kw)
    values, idx = values[:, 0], idx[:, 0]
    has_neighbour = idx >= 0  # a query whose only gallery item was itself has none
    nearest_label = np.where(has_neighbour, gl[keep][np.maximum(idx, 0)], None)
    genuine = (nearest_label == ql)[has_neighbour].astype(bool)
    values = values[has_neighbour]
    n_gen, n_imp = int(genuine.sum()), int((~genuine).sum())
    if n_gen == 0 or n_imp == 0:
        kind = "genuine (nearest item of the query's class)" if n_gen == 0 else "impostor"
        raise CalibrationError(
            f"no {kind} comparison among the {len(values)} queries: a threshold cannot be placed; "
            "use a split with more classes and images (or a different --open-set-share)"
        )
    return values, genuine, np.isin(ql, held)[has_neighbour]


def split_rows(frame: pd.DataFrame, split: str, queries: QueryMode) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(queries, gallery) rows of ``split`` for calibration (see the module doc for ``queries``):
    :func:`lookalike.protocol.split_rows`, its errors as CalibrationError."""
    try:
        return protocol_split_rows(frame, split, queries=queries)
    except ProtocolError as err:
        raise CalibrationError(str(err)) from None


def calibrate_split(
    model: InferenceModel | Embedder,
    frame: pd.DataFrame,
    *,
    distance: str | None = None,
    split: str = "val",
    target_far: float = 0.01,
    open_set_share: float = 0.5,
    seed: int = 0,
    queries: QueryMode = "all",
    batch_size: int = 128,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> Calibration:
    """Embed the rows of ``split`` of a split manifest ``frame`` with ``model`` and calibrate.

    ``model``: an :class:`~lookalike.models.inference.InferenceModel` (its ``distance`` is used) or an
    Embedder (``distance``, default ``"euclidean"``). The frame's index is the row id (as from
    :func:`lookalike.data.read_manifest`), so that an image is never compared with itself.
    """
    from lookalike.embed import embed_frame

    _check_rates(target_far, open_set_share)  # before the (slow) embedding
    query_rows, gallery_rows = split_rows(frame, split, queries)
    if len(query_rows) == 0 or len(gallery_rows) == 0:
        raise CalibrationError(
            f"split {split!r} has {len(query_rows)} query and {len(gallery_rows)} gallery rows; need both"
        )
    union = union_rows(query_rows, gallery_rows)
    embedder = model.embedder if hasattr(model, "fingerprint") else model
    if distance is None:
        distance = getattr(model, "distance", "euclidean")
    if device is None:
        device = next(iter(embedder.parameters()), torch.empty(0)).device
    emb = embed_frame(
        embedder,
        union,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
    )
    position = {row: i for i, row in enumerate(union.index)}
    result = calibrate_embeddings(
        emb[[position[r] for r in query_rows.index]],
        query_rows["label"].astype(str).to_numpy(),
        emb[[position[r] for r in gallery_rows.index]],
        gallery_rows["label"].astype(str).to_numpy(),
        target_far=target_far,
        open_set_share=open_set_share,
        seed=seed,
        distance=distance,
        query_ids=query_rows.index.to_numpy(np.int64, copy=True),
        gallery_ids=gallery_rows.index.to_numpy(np.int64, copy=True),
    )
    return dataclasses.replace(result, split=split, queries=queries)


def store_calibration(checkpoint: str | Path, calibration: Calibration, *, out: str | Path) -> Path:
    """Write ``checkpoint`` again to ``out`` (which may be the same path) with
    ``extra["calibration"] = calibration.to_dict()``; everything else is kept as it was.
    Atomic: ``out`` is either the old file or the new one, never half written."""
    try:
        return write_checkpoint_calibration(checkpoint, calibration.to_record(), out=out)
    except ValueError as err:
        raise CalibrationError(str(err)) from None


def calibrate_checkpoint(
    checkpoint: str | Path,
    frame: pd.DataFrame,
    *,
    split: str = "val",
    target_far: float = 0.01,
    open_set_share: float = 0.5,
    seed: int = 0,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> Calibration:
    """Calibrate the model of ``checkpoint`` on ``split`` of ``frame`` and store the result in the
    checkpoint itself (atomically): what training does with ``best.pt`` at its end."""
    from lookalike.models.inference import load_inference_model

    _check_rates(target_far, open_set_share)
    model = load_inference_model(checkpoint=checkpoint, device=device)
    result = calibrate_split(
        model,
        frame,
        split=split,
        target_far=target_far,
        open_set_share=open_set_share,
        seed=seed,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    store_calibration(checkpoint, result, out=checkpoint)
    return result


def summary(calibration: Calibration) -> dict[str, float | int | str]:
    """The figures of a calibration as one flat record (for metrics.jsonl and reports)."""
    c = calibration
    return {
        "threshold": c.threshold.value,
        "far": c.far,
        "tar": c.tar,
        "target_far": c.target_far,
        "tar_at_far": c.tar_at_far,
        "roc_auc": c.roc_auc,
        "eer": c.eer,
        "n_genuine": c.n_genuine,
        "n_impostor": c.n_impostor,
        "n_open_set": c.n_open_set,
        "distance": c.distance,
    }


def _check_rates(target_far: float, open_set_share: float) -> None:
    if not 0.0 < target_far < 1.0 or math.isnan(target_far):
        raise CalibrationError(f"target_far must be a rate in (0, 1), got {target_far!r}")
    if not 0.0 <= open_set_share < 1.0:
        raise CalibrationError(f"open_set_share must be in [0, 1), got {open_set_share!r}")
