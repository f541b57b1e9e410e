"""The last step of training: calibrate the match threshold of ``best.pt`` on the val split.

So that every ``best.pt`` carries a threshold with the figures it was calibrated with (see
:mod:`lookalike.calibration`), and ``metrics.jsonl`` gets those figures as a record with
``"split": "calibration"``. ``eval.target_far: null`` turns the step off; a val split that cannot
calibrate (fewer than 2 classes, no genuine or no impostor comparison) skips it with the reason
logged, and training still succeeds.

The val split also picked ``best.pt``, so these figures are slightly optimistic for new data;
``lookalike calibrate --split S`` recalibrates on any other split.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lookalike.calibration import Calibration, CalibrationError, calibrate_checkpoint, summary
from lookalike.protocol import union_rows

if TYPE_CHECKING:
    import torch
    from rich.console import Console

    from lookalike.config import TrainingConfig
    from lookalike.training.components import Components
    from lookalike.training.history import RunHistory
    from lookalike.training.state import TrainState

__all__ = ["calibrate_best", "calibrate_checkpoint_on_val"]


def calibrate_best(
    c: Components, state: TrainState, *, console: Console
) -> dict[str, float | int | str] | None:
    """Calibrate the run's ``checkpoints/best.pt`` on the val split, store the threshold in it and
    log the figures. Returns them as one flat record (:func:`lookalike.calibration.summary`), or
    None when the step is off or skipped (reason logged). Rank 0 only."""
    result = calibrate_checkpoint_on_val(
        c.run_dir / "checkpoints" / "best.pt",
        c.val,
        c.config,
        history=c.history,
        console=console,
        device=c.device,
        epoch=state.best_epoch,
        step=state.global_step,
    )
    return None if result is None else summary(result)


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
) -> Calibration | None:
    """Calibrate ``checkpoint`` on the val ``(queries, gallery)`` rows, store the threshold in it and
    log the figures in ``history`` (a ``"calibration"`` record). None when off or skipped."""
    target_far = config.eval.target_far
    if target_far is None:
        return None
    record: dict[str, Any] = {
        "epoch": epoch or 0,
        "split": "calibration",
        "calibrated_on": "val",
        "step": step,
    }
    queries, gallery = val
    frame = union_rows(queries, gallery)
    try:
        result = calibrate_checkpoint(
            checkpoint,
            frame,
            split="val",
            target_far=target_far,
            seed=config.data.seed,
            batch_size=config.data.eval_batch_size,
            device=device,
            num_workers=config.data.num_workers,
        )
    except CalibrationError as err:
        console.print(f"match threshold not calibrated: {err}", markup=False, highlight=False)
        history.log_eval({**record, "skipped": str(err)})
        return None
    history.log_eval({**record, **summary(result)})
    console.print(
        f"match threshold {result.threshold.value:.4f} calibrated on val, stored in {Path(checkpoint).name}: "
        f"FAR {result.far:.4f} (target {target_far:g}), TAR {result.tar:.4f}, ROC AUC {result.roc_auc:.4f}, "
        f"EER {result.eer:.4f} ({result.n_genuine} genuine / {result.n_impostor} impostor comparisons)",
        markup=False,
        highlight=False,
    )
    for warning in result.warnings:
        console.print(f"calibration warning: {warning}", markup=False, highlight=False)
    return result
