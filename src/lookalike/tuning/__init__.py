"""Hyper-parameter search on the val split (``lookalike tune``): Optuna over training configs.

:func:`tune` plans the study (checking every input before anything is written), runs or resumes it,
and writes the results. The parts: :mod:`~lookalike.tuning.space` (what may vary),
:mod:`~lookalike.tuning.study` (the study and its trials), :mod:`~lookalike.tuning.report` (best.yaml,
trials.csv, plots, the terminal table).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from lookalike.tuning.report import (
    TuneSummary,
    print_summary,
    summarize,
    write_best_config,
    write_plots,
    write_trials_csv,
)
from lookalike.tuning.space import Dimension, LossSpace, SearchSpace, default_space, load_space, parse_space
from lookalike.tuning.study import TunePlan, prepare_tune, run_study

__all__ = [
    "Dimension",
    "LossSpace",
    "SearchSpace",
    "TunePlan",
    "TuneSummary",
    "default_space",
    "finish_tune",
    "load_space",
    "parse_space",
    "prepare_tune",
    "run_study",
    "tune",
]


def finish_tune(plan: TunePlan, study, *, console: Console) -> TuneSummary:
    """Write ``trials.csv``, ``best.yaml`` and the plots of ``study``, and print the summary."""
    summary = summarize(study)
    write_trials_csv(study, plan.out / "trials.csv")
    summary.best_yaml = write_best_config(plan, study, summary)
    paths, notes = write_plots(study, plan.out / "plots")
    summary.plots, summary.plot_notes = tuple(paths), tuple(notes)
    print_summary(console, plan, study, summary)
    return summary


def tune(
    config: str | Path,
    out: str | Path,
    *,
    trials: int,
    overrides: Sequence[str] = (),
    space: str | Path | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    metric: str | None = None,
    budget_minutes: float | None = None,
    keep_checkpoints: bool = False,
    console: Console | None = None,
) -> TuneSummary:
    """Tune ``config`` on its val split with ``trials`` trials in total (resuming ``out`` when it
    holds this tune), then write ``best.yaml``, ``trials.csv`` and ``plots/`` there."""
    console = console or Console()
    plan = prepare_tune(
        config,
        out,
        trials=trials,
        overrides=overrides,
        space_path=space,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        metric=metric,
        budget_minutes=budget_minutes,
        keep_checkpoints=keep_checkpoints,
    )
    study = run_study(plan, console=console)
    return finish_tune(plan, study, console=console)
