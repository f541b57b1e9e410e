"""``lookalike manifest`` and ``lookalike split``: thin wrappers over :mod:`lookalike.data`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from lookalike.cli.app import app
from lookalike.data import (
    FORMATS,
    PROTOCOLS,
    SplitResult,
    check_values,
    detect_format,
    drop_problems,
    file_sha256,
    find_problems,
    import_manifest,
    read_manifest,
    split_manifest,
    write_manifest,
)

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    _err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code=1)


def _describe(frame: pd.DataFrame) -> str:
    return f"{len(frame)} images of {frame['label'].nunique()} classes"


@app.command("manifest")
def manifest(
    source: Path = typer.Argument(
        ..., help="A folder (class folders, or a CUB / SOP / In-Shop layout) or a manifest file to check."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest to write: .csv or .parquet."),
    format: str = typer.Option("auto", "--format", "-f", help=f"Layout of SOURCE: {', '.join(FORMATS)}."),
    verify: bool = typer.Option(
        False, "--verify", help="Open every image; report missing, undecodable, unlabelled, duplicated rows."
    ),
    drop_invalid: bool = typer.Option(
        False,
        "--drop-invalid",
        help="With problems found, write the manifest without those rows (implies --verify).",
    ),
) -> None:
    """Build a manifest (path, label[, split, role]) from SOURCE and write it to OUT."""
    try:
        fmt = detect_format(source) if format == "auto" else format
        frame = import_manifest(source, format=fmt)
        if verify or drop_invalid:
            problems = find_problems(frame)
            for problem in problems:
                _err.print(str(problem), markup=False, highlight=False)
            if problems and not drop_invalid:
                raise _fail(
                    f"{len(problems)} invalid row(s) in {_describe(frame)}; nothing written to {str(out)!r}. "
                    "Fix them, or pass --drop-invalid to write the manifest without them"
                )
            if problems:
                frame = drop_problems(frame, problems)
                _out.print(
                    f"dropped {len(problems)} invalid row(s): {[p.row for p in problems]}", markup=False
                )
        else:
            check_values(frame, source=f"manifest from {str(source)!r}")
        if len(frame) == 0:
            raise _fail(f"no valid rows left in {str(source)!r}; nothing written")
        written = write_manifest(frame, out)
    except ValueError as exc:  # ManifestError and argument errors: the message says what and why
        raise _fail(str(exc)) from None
    _out.print(f"{fmt}: wrote {_describe(frame)} to {written}", markup=False, highlight=False)


def _summary_table(result: SplitResult) -> Table:
    table = Table(title=f"split (protocol {result.protocol}, seed {result.seed})")
    for column in ("split", "role", "classes", "images"):
        table.add_column(column, justify="left" if column in ("split", "role") else "right")
    for row in result.summary.itertuples(index=False):
        table.add_row(row.split, row.role, str(row.classes), str(row.images))
    return table


@app.command("split")
def split(
    manifest: Path = typer.Argument(..., help="Manifest to split (.csv or .parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Split manifest to write: .csv or .parquet."),
    val: float = typer.Option(0.1, "--val", help="Fraction of the evaluable classes for validation."),
    test: float = typer.Option(0.2, "--test", help="Fraction of the evaluable classes for test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the class and query draws."),
    queries_per_class: int = typer.Option(1, "--queries-per-class", help="Queries per val/test class."),
    protocol: str = typer.Option(
        "query-gallery", "--protocol", help=f"Evaluation roles: {', '.join(PROTOCOLS)}."
    ),
    keep_benchmark_split: bool = typer.Option(
        False, "--keep-benchmark-split", help="Keep the manifest's own split column (CUB, SOP, In-Shop)."
    ),
) -> None:
    """Add class-disjoint `split` (train/val/test) and `role` (train/query/gallery) columns."""
    try:
        frame = read_manifest(manifest)
        result = split_manifest(
            frame,
            val=val,
            test=test,
            seed=seed,
            queries_per_class=queries_per_class,
            protocol=protocol,
            keep_benchmark_split=keep_benchmark_split,
            source_sha256=file_sha256(manifest),
        )
        written = write_manifest(result.frame, out)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _out.print(_summary_table(result))
    if result.n_classes_too_small:
        where = "kept as gallery only" if keep_benchmark_split else "put in train"
        _out.print(
            f"{result.n_classes_too_small} class(es) too small to evaluate, {where}: "
            f"{list(result.too_small_classes[:10])}{' ...' if result.n_classes_too_small > 10 else ''}",
            markup=False,
        )
    _out.print(
        f"wrote {_describe(result.frame)} to {written} (source sha256 {result.source_sha256})",
        markup=False,
        highlight=False,
    )
