"""Calibrating the match decision: which decision score, and which threshold for a gallery.

- :mod:`~lookalike.calibration.open_set`: the calibration for a target FPIR at any gallery size
  (the decision score chosen on val, a threshold per gallery size) that ``lookalike calibrate``,
  ``lookalike index`` and training use.
- :mod:`~lookalike.calibration.size_model`: the non-mated decision score on a gallery of n objects,
  from each search's per-object distances.
- :mod:`~lookalike.calibration.record`: :class:`CalibrationRecord`, the one form a calibration is
  kept in (a checkpoint's ``extra["calibration"]``, a gallery header), its one writer for each, and
  the reader that also opens the older records.
- :mod:`~lookalike.calibration.far`: one threshold for a false accept rate on nearest-item
  comparisons (the older procedure, kept for its Python API and figures).
"""

from lookalike.calibration.far import (
    DISTANCES,
    Calibration,
    CalibrationError,
    calibrate_checkpoint,
    calibrate_embeddings,
    calibrate_split,
    held_out_classes,
    split_rows,
    store_calibration,
    summary,
)
from lookalike.calibration.open_set import calibrate_open_set, choose_score, score_fnir
from lookalike.calibration.record import (
    DECISION_DEPTH,
    CalibrationRecord,
    header_calibration,
    read_calibration,
    write_checkpoint_calibration,
)

__all__ = [
    "DECISION_DEPTH",
    "DISTANCES",
    "Calibration",
    "CalibrationError",
    "CalibrationRecord",
    "calibrate_checkpoint",
    "calibrate_embeddings",
    "calibrate_open_set",
    "calibrate_split",
    "choose_score",
    "header_calibration",
    "held_out_classes",
    "read_calibration",
    "score_fnir",
    "split_rows",
    "store_calibration",
    "summary",
    "write_checkpoint_calibration",
]
