"""``lookalike train``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from lookalike.cli.app import app

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
    from lookalike.config import ConfigError, load_config
    from lookalike.training import fit, load_run_config

    try:
        if resume is not None:
            if config is not None or out is not None:
                raise ConfigError(
                    "--resume RUN continues a run with its own config.yaml: give neither --config nor --out"
                )
            cfg = load_run_config(resume, overrides)
            run_dir = resume
        else:
            if config is None or out is None:
                raise ConfigError("give --config FILE.yaml and --out RUN_DIR (or --resume RUN_DIR)")
            cfg = load_config(config, overrides)
            run_dir = out
    except (ConfigError, FileNotFoundError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    try:
        fit(cfg, run_dir, resume=resume is not None, console=console)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
