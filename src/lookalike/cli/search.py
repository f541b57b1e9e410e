"""``lookalike search``: which gallery items does each query image look like, and is it one of them?"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from lookalike.cli._model_options import OnnxOption
from lookalike.cli.app import app

if TYPE_CHECKING:
    from lookalike.gallery.matcher import SearchResult

__all__ = ["result_table", "search"]

_STYLE = {"match": "green", "no match": "yellow", "no threshold": "cyan", "error": "red"}


@app.command("search")
def search(
    images: list[Path] = typer.Argument(
        ..., help="Query images (files; a folder stands for the images under it).", show_default=False
    ),
    gallery: str = typer.Option(
        ..., "--gallery", "-g", help="Gallery: a folder, milvus-lite:PATH.db or milvus://HOST:PORT/COLL."
    ),
    k: int = typer.Option(5, "--k", "-k", min=1, help="How many nearest gallery items to list."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per query on stdout (JSON Lines), for scripts."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Match when the decision score is at most this (default: the gallery's)."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Override the gallery's model (it must be the same model)."
    ),
    backbone: str | None = typer.Option(None, "--backbone", help="Override: a frozen backbone by name."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file for --backbone."),
    onnx: OnnxOption = None,
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:N."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
) -> None:
    """Search the gallery for each query image: the top-k and a match / no-match decision."""
    from lookalike.cli._model_options import resolve_cli_device
    from lookalike.gallery.matcher import CalibrationRangeWarning, Matcher

    err = Console(stderr=True)
    queries = _expand(images)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CalibrationRangeWarning)
            matcher = Matcher.open(
                gallery,
                checkpoint=checkpoint,
                backbone=backbone,
                weights=weights,
                onnx=onnx,
                device=resolve_cli_device(device),
                batch_size=batch_size,
                threshold=threshold,
            )
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        typer.echo(f"error: {_message(exc)}", err=True)
        raise typer.Exit(1) from None
    for warning in (w for w in caught if issubclass(w.category, CalibrationRangeWarning)):
        err.print(f"warning: {warning.message}", markup=False, highlight=False, soft_wrap=True)
    with matcher:
        if matcher.threshold is None:
            err.print(
                f"warning: gallery {gallery} has no calibrated threshold, so each query gets the nearest "
                "label with decision 'no threshold'. Set one with `lookalike index set-threshold GALLERY "
                "--threshold VALUE` (or --target-fpir F --calibrate-on SPLIT_MANIFEST), or pass --threshold.",
                highlight=False,
                soft_wrap=True,
            )
        paths = [str(q) for q in queries]
        results = matcher.search(paths, k, names=paths)  # named as given: unique, and scripts can join on it
    out = Console(soft_wrap=True)
    failed = 0
    for result in results:
        if result.decision == "error":
            failed += 1
            typer.echo(f"error: query {result.query}: {result.error}", err=True)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), allow_nan=False))
        elif result.decision != "error":
            out.print(result_table(result))
    if failed:
        typer.echo(f"error: {failed} of {len(results)} queries could not be read", err=True)
        raise typer.Exit(1)


def result_table(result: SearchResult) -> Table:
    """A rich table of one query's neighbours, titled with the decision."""
    style = _STYLE.get(result.decision, "")
    head = f"[{style}]{result.decision}[/{style}]"
    if result.label is not None:
        head += f" [bold]{result.label}[/bold]"
    details = []
    if result.distance is not None:
        details.append(f"distance {result.distance:.4f}")
    if result.score is not None and result.score_name != "nearest":
        details.append(f"{result.score_name} {result.score:.4f}")
    if result.threshold is not None:
        details.append(f"threshold {result.threshold:.4f}")
    if result.margin is not None:
        details.append(f"margin {result.margin:+.4f}")
    title = f"{result.query}: {head}" + (f" ({', '.join(details)})" if details else "")
    table = Table(title=title, title_justify="left")
    longest = max((len(n.label) for n in result.neighbours), default=5)
    table.add_column("rank", justify="right")
    table.add_column("label", no_wrap=True, min_width=min(max(longest, 5), 40))
    table.add_column("distance", justify="right")
    table.add_column("id", no_wrap=True, max_width=14, overflow="ellipsis")
    table.add_column("path", overflow="fold")
    for n in result.neighbours:
        table.add_row(str(n.rank), n.label, f"{n.distance:.4f}", n.id, n.path or "")
    if not result.neighbours:
        table.caption = "the gallery is empty"
    return table


def _expand(paths: list[Path]) -> list[Path]:
    """Folders stand for the image files under them (sorted); files (even unreadable) stay as given."""
    from lookalike.data import is_image_file

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f.name))
            out.extend(found or [p])  # an empty folder is reported as an unreadable query
        else:
            out.append(p)
    return out


def _message(exc: BaseException) -> str:
    """KeyError quotes its message; the others read as they are."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
