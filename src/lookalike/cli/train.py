"""``lookalike train``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from lookalike.cli.app import app

if TYPE_CHECKING:
    from lookalike.config import TrainingConfig

console = Console()


@app.command("train")
def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="Training config (YAML)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder to create."),
    resume: Path | None = typer.Option(
        None, "--resume", help="Run folder to continue from its last checkpoint."
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config key: section.key=value (repeatable), e.g. --set train.epochs=5; "
        "section={...} replaces a section, e.g. --set 'loss={name: multi_similarity}'.",
    ),
) -> None:
    """Train an embedder as the config says, tracking retrieval metrics on the val split."""
    from lookalike.training import fit

    cfg, run_dir = _config(config, out, resume, overrides)
    try:
        fit(cfg, run_dir, resume=resume is not None, console=console)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None


def _config(
    config: Path | None, out: Path | None, resume: Path | None, overrides: list[str]
) -> tuple[TrainingConfig, Path]:
    """The run's config and folder from ``--config``/``--out`` or ``--resume`` (exit 2 when wrong);
    a deprecated key is said as a warning line."""
    import warnings

    from lookalike.config import ConfigDeprecationWarning, ConfigError, load_config
    from lookalike.training import load_run_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigDeprecationWarning)
        try:
            if resume is not None:
                if config is not None or out is not None:
                    raise ConfigError(
                        "--resume RUN continues a run with its own config.yaml: give neither --config "
                        "nor --out"
                    )
                cfg, run_dir = load_run_config(resume, overrides), resume
            else:
                if config is None or out is None:
                    raise ConfigError("give --config FILE.yaml and --out RUN_DIR (or --resume RUN_DIR)")
                cfg, run_dir = load_config(config, overrides), out
        except (ConfigError, FileNotFoundError) as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from None
    for w in caught:
        if issubclass(w.category, ConfigDeprecationWarning):
            console.print(f"warning: {w.message}", style="yellow", markup=False, highlight=False)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return cfg, run_dir
