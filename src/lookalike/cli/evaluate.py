"""``lookalike evaluate`` (a model on a split manifest) and ``lookalike evaluate-embeddings``
(retrieval metrics over saved embeddings).

``lookalike evaluate --checkpoint CKPT --manifest SPLIT.csv`` measures a trained model;
``lookalike evaluate --backbone NAME [--weights FILE] --manifest SPLIT.csv`` the frozen pretrained
backbone: the transfer-learning baseline of a data set in one command.

Also the pieces both reuse: :func:`metrics_table` (a rich
table of the metrics by k), :func:`report_payload` (the JSON document) and
:func:`write_json_atomic`, and :func:`show_and_save_report` that does all three.

Accepted inputs (one row per item):

- ``.parquet`` / ``.csv``: an embedding column (a list per row; for CSV, columns
  ``<embedding-column>_0``, ``_1``, ...), a label column, optionally a role column
  (``query``, ``gallery`` or ``both``; a split manifest's ``query+gallery`` means ``both`` and its
  ``train`` rows are left out), a split column (choose one split with ``--split``) and an id
  column. ``lookalike embed`` writes this form.
- ``.npz``: arrays ``embeddings`` (N, D), ``labels`` (N,), optionally ``roles`` and ``ids``.
- ``.npy``: the (N, D) embeddings, with ``--labels`` (and optionally ``--roles``) given as
  ``.npy`` or one-value-per-line text files.

Without roles every item is a query against all the others (leave-one-out).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
    PretrainedOption,
    WeightsOption,
)
from lookalike.cli.app import app
from lookalike.metrics.retrieval import METRICS_AT_K, RetrievalReport, retrieval_metrics

__all__ = [
    "EmbeddingTable",
    "evaluate_embeddings",
    "load_embeddings",
    "metrics_table",
    "report_payload",
    "show_and_save_report",
    "write_json_atomic",
]

_ROLES = ("query", "gallery", "both", "query+gallery", "train")


@dataclass(frozen=True)
class EmbeddingTable:
    """Embeddings loaded from a file: (N, D) float32, (N,) labels, optional (N,) roles and ids."""

    embeddings: np.ndarray
    labels: np.ndarray
    roles: np.ndarray | None
    ids: np.ndarray | None


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
    then a rename), so a reader never sees half a file. Returns the path."""
    return atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


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


def load_embeddings(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    roles: str | os.PathLike[str] | None = None,
    embedding_column: str = "embedding",
    label_column: str = "label",
    role_column: str = "role",
    id_column: str = "id",
    split: str | None = None,
    split_column: str = "split",
) -> EmbeddingTable:
    """Read embeddings, labels and optional roles/ids from ``.parquet``, ``.csv``, ``.npz`` or ``.npy``.

    ``split``: keep only the rows whose ``split_column`` is this (parquet/csv). A file whose split
    column holds several splits must be given one (evaluating val and test together would mix them).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such embeddings file: {p}")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".csv"):
        if labels is not None or roles is not None:
            raise ValueError(
                f"--labels/--roles are for .npy files; {p.name} has {label_column!r}/{role_column!r}"
            )
        table = _read_frame(p, embedding_column, label_column, role_column, id_column, split, split_column)
    elif split is not None:
        raise ValueError(
            f"--split selects rows of a .parquet/.csv file with a {split_column!r} column, not {p.name}"
        )
    elif suffix == ".npz":
        if labels is not None or roles is not None:
            raise ValueError(
                f"--labels/--roles are for .npy files; {p.name} holds 'labels' and 'roles' arrays"
            )
        with np.load(p, allow_pickle=False) as z:
            for key in ("embeddings", "labels"):
                if key not in z:
                    raise ValueError(f"{p.name} has no {key!r} array; it has {sorted(z.files)}")
            table = EmbeddingTable(
                embeddings=z["embeddings"],
                labels=z["labels"],
                roles=z.get("roles"),
                ids=z.get("ids"),
            )
    elif suffix == ".npy":
        if labels is None:
            raise ValueError(f"{p.name} holds only embeddings: give the labels with --labels FILE")
        table = EmbeddingTable(
            embeddings=np.load(p, allow_pickle=False),
            labels=_read_vector(Path(labels)),
            roles=None if roles is None else _read_vector(Path(roles)),
            ids=None,
        )
    else:
        raise ValueError(f"unsupported embeddings file {p.name!r}; use .parquet, .csv, .npz or .npy")
    return _validate(table, p.name)


def evaluate_embeddings(
    table: EmbeddingTable,
    *,
    ks: tuple[int, ...] = (1, 10, 50, 1000),
    distance: str = "euclidean",
    backend: str = "torch",
) -> RetrievalReport:
    """Retrieval metrics of a loaded table: queries against the gallery by role, or leave-one-out."""
    emb = np.ascontiguousarray(table.embeddings, dtype=np.float32)
    if table.roles is None:
        return retrieval_metrics(
            emb, table.labels, ks=ks, distance=distance, leave_one_out=True, backend=backend
        )  # type: ignore[arg-type]
    roles = table.roles.astype(str)
    both = (roles == "both") | (roles == "query+gallery")
    is_q = (roles == "query") | both
    is_g = (roles == "gallery") | both
    if not is_q.any() or not is_g.any():
        raise ValueError(f"roles must include queries and gallery items; found {sorted(set(roles.tolist()))}")
    ids = table.ids if table.ids is not None else np.arange(len(roles))
    kw: dict[str, Any] = {}
    if both.any():
        kw = {"query_ids": ids[is_q], "gallery_ids": ids[is_g]}
    return retrieval_metrics(
        emb[is_q],
        table.labels[is_q],
        emb[is_g],
        table.labels[is_g],
        ks=ks,
        distance=distance,
        backend=backend,  # type: ignore[arg-type]
        **kw,
    )


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
) -> None:
    """Retrieval metrics (hit rate, recall, precision, MAP at k; MAP@R; R-precision) of saved embeddings."""
    try:
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
    except (ValueError, FileNotFoundError, ImportError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    out = output if output is not None else file.with_suffix(".metrics.json")
    mode = "leave-one-out" if table.roles is None else "query vs gallery"
    show_and_save_report(
        report,
        output=out,
        title=f"{file.name} ({mode}, {distance})",
        extra={"source": str(file), "distance": distance, "mode": mode},
    )


@app.command("evaluate")
def evaluate(
    checkpoint: CheckpointOption = None,
    backbone: BackboneOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    pretrained: PretrainedOption = False,
    manifest: Path = typer.Option(..., "--manifest", help="A split manifest (from `lookalike split`)."),
    split: str = typer.Option("test", "--split", help="Which split's query/gallery rows to evaluate."),
    ks: str = typer.Option("1,10,50,1000", "--ks", help="Comma-separated cut-offs k."),
    distance: str = typer.Option(
        "euclidean", "--distance", help="euclidean, squared_euclidean, cosine or dot."
    ),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    device: DeviceOption = "auto",
    out: Path | None = typer.Option(None, "--out", help="Write the metrics as JSON here."),
) -> None:
    """Embed a split's queries and gallery with a checkpoint, or a frozen backbone (--backbone: the
    transfer-learning baseline), and print the retrieval metrics."""
    from lookalike.data import read_manifest
    from lookalike.distances import create_distance
    from lookalike.evaluation import evaluate_split, split_frames

    options = ModelOptions(checkpoint, backbone, weights, image_size, pretrained)
    try:
        options.check()
        cutoffs = parse_ks(ks)
        dist = create_distance(distance)
        frame = read_manifest(manifest)
        queries, gallery = split_frames(frame, split)
        if len(queries) == 0:
            splits = sorted(frame["split"].dropna().unique()) if "split" in frame.columns else []
            raise ValueError(f"split {split!r} has no query rows in {manifest}; splits present: {splits}")
        model = options.load(device)
        report = evaluate_split(
            model.embedder,
            queries,
            gallery,
            ks=cutoffs,
            distance=dist,
            device=model.device,
            batch_size=batch_size,
            progress=True,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    show_and_save_report(
        report,
        output=out,
        title=f"{options.describe()} on {manifest} [{split}]",
        extra={
            "model": model.source,
            "model_fingerprint": model.fingerprint,
            "manifest": str(manifest),
            "split": split,
            "distance": distance,
            **({"checkpoint": str(checkpoint)} if checkpoint is not None else {}),
        },
    )


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--ks must be comma-separated positive integers, got {text!r}") from None
    if not values or any(k < 1 for k in values):
        raise ValueError(f"--ks must be comma-separated positive integers, got {text!r}")
    return values


def _read_frame(
    p: Path, emb_col: str, label_col: str, role_col: str, id_col: str, split: str | None, split_col: str
) -> EmbeddingTable:
    import pandas as pd

    df = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p)
    present = sorted(df[split_col].dropna().astype(str).unique()) if split_col in df.columns else []
    if split is not None:
        if split_col not in df.columns:
            raise ValueError(
                f"--split {split}: {p.name} has no {split_col!r} column; columns: {list(df.columns)}"
            )
        df = df[df[split_col].astype(str) == split]
        if len(df) == 0:
            raise ValueError(f"{p.name} has no rows of split {split!r}; splits present: {present}")
    elif len(present) > 1:
        raise ValueError(f"{p.name} holds the splits {present}; evaluate one of them with --split NAME")
    if label_col not in df.columns:
        raise ValueError(f"{p.name} has no label column {label_col!r}; columns: {list(df.columns)}")
    if emb_col in df.columns:
        emb = np.stack([np.asarray(v, dtype=np.float32) for v in df[emb_col].to_numpy()])
    else:
        cols = [
            c for c in df.columns if str(c).startswith(f"{emb_col}_") and str(c)[len(emb_col) + 1 :].isdigit()
        ]
        if not cols:
            raise ValueError(
                f"{p.name} has no embedding column {emb_col!r} (nor {emb_col}_0, {emb_col}_1, ...); "
                f"columns: {list(df.columns)}"
            )
        cols.sort(key=lambda c: int(str(c)[len(emb_col) + 1 :]))
        emb = df[cols].to_numpy(dtype=np.float32)
    return EmbeddingTable(
        embeddings=emb,
        labels=df[label_col].to_numpy(),
        roles=df[role_col].to_numpy() if role_col in df.columns else None,
        ids=df[id_col].to_numpy() if id_col in df.columns else None,
    )


def _read_vector(p: Path) -> np.ndarray:
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    if p.suffix.lower() == ".npy":
        return np.load(p, allow_pickle=False)
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return np.asarray(lines)


def _validate(t: EmbeddingTable, name: str) -> EmbeddingTable:
    if t.embeddings.ndim != 2:
        raise ValueError(f"{name}: embeddings must be (N, D), got shape {t.embeddings.shape}")
    n = t.embeddings.shape[0]
    for what, arr in (("labels", t.labels), ("roles", t.roles), ("ids", t.ids)):
        if arr is not None and arr.shape != (n,):
            raise ValueError(f"{name}: {what} must have shape ({n},) like the embeddings, got {arr.shape}")
    if t.roles is not None:
        bad = sorted(set(np.asarray(t.roles).astype(str).tolist()) - set(_ROLES))
        if bad:
            raise ValueError(f"{name}: unknown roles {bad}; valid roles: {', '.join(_ROLES)}")
    if t.ids is not None and len(np.unique(t.ids)) != n:
        raise ValueError(f"{name}: ids must be unique")
    return t


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.4f}"


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else float(v)
