"""``lookalike demo``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from lookalike.cli.app import app

console = Console()
err_console = Console(stderr=True)


@app.command("demo")
def demo(
    out: Path = typer.Option(
        Path("runs/demo"), "--out", "-o", help="Folder for the data, run, gallery and report."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Your own images: a folder per class, or a manifest (CSV/Parquet: path,label)."
    ),
    data_dir: Path = typer.Option(
        Path("runs/data"), "--data-dir", help="Where built-in and downloaded data sets are kept and reused."
    ),
    dataset: str = typer.Option(
        "glyphs",
        "--dataset",
        help="glyphs (built in, no download), or a public benchmark to download: omniglot, cub, sop.",
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a training config key (repeatable), e.g. --set loss.name=multi_similarity.",
    ),
    classes: int = typer.Option(400, "--classes", help="glyphs: how many characters."),
    per_class: int = typer.Option(20, "--per-class", help="glyphs: images per character."),
    seed: int = typer.Option(0, "--seed", help="glyphs: seed of the rendering (same seed, same images)."),
    left_out: float = typer.Option(0.25, "--left-out", help="Share of test classes left out of the gallery."),
    target_fpir: float = typer.Option(
        0.05,
        "--target-fpir",
        help="FPIR (share of searches for unknown objects answered “match”) the threshold is set for.",
    ),
) -> None:
    """The whole system on one data set: data, split, metrics before, training, metrics after,
    calibration, a gallery, searches with decisions, and report.html."""
    from lookalike.config import ConfigError
    from lookalike.data.builtin import DatasetDownloadError, GlyphsSpec
    from lookalike.demo import run_demo

    try:
        spec = GlyphsSpec(seed=seed, classes=classes, per_class=per_class)
        if data is not None and dataset != "glyphs":
            raise ValueError("give either --data (your images) or --dataset (a named data set), not both")
        run_demo(
            out,
            data=data,
            dataset=dataset,
            spec=spec,
            data_dir=data_dir,
            overrides=overrides,
            left_out=left_out,
            target_fpir=target_fpir,
            console=console,
        )
    except (ConfigError, DatasetDownloadError, FileNotFoundError, FileExistsError, ValueError) as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
