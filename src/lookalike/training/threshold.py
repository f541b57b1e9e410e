"""The last step of training: calibrate the match decision of ``best.pt`` on the val split.

The calibration is the one ``lookalike calibrate --target-fpir`` runs
(:func:`lookalike.calibration.open_set.calibrate_model`, seeded with ``data.seed``): every val image
is a search against the others, the decision score is chosen by FNIR at ``eval.target_fpir``, and a
threshold is kept for every gallery size (the FPIR of a threshold grows with the gallery). The
record is written into ``best.pt`` by :func:`lookalike.calibration.write_checkpoint_calibration`,
so a gallery built from ``best.pt`` sets its threshold for its own size; ``metrics.jsonl`` gets its
figures as one record with ``"split": "calibration"`` (:func:`calibration_summary`).

``eval.target_fpir: null`` turns the step off; a val split that cannot calibrate (fewer than 4
classes: 2 enrolled and 2 searched as unknown objects) skips it with the reason logged, and
training still succeeds.

The val split also picked ``best.pt``, so these figures are slightly optimistic for new data;
``lookalike calibrate --split S`` recalibrates on any other split.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lookalike.calibration import CalibrationRecord, write_checkpoint_calibration
from lookalike.protocol import union_rows

if TYPE_CHECKING:
    import torch
    from rich.console import Console

    from lookalike.config import TrainingConfig
    from lookalike.training.components import Components
    from lookalike.training.history import RunHistory
    from lookalike.training.state import TrainState

__all__ = ["calibrate_best", "calibrate_checkpoint_on_val", "calibration_summary"]


def calibrate_best(c: Components, state: TrainState, *, console: Console) -> dict[str, Any] | None:
    """Calibrate the run's ``checkpoints/best.pt`` on the val split, store the record in it and log
    the figures. Returns them as one record (:func:`calibration_summary`), or None when the step is
    off or skipped (reason logged). Rank 0 only."""
    record = calibrate_checkpoint_on_val(
        c.run_dir / "checkpoints" / "best.pt",
        c.val,
        c.config,
        history=c.history,
        console=console,
        device=c.device,
        epoch=state.best_epoch,
        step=state.global_step,
    )
    return None if record is None else calibration_summary(record)


def calibrate_checkpoint_on_val(
    checkpoint: str | Path,
    val: tuple[pd.DataFrame, pd.DataFrame],
    config: TrainingConfig,
    *,
    history: RunHistory,
    console: Console,
    device: torch.device | str,
    epoch: int | None,
    step: int,
) -> CalibrationRecord | None:
    """Calibrate ``checkpoint`` on every image of the val ``(queries, gallery)`` rows for
    ``config.eval.target_fpir``, store the record in it and log the figures in ``history`` (a
    ``"calibration"`` record). None when off or skipped."""
    from lookalike.calibration.open_set import calibrate_model
    from lookalike.models.inference import load_inference_model

    target = config.eval.target_fpir
    if target is None:
        return None
    head: dict[str, Any] = {"epoch": epoch or 0, "split": "calibration", "calibrated_on": "val", "step": step}
    model = load_inference_model(checkpoint=checkpoint, device=device)
    try:
        record = calibrate_model(
            model,
            union_rows(*val),
            split="val",
            target_fpir=target,
            seed=config.data.seed,
            batch_size=config.data.eval_batch_size,
            device=device,
            num_workers=config.data.num_workers,
        )
    except ValueError as err:
        console.print(f"match decision not calibrated: {err}", markup=False, highlight=False)
        history.log_eval({**head, "target_fpir": target, "skipped": str(err)})
        return None
    write_checkpoint_calibration(checkpoint, record, out=checkpoint)
    figures = calibration_summary(record)
    history.log_eval({**head, **figures})
    console.print(_console_line(figures, Path(checkpoint).name), markup=False, highlight=False)
    return record


def calibration_summary(record: CalibrationRecord) -> dict[str, Any]:
    """The figures of an open-set calibration as one record (for metrics.jsonl and reports), in FRVT
    names: ``target_fpir``, the decision ``score``, the ``threshold`` for a gallery of the
    calibration's own number of objects (``calibration_objects``), the ``size_range`` of galleries
    (in objects) it covers, ``fnir_at_target`` (FNIR at the target FPIR of each score on val, the
    figure the score was chosen by), ``calibration_images``, ``distance`` and ``method``."""
    f = record.figures
    n_objects = int(f["calibration_objects"])
    return {
        "method": record.method,
        "target_fpir": record.target_fpir,
        "score": record.score,
        "threshold": record.threshold_for(n_objects),
        "calibration_objects": n_objects,
        "calibration_images": int(f["calibration_images"]),
        "size_range": None if record.size_range is None else list(record.size_range),
        "fnir_at_target": dict(f["fnir_at_target"]),
        "distance": record.distance,
    }


def _console_line(figures: dict[str, Any], where: str) -> str:
    lo, hi = figures["size_range"]
    fnir = ", ".join(f"{score} {value:.4f}" for score, value in figures["fnir_at_target"].items())
    return (
        f"match decision calibrated on val for FPIR {figures['target_fpir']:g}, stored in {where}: "
        f"decision score {figures['score']}, threshold {figures['threshold']:.4f} for a gallery of "
        f"{figures['calibration_objects']} objects (the val split's), galleries of {lo}-{hi} objects "
        f"covered; FNIR at the target FPIR: {fnir} ({figures['calibration_objects']} objects / "
        f"{figures['calibration_images']} images)"
    )
