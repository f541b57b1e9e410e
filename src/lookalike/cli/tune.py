"""``lookalike tune``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from lookalike.cli.app import app

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


@app.command("tune")
def tune(
    config: Path = typer.Option(..., "--config", "-c", help="Base training config (YAML)."),
    trials: int = typer.Option(
        ..., "--trials", "-n", help="Trials in total, trial 0 (untrained) and 1 (base) included."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Tune folder: new, or the folder of the tune to resume."
    ),
    budget_minutes: float | None = typer.Option(
        None,
        "--budget-minutes",
        help="Start no new trial after this many minutes; the outputs are still written.",
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a base config key: section.key=value (repeatable)."
    ),
    space: Path | None = typer.Option(
        None, "--space", help="Search space YAML (params + losses); default: derived from the base config."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Epochs per trial (default: the base's train.epochs)."
    ),
    steps_per_epoch: int | None = typer.Option(
        None, "--steps-per-epoch", help="Batches per trial epoch (default: the base's train.steps_per_epoch)."
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="Val metric to maximise (default: eval.metric)."
    ),
    keep_checkpoints: bool = typer.Option(
        False,
        "--keep-checkpoints",
        help="Keep every trial's checkpoints (default: only the best trial's best.pt).",
    ),
) -> None:
    """Search training hyper-parameters with Optuna on the val split (trial 0: untrained; trial 1: the
    base config), then write best.yaml, trials.csv and plots into --out. Rerun to resume."""
    from lookalike.config import ConfigError
    from lookalike.tuning import tune as run_tune

    try:  # a failing trial does not raise (it is recorded as failed): these are the inputs' errors
        summary = run_tune(
            config,
            out,
            trials=trials,
            overrides=overrides,
            space=space,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            metric=metric,
            budget_minutes=budget_minutes,
            keep_checkpoints=keep_checkpoints,
            console=console,
        )
    except (ConfigError, FileNotFoundError, ValueError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    if summary.best_number is None:
        raise typer.Exit(1)
