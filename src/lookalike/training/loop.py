"""The fit loop, in plain sight.

PK batches -> one backbone for every sample -> (gather across ranks) -> miner -> loss (through the
cross-batch memory if configured) -> AdamW with warm-up + cosine, AMP, clipping, accumulation.
Evaluation on the val query/gallery split before training (the baseline) and every N epochs;
best/last checkpoints; early stopping; exact resume; the test split with the best weights.

The parts, each in its own module: :class:`~lookalike.training.state.TrainState` (where the run
stands), :func:`~lookalike.training.components.build_components` (what the config builds),
:func:`~lookalike.training.epoch.train_epoch`, :func:`~lookalike.training.validation.validate`
(evaluate, keep the best, early stopping) and :mod:`~lookalike.training.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lookalike.config import TrainingConfig, save_config, validate_config
from lookalike.data import SPLIT_FILE, resolve_split, write_manifest
from lookalike.devices import resolve_device
from lookalike.distributed import DistInfo, barrier, cleanup, init_distributed, on_main
from lookalike.evaluation import split_frames
from lookalike.models import Checkpoint, load_checkpoint
from lookalike.training.checkpoints import restore_last, save_last
from lookalike.training.components import build_components
from lookalike.training.epoch import train_epoch
from lookalike.training.rng import seed_everything
from lookalike.training.state import TrainState
from lookalike.training.threshold import calibrate_best
from lookalike.training.validation import (
    evaluate_baseline,
    test_best,
    validate,
    worse_than_baseline_warning,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FitResult", "fit", "load_run_config", "open_run"]


@dataclass
class FitResult:
    """What a finished (or early-stopped) run reports."""

    run_dir: Path
    epochs_done: int
    best_epoch: int | None
    best_value: float | None
    baseline: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    test_baseline: dict[str, float] | None = None
    test: dict[str, float] | None = None
    images_per_second: float = 0.0
    train_seconds: float = 0.0
    calibration: dict[str, Any] | None = None  # best.pt's match decision calibration (calibration_summary)
    worse_than_baseline: bool = False  # the last val evaluation is below the epoch-0 baseline


def fit(
    config: TrainingConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    console: Console | None = None,
    on_step: Callable[[int], None] | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train as ``config`` says, writing the run folder ``run_dir``.

    ``resume=True`` continues from ``run_dir/checkpoints/last.pt`` exactly where it stopped
    (mid-epoch included). ``on_step(global_step)`` is called after every optimizer step (tests use
    it to interrupt a run). ``on_eval(epoch, val_metrics)`` is called on rank 0 after each val
    evaluation, the baseline (epoch 0) included; an exception raised from it (e.g. ``optuna.TrialPruned``
    when tuning) ends the run there, with the run folder as it stands (single process only: under
    ``torchrun`` the other ranks would wait). Under ``torchrun`` every rank calls this; rank 0 writes
    the run folder.
    """
    run_dir = Path(run_dir)
    dist = init_distributed(resolve_device(config.train.device))
    if console is None or not dist.is_main:
        console = Console(quiet=not dist.is_main)
    try:
        if dist.enabled:
            console.print(f"distributed: {dist.world_size} process(es), {dist.backend} on {dist.device.type}")
        frame, checkpoint = open_run(config, run_dir, resume=resume, dist=dist)
        seed_everything(config.train.seed + dist.rank)
        c = build_components(
            config, frame, run_dir=run_dir, dist=dist, checkpoint=checkpoint, console=console
        )
        state = TrainState()
        if checkpoint is not None:
            restore_last(c, state, checkpoint)
            console.print(
                f"resumed {run_dir}: epoch {state.epoch + 1}, batch {state.next_batch}, "
                f"step {state.global_step}"
            )
        else:
            evaluate_baseline(c, state, console=console, on_eval=on_eval)

        with _progress(console, dist) as progress:
            while state.epoch < config.train.epochs and not state.stopped_early:
                record = train_epoch(c, state, progress=progress, on_step=on_step)
                if dist.is_main:
                    c.history.log_epoch(record)
                if state.epoch % config.eval.every == 0 or state.epoch == config.train.epochs:
                    validate(c, state, epoch=state.epoch, console=console, on_eval=on_eval)
                save_last(c, state)
                barrier(dist)

        # ---- training is over. Steps that use the trained model before the final report go here
        # (e.g. calibrating the match decision of checkpoints/best.pt on val for eval.target_fpir).
        calibration = on_main(lambda: calibrate_best(c, state, console=console), dist)
        test = test_best(c, state)
        result = _result(c.history.evals() if dist.is_main else [], state, run_dir, test)
        result.calibration = calibration
        if dist.is_main:
            _final_table(console, config, result)
            _warn_if_worse(console, config, result)
        return result
    finally:
        cleanup(dist)


def open_run(
    config: TrainingConfig, run_dir: Path, *, resume: bool, dist: DistInfo
) -> tuple[pd.DataFrame, Checkpoint | None]:
    """Check the run folder (a new run needs a fresh one; a resumed one its ``last.pt``), write its
    ``config.yaml`` and ``split.csv`` (rank 0), and return the split and the checkpoint to resume.

    Every rank fails alike when rank 0 finds a problem (none is left waiting at a collective)."""
    last = run_dir / "checkpoints" / "last.pt"
    split: list[pd.DataFrame] = []

    def on_rank0() -> None:
        if resume and not last.exists():
            raise FileNotFoundError(f"cannot resume: {last} does not exist (no checkpoint was written yet)")
        if not resume and (run_dir / "metrics.jsonl").exists():
            raise FileExistsError(
                f"run folder {run_dir} already holds a run (metrics.jsonl); "
                f"use --resume {run_dir} or a new --out"
            )
        frame = resolve_split(config.data, run_dir, write=False)
        queries, gallery = split_frames(frame, "val")
        if not len(queries) or not len(gallery):
            n_val = frame.loc[frame["split"] == "val", "label"].nunique()
            raise ValueError(
                f"the split of {config.data.root} has no val queries and gallery ({n_val} val classes): "
                "a run evaluates on val before training and picks checkpoints/best.pt with it; set "
                "data.val > 0 (classes with at least 2 images) or give a split manifest with val rows"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        if not (run_dir / SPLIT_FILE).exists():
            write_manifest(frame, run_dir / SPLIT_FILE)
        split.append(frame)

    on_main(on_rank0, dist)
    frame = split[0] if dist.is_main else resolve_split(config.data, run_dir, write=False)
    checkpoint = load_checkpoint(last, map_location="cpu") if resume else None
    return frame, checkpoint


def _progress(console: Console, dist: DistInfo) -> Progress:
    return Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.1f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not dist.is_main,
        refresh_per_second=2,
        transient=False,
    )


def _result(evals: list[dict], state: TrainState, run_dir: Path, test: dict[str, float] | None) -> FitResult:
    val_records = [r for r in evals if r["split"] == "val"]
    val_final = val_records[-1] if val_records else {}
    return FitResult(
        run_dir=run_dir,
        epochs_done=state.epoch,
        best_epoch=state.best_epoch,
        best_value=state.best_value,
        baseline=state.baseline,
        val={k: v for k, v in val_final.items() if isinstance(v, float)},
        test_baseline=state.test_baseline,
        test=test,
        images_per_second=state.images_per_second,
        train_seconds=state.train_seconds,
    )


def _final_table(console: Console, config: TrainingConfig, result: FitResult) -> None:
    from rich.table import Table

    table = Table(title=f"run {result.run_dir} — best {config.eval.metric} at epoch {result.best_epoch}")
    table.add_column("metric")
    columns = [("val before", result.baseline), ("val last", result.val)]
    if result.test is not None:
        columns += [("test before", result.test_baseline or {}), ("test best", result.test)]
    for name, _ in columns:
        table.add_column(name, justify="right")
    keys = [k for k in result.baseline if "@" in k or k == "r_precision"]
    for key in keys:
        table.add_row(key, *(f"{col.get(key, float('nan')):.4f}" for _, col in columns))
    console.print(table)
    console.print(
        f"trained {result.epochs_done} epochs in {result.train_seconds:.1f} s "
        f"({result.images_per_second:.1f} images/s)"
    )


def _warn_if_worse(console: Console, config: TrainingConfig, result: FitResult) -> None:
    metric = config.eval.metric
    if result.epochs_done == 0 or metric not in result.baseline or metric not in result.val:
        return
    message = worse_than_baseline_warning(
        metric=metric,
        baseline=result.baseline[metric],
        last=result.val[metric],
        best_epoch=result.best_epoch,
        best_value=result.best_value,
        config_path=str(result.run_dir / "config.yaml"),
    )
    result.worse_than_baseline = message is not None
    if message is not None:
        console.print(message, style="bold yellow", markup=False, highlight=False)


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> TrainingConfig:
    """The config a run was started with (``run_dir/config.yaml``), with optional overrides."""
    import yaml

    from lookalike.config import apply_overrides

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {path} is missing")
    raw = yaml.safe_load(path.read_text())
    return validate_config(apply_overrides(raw, overrides or []), source=str(path))
