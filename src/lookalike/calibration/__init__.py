"""Calibrating the match decision: which decision score, and which threshold for a gallery.

- :mod:`~lookalike.calibration.open_set`: the calibration for a target FPIR at any gallery size
  (the decision score chosen on val, a threshold per gallery size) that ``lookalike calibrate``,
  ``lookalike index`` and training use.
- :mod:`~lookalike.calibration.size_model`: the non-mated decision score on a gallery of n objects,
  from each search's per-object distances.
- :mod:`~lookalike.calibration.adaptive`: the threshold a gallery uses: the calibration pooled with
  the gallery's own images searched as non-mated.
- :mod:`~lookalike.calibration.record`: :class:`CalibrationRecord`, the one form a calibration is
  kept in (a checkpoint's ``extra["calibration"]``, a gallery header), its one writer for each, and
  the reader that also opens the older records (one threshold calibrated for a false accept rate,
  or given by hand) as ``fixed`` / ``given`` records.
"""

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
    "CalibrationRecord",
    "calibrate_open_set",
    "choose_score",
    "header_calibration",
    "read_calibration",
    "score_fnir",
    "write_checkpoint_calibration",
]
