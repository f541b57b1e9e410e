"""The calibration record: what a calibration keeps, and the one way it is written.

A :class:`CalibrationRecord` says which decision score a match is decided on, the target FPIR,
the method, and what sets the threshold for any gallery size (a threshold per gallery size, in
enrolled objects, see :mod:`lookalike.calibration.size_model`), with the range of sizes the
calibration covers. It is stored as a plain dict in a checkpoint's ``extra["calibration"]``
(:func:`write_checkpoint_calibration`) and in a gallery header's ``calibration``
(:func:`set_gallery_calibration`, which also sets the header's threshold for the gallery's size);
:func:`read_calibration` reads it back, and reads the older dicts (one threshold calibrated for a
false accept rate, or given by hand) as a ``"fixed"`` record.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lookalike._io import atomic_path

__all__ = [
    "DECISION_DEPTH",
    "GALLERY_FIGURES",
    "METHODS",
    "RECORD_VERSION",
    "CalibrationRecord",
    "header_calibration",
    "read_calibration",
    "write_checkpoint_calibration",
]

RECORD_VERSION = 2
#: How many nearest items a search retrieves to compute its decision score: the ratio looks this
#: deep for an item of another label, the z-norm takes its cohort here. One search, no second pass.
DECISION_DEPTH = 32
#: ``object-profiles``: a threshold per gallery size (see the size model); ``fixed``: one threshold
#: for every size (calibrated for a false accept rate by an older lookalike); ``given``: by hand.
METHODS: tuple[str, ...] = ("object-profiles", "fixed", "given")
#: The figures a gallery header keeps beside its record when the gallery took part in its threshold
#: (:meth:`lookalike.calibration.adaptive.GalleryFit.figures`); replaced each time the threshold is set again.
GALLERY_FIGURES: tuple[str, ...] = (
    "gallery_probes",
    "gallery_probe_objects",
    "gallery_probed_objects",
    "gallery_probed_items",
    "gallery_weight",
    "calibration_weight",
    "gallery_scores",
)
_FIELDS = ("method", "target_fpir", "score", "distance", "depth", "thresholds", "size_range", "non_mated")


@dataclass(frozen=True)
class CalibrationRecord:
    """A calibration: ``score`` (see :data:`lookalike.metrics.identification.SCORES`) at or under
    the threshold is a match; ``thresholds`` ``((objects, threshold), ...)`` ascending in gallery
    size; ``size_range`` ``(min, max)`` objects the calibration covers (None: not known);
    ``figures``: how it was calibrated (split, counts, FNIR per score on val, ...);
    ``non_mated``: ``((objects, scores), ...)``, for each size the calibration's non-mated scores at
    the FPIR levels ``non_mated_levels`` (what a gallery pools with its own non-mated scores, see
    :mod:`lookalike.calibration.adaptive`; empty in records of older lookalikes)."""

    method: str
    target_fpir: float | None
    thresholds: tuple[tuple[int, float], ...]
    score: str = "nearest"
    distance: str = "euclidean"
    depth: int = DECISION_DEPTH
    size_range: tuple[int, int] | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)
    non_mated: tuple[tuple[int, tuple[float, ...]], ...] = ()
    non_mated_levels: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        from lookalike.metrics.identification import SCORES

        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.score not in SCORES:
            raise ValueError(f"unknown decision score {self.score!r}; valid: {', '.join(SCORES)}")
        if not self.thresholds or any(not math.isfinite(t) for _, t in self.thresholds):
            raise ValueError(f"a calibration needs finite thresholds, got {self.thresholds!r}")
        bad = [n for n, scores in self.non_mated if len(scores) != len(self.non_mated_levels)]
        if bad:
            raise ValueError(
                f"the non-mated scores of sizes {bad} do not have one score per level "
                f"({len(self.non_mated_levels)} levels)"
            )

    def threshold_for(self, n_objects: int) -> float:
        """The threshold for a gallery of ``n_objects`` enrolled objects (distinct labels)."""
        from lookalike.metrics.identification import threshold_for_size

        return threshold_for_size(self.thresholds, n_objects)

    def covers(self, n_objects: int) -> bool:
        """Whether a gallery of ``n_objects`` lies in the size range (True when it is not known)."""
        return self.size_range is None or self.size_range[0] <= n_objects <= self.size_range[1]

    def range_warning(self, n_objects: int) -> str | None:
        """A warning when a gallery of ``n_objects`` is outside the size range, else None."""
        if self.covers(n_objects):
            return None
        lo, hi = self.size_range  # type: ignore[misc]
        return (
            f"the gallery holds {n_objects} objects, outside the {lo}-{hi} objects its calibration covers; "
            f"its FPIR may be off the target {self.target_fpir}: recalibrate (lookalike index set-threshold "
            "--target-fpir F --calibrate-on SPLIT.csv) on a split closer to this size"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: the figures at the top level, then the record's fields. A ``fixed`` or
        ``given`` record read from an older dict is written back as that dict, which older
        lookalikes read too."""
        out: dict[str, Any] = dict(self.figures)
        if self.method != "object-profiles" and "record" not in out:
            return out
        out.update(
            record=RECORD_VERSION,
            method=self.method,
            target_fpir=self.target_fpir,
            score=self.score,
            distance=self.distance,
            depth=int(self.depth),
            thresholds=[[int(n), float(t)] for n, t in self.thresholds],
            size_range=None if self.size_range is None else [int(x) for x in self.size_range],
        )
        if self.non_mated:
            out["non_mated"] = {
                "levels": [float(x) for x in self.non_mated_levels],
                "scores": [[int(n), [float(x) for x in scores]] for n, scores in self.non_mated],
            }
        return out


def read_calibration(
    data: Mapping[str, Any] | None, *, threshold: float | None = None
) -> CalibrationRecord | None:
    """A record from a stored dict (None: None). Dicts of older lookalikes (a ``threshold`` dict with
    ``value`` and ``target_far``; ``{"method": "given"}``; a model's figures with ``source``) become
    ``fixed`` / ``given`` records of their one threshold; ``threshold`` (a header's) stands in when
    the dict has none."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ValueError(f"a calibration must be a dict, got {type(data).__name__}: {data!r}")
    if "record" in data:
        figures = {k: v for k, v in data.items() if k not in (*_FIELDS, "record")}
        size_range = data.get("size_range")
        non_mated = data.get("non_mated") or {}
        return CalibrationRecord(
            method=str(data["method"]),
            target_fpir=None if data.get("target_fpir") is None else float(data["target_fpir"]),
            thresholds=tuple((int(n), float(t)) for n, t in data["thresholds"]),
            score=str(data.get("score", "nearest")),
            distance=str(data.get("distance", "euclidean")),
            depth=int(data.get("depth", DECISION_DEPTH)),
            size_range=None if size_range is None else (int(size_range[0]), int(size_range[1])),
            figures=figures,
            non_mated=tuple((int(n), tuple(float(x) for x in v)) for n, v in non_mated.get("scores", ())),
            non_mated_levels=tuple(float(x) for x in non_mated.get("levels", ())),
        )
    return _legacy(data, threshold)


def _legacy(data: Mapping[str, Any], threshold: float | None) -> CalibrationRecord | None:
    stored = data.get("threshold")
    value = stored.get("value") if isinstance(stored, Mapping) else threshold
    if value is None:
        return None
    target = data.get("target_far")
    return CalibrationRecord(
        method="given" if data.get("method") == "given" else "fixed",
        target_fpir=None if target is None else float(target),
        thresholds=((1, float(value)),),
        distance=str(data.get("distance", "euclidean")),
        figures=dict(data),
    )


def write_checkpoint_calibration(
    checkpoint: str | Path, record: CalibrationRecord, *, out: str | Path
) -> Path:
    """Write ``checkpoint`` again to ``out`` (which may be the same path) with
    ``extra["calibration"] = record.to_dict()``, everything else as it was. Atomic: ``out`` is the old
    file or the new one, never half written."""
    from lookalike.models.checkpoint import CHECKPOINT_FORMAT
    from lookalike.models.inference import CALIBRATION_KEY

    checkpoint = Path(checkpoint)
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{checkpoint} is not a lookalike checkpoint; cannot store a calibration in it")
    extra = dict(payload.get("extra") or {})
    extra[CALIBRATION_KEY] = record.to_dict()
    payload["extra"] = extra
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return Path(out)


def header_calibration(
    record: CalibrationRecord,
    n_objects: int,
    *,
    threshold: float | None = None,
    figures: Mapping[str, Any] | None = None,
) -> tuple[float, dict[str, Any]]:
    """``(threshold, stored dict)`` for a gallery header holding ``n_objects`` objects: ``threshold``
    (default: the record's for that size), and the record with the size it was set for (figure
    ``gallery_objects``) and ``figures`` (how the gallery set it) among its figures."""
    if threshold is None:
        threshold = record.threshold_for(max(int(n_objects), 1))
    if record.method == "object-profiles":
        stale = ("gallery_objects", *GALLERY_FIGURES)  # of the size the threshold was set for before
        kept = {k: v for k, v in record.figures.items() if k not in stale}
        record = dataclasses.replace(
            record, figures={**kept, **dict(figures or {}), "gallery_objects": int(n_objects)}
        )
    return float(threshold), record.to_dict()
