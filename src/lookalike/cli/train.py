"""``lookalike train`` and ``lookalike evaluate`` (a checkpoint on a split manifest)."""

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
        [], "--set", help="Override a config key: section.key=value (repeatable), e.g. --set train.epochs=5."
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


@app.command("evaluate")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A lookalike checkpoint (.pt)."),
    manifest: Path = typer.Option(..., "--manifest", help="A split manifest (from `lookalike split`)."),
    split: str = typer.Option("test", "--split", help="Which split's query/gallery rows to evaluate."),
    ks: str = typer.Option("1,10,50,1000", "--ks", help="Comma-separated cut-offs k."),
    distance: str = typer.Option(
        "euclidean", "--distance", help="euclidean, squared_euclidean, cosine or dot."
    ),
    batch_size: int = typer.Option(128, "--batch-size"),
    device: str = typer.Option("auto", "--device"),
    out: Path | None = typer.Option(None, "--out", help="Write the metrics as JSON here."),
) -> None:
    """Embed a split's queries and gallery with a checkpoint and print the retrieval metrics."""
    from lookalike.cli.evaluate import parse_ks, show_and_save_report
    from lookalike.data import read_manifest
    from lookalike.distances import create_distance
    from lookalike.models import load_checkpoint
    from lookalike.training import evaluate_split, resolve_device, split_frames

    try:
        dev = resolve_device(device)
        cutoffs = parse_ks(ks)
        ckpt = load_checkpoint(checkpoint, map_location="cpu")
        frame = read_manifest(manifest)
        queries, gallery = split_frames(frame, split)
        if len(queries) == 0:
            splits = sorted(frame["split"].dropna().unique()) if "split" in frame.columns else []
            raise ValueError(f"split {split!r} has no query rows in {manifest}; splits present: {splits}")
        report = evaluate_split(
            ckpt.embedder.to(dev),
            queries,
            gallery,
            ks=cutoffs,
            distance=create_distance(distance),
            device=dev,
            batch_size=batch_size,
            progress=True,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    show_and_save_report(
        report,
        output=out,
        title=f"{checkpoint} on {manifest} [{split}]",
        console=console,
        extra={
            "checkpoint": str(checkpoint),
            "manifest": str(manifest),
            "split": split,
            "distance": distance,
        },
    )
