"""``lookalike evaluate`` (a model on a split manifest) and ``lookalike evaluate-embeddings``
(retrieval metrics over saved embeddings).

``lookalike evaluate --checkpoint CKPT --manifest SPLIT.csv`` measures a trained model;
``lookalike evaluate --backbone NAME [--weights FILE] --manifest SPLIT.csv`` the frozen pretrained
backbone: the transfer-learning baseline of a data set in one command.

Also the pieces both reuse: :func:`metrics_table` (a rich
table of the metrics by k), :func:`report_payload` (the JSON document) and
:func:`write_json_atomic`, and :func:`show_and_save_report` that does all three.

The formats ``evaluate-embeddings`` reads are those of :mod:`lookalike.evaluation.tables`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from lookalike._io import atomic_write_text
from lookalike.cli._model_options import (
    BackboneOption,
    CheckpointOption,
    DeviceOption,
    ImageSizeOption,
    ModelOptions,
    OnnxOption,
    PretrainedOption,
    WeightsOption,
)
from lookalike.cli._open_set import (
    DetPlotOption,
    DistractorsOption,
    DrawsOption,
    GallerySizesOption,
    NonMatedShareOption,
    OpenSetOptions,
    SeedOption,
    SizesPlotOption,
    run_open_set,
)
from lookalike.cli.app import app
from lookalike.evaluation.tables import evaluate_embeddings, load_embeddings
from lookalike.metrics.retrieval import METRICS_AT_K, RetrievalReport

__all__ = [
    "metrics_table",
    "report_payload",
    "show_and_save_report",
    "write_json_atomic",
]


def metrics_table(report: RetrievalReport, *, title: str | None = None) -> Table:
    """A rich table of a report: one row per k (hit_rate, recall, precision, map), then MAP@R and
    R-precision, and a caption with the query counts and any clamped k."""
    table = Table(title=title)
    table.add_column("k", justify="right")
    for name in METRICS_AT_K:
        table.add_column(name, justify="right")
    for k, e in zip(report.ks, report.effective_ks, strict=True):
        label = f"{k}" if k == e else f"{k} (→{e})"
        table.add_row(label, *(_fmt(report.metrics[f"{m}@{k}"]) for m in METRICS_AT_K))
    table.add_section()
    table.add_row("map@r", _fmt(report.metrics["map@r"]), "", "", "")
    table.add_row("r_precision", _fmt(report.metrics["r_precision"]), "", "", "")
    caption = [f"{report.n_queries} queries"]
    if report.n_queries_without_gallery:
        caption.append(
            f"{report.n_queries_without_gallery} without any gallery item of their class (not averaged)"
        )
    if report.clamped_ks:
        caption.append("k clamped to the gallery size: " + ", ".join(map(str, report.clamped_ks)))
    table.caption = "; ".join(caption)
    return table


def report_payload(report: RetrievalReport, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document for a report: flat ``metrics`` and the counts; ``extra`` keys are added
    at the top level (e.g. ``source``, ``distance``)."""
    payload: dict[str, Any] = {
        "metrics": {k: _json_float(v) for k, v in report.metrics.items()},
        "ks": list(report.ks),
        "effective_ks": list(report.effective_ks),
        "n_queries": report.n_queries,
        "n_queries_without_gallery": report.n_queries_without_gallery,
        "queries_without_gallery": report.queries_without_gallery.tolist(),
    }
    payload.update(extra or {})
    return payload


def write_json_atomic(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (a temporary file in the same folder,
    then a rename), so a reader never sees half a file. NaN (a rate over no searches) is written
    as null. Returns the path."""
    return atomic_write_text(path, json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return _json_float(value)
    return value


def show_and_save_report(
    report: RetrievalReport,
    *,
    output: str | os.PathLike[str] | None,
    title: str | None = None,
    console: Console | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Print :func:`metrics_table` and, when ``output`` is given, write :func:`report_payload`
    there atomically. Returns the payload."""
    console = console or Console()
    console.print(metrics_table(report, title=title))
    payload = report_payload(report, extra=extra)
    if output is not None:
        written = write_json_atomic(output, payload)
        console.print(f"metrics written to {written}")
    return payload


@app.command("evaluate-embeddings")
def evaluate_embeddings_command(
    file: Path = typer.Argument(..., help="Embeddings: .parquet, .csv, .npz or .npy (with --labels)."),
    labels: Path | None = typer.Option(None, "--labels", help="Labels for a .npy file (.npy or text)."),
    roles: Path | None = typer.Option(
        None, "--roles", help="Roles for a .npy file: query, gallery or both (.npy or text)."
    ),
    ks: str = typer.Option("1,10,50,1000", "--ks", help="Comma-separated cut-offs k."),
    distance: str = typer.Option(
        "euclidean", "--distance", help="euclidean, squared_euclidean, cosine or dot."
    ),
    backend: str = typer.Option("torch", "--backend", help="Exact search backend: torch or faiss."),
    output: Path | None = typer.Option(
        None,
        "--output",
        "--out",
        "-o",
        help="Where to write the JSON (default: FILE with the suffix .metrics.json).",
    ),
    embedding_column: str = typer.Option("embedding", help="Embedding column (parquet/csv)."),
    label_column: str = typer.Option("label", help="Label column (parquet/csv)."),
    role_column: str = typer.Option("role", help="Role column (parquet/csv), optional."),
    id_column: str = typer.Option("id", help="Row id column (parquet/csv), optional."),
    split: str | None = typer.Option(
        None, "--split", help="Only the rows of this split (parquet/csv with a split column)."
    ),
    non_mated_share: NonMatedShareOption = 0.25,
    gallery_sizes: GallerySizesOption = None,
    draws: DrawsOption = 3,
    distractors: DistractorsOption = None,
    det_plot: DetPlotOption = None,
    sizes_plot: SizesPlotOption = None,
    seed: SeedOption = 0,
) -> None:
    """Retrieval metrics (hit rate, recall, precision, MAP at k; MAP@R; R-precision) of saved
    embeddings, and open-set identification (FNIR at FPIR, DET; by gallery size or with distractors)."""
    from lookalike.evaluation import EvalSet
    from lookalike.evaluation.summary import load_distractor_embeddings

    open_set = OpenSetOptions(non_mated_share, gallery_sizes, draws, distractors, det_plot, sizes_plot, seed)
    try:
        open_set.sizes()
        k_values = parse_ks(ks)
        table = load_embeddings(
            file,
            labels=labels,
            roles=roles,
            embedding_column=embedding_column,
            label_column=label_column,
            role_column=role_column,
            id_column=id_column,
            split=split,
        )
        report = evaluate_embeddings(table, ks=k_values, distance=distance, backend=backend)
        extra_set = None if distractors is None else load_distractor_embeddings(distractors)
        out = output if output is not None else file.with_suffix(".metrics.json")
        console = Console()
        identification = _open_set_part(
            EvalSet.from_table(table), open_set, distance, extra_set, None, out, console
        )
    except (ValueError, FileNotFoundError, ImportError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    mode = "leave-one-out" if table.roles is None else "query vs gallery"
    show_and_save_report(
        report,
        output=out,
        title=f"{file.name} ({mode}, {distance})",
        console=console,
        extra={"source": str(file), "distance": distance, "mode": mode, **identification},
    )


@app.command("evaluate")
def evaluate(
    checkpoint: CheckpointOption = None,
    backbone: BackboneOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    pretrained: PretrainedOption = False,
    onnx: OnnxOption = None,
    manifest: Path = typer.Option(..., "--manifest", help="A split manifest (from `lookalike split`)."),
    split: str = typer.Option("test", "--split", help="Which split's query/gallery rows to evaluate."),
    ks: str = typer.Option("1,10,50,1000", "--ks", help="Comma-separated cut-offs k."),
    distance: str = typer.Option(
        "euclidean", "--distance", help="euclidean, squared_euclidean, cosine or dot."
    ),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    device: DeviceOption = "auto",
    out: Path | None = typer.Option(None, "--out", help="Write the metrics as JSON here."),
    non_mated_share: NonMatedShareOption = 0.25,
    gallery_sizes: GallerySizesOption = None,
    draws: DrawsOption = 3,
    distractors: DistractorsOption = None,
    det_plot: DetPlotOption = None,
    sizes_plot: SizesPlotOption = None,
    seed: SeedOption = 0,
) -> None:
    """Embed a split's queries and gallery with a checkpoint, a frozen backbone (--backbone: the
    transfer-learning baseline) or an ONNX export (--onnx), and print the retrieval metrics and the
    open-set identification figures (FNIR at FPIR, DET; by gallery size or with distractors)."""
    from lookalike.calibration import read_calibration
    from lookalike.data import read_manifest
    from lookalike.distances import create_distance
    from lookalike.evaluation import embed_split, split_frames
    from lookalike.evaluation.summary import embed_distractors

    options = ModelOptions(checkpoint, backbone, weights, image_size, pretrained, onnx)
    open_set = OpenSetOptions(non_mated_share, gallery_sizes, draws, distractors, det_plot, sizes_plot, seed)
    console = Console()
    try:
        options.check()
        open_set.sizes()
        cutoffs = parse_ks(ks)
        dist = create_distance(distance)
        frame = read_manifest(manifest)
        queries, gallery = split_frames(frame, split)
        if len(queries) == 0:
            splits = sorted(frame["split"].dropna().unique()) if "split" in frame.columns else []
            raise ValueError(f"split {split!r} has no query rows in {manifest}; splits present: {splits}")
        model = options.load(device)
        embedded = embed_split(
            model.embedder, queries, gallery, device=model.device, batch_size=batch_size, progress=True
        )
        report = embedded.retrieval(ks=cutoffs, distance=dist)
        extra_set = None
        if distractors is not None:
            extra_set = embed_distractors(
                model.embedder, distractors, device=model.device, batch_size=batch_size
            )
        calibration = read_calibration(model.calibration)
        identification = _open_set_part(
            embedded.eval_set(), open_set, distance, extra_set, calibration, out, console
        )
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    show_and_save_report(
        report,
        output=out,
        title=f"{options.describe()} on {manifest} [{split}]",
        console=console,
        extra={
            **identification,
            "model": model.source,
            "model_fingerprint": model.fingerprint,
            "manifest": str(manifest),
            "split": split,
            "distance": distance,
            **({"checkpoint": str(checkpoint)} if checkpoint is not None else {}),
        },
    )


def _open_set_part(
    data: Any,
    options: OpenSetOptions,
    distance: str,
    distractors: Any,
    calibration: Any,
    json_path: Path | None,
    console: Console,
) -> dict[str, Any]:
    """The open-set evaluation's JSON part; {} (with a note) for a distance no gallery uses, unless
    gallery sizes or distractors were asked for (then an error)."""
    from lookalike.protocol import GALLERY_DISTANCES

    if distance not in GALLERY_DISTANCES:
        if options.gallery_sizes is not None or options.distractors is not None:
            raise ValueError(
                f"--gallery-sizes / --distractors need a gallery distance ({', '.join(GALLERY_DISTANCES)}), "
                f"got --distance {distance}"
            )
        console.print(
            f"no open-set figures: a gallery compares by {' or '.join(GALLERY_DISTANCES)}, not {distance}"
        )
        return {}
    return run_open_set(
        data,
        options,
        distance=distance,
        distractors=distractors,
        calibration=calibration,
        json_path=json_path,
        console=console,
    )


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--ks must be comma-separated positive integers, got {text!r}") from None
    if not values or any(k < 1 for k in values):
        raise ValueError(f"--ks must be comma-separated positive integers, got {text!r}")
    return values


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.4f}"


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)
