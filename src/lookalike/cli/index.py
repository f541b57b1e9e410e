"""``lookalike index build | add | remove | info | set-threshold``: make and maintain a gallery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from lookalike.cli._model_options import (
    BackboneOption,
    CheckpointOption,
    ImageSizeOption,
    ModelOptions,
    OnnxOption,
    PretrainedOption,
    WeightsOption,
    resolve_cli_device,
)
from lookalike.cli.app import app

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from lookalike.calibration import CalibrationRecord
    from lookalike.gallery import GalleryStore
    from lookalike.models.inference import InferenceModel

__all__ = ["index_app"]

index_app = typer.Typer(
    name="index",
    help="Build and maintain a gallery (a FAISS folder, or Milvus) to search with `lookalike search`.",
    no_args_is_help=True,
)
app.add_typer(index_app, name="index")

_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError, RuntimeError)

# Options shared by build and add: where the items come from.
_MANIFEST = typer.Option(None, "--manifest", help="A manifest (CSV/Parquet): path, label, [id], [metadata].")
_SPLIT = typer.Option(
    None,
    "--split",
    help="Only the rows of this split, of --manifest or --embeddings (--role then defaults to gallery).",
)
_ROLE = typer.Option(None, "--role", help="gallery, query or all (default: gallery with --split, else all).")
_IMAGES = typer.Option(None, "--images", help="A folder with one sub-folder of images per class.")
_EMBEDDINGS = typer.Option(None, "--embeddings", help="Saved embeddings (.parquet from `lookalike embed`).")
_DEVICE = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:N.")
_BATCH = typer.Option(64, "--batch-size", min=1)


def _note(text: str) -> None:
    """A progress/outcome line on stderr (stdout stays for results)."""
    Console(stderr=True, soft_wrap=True, highlight=False).print(text)


def _fail(exc: BaseException) -> typer.Exit:
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(1)


@index_app.command("build")
def build(
    out: str | None = typer.Option(None, "--out", "-o", help="The gallery to create (a folder)."),
    store: str | None = typer.Option(
        None, "--store", help="Create it elsewhere: milvus-lite:PATH.db[#COLL] or milvus://HOST:PORT/COLL."
    ),
    checkpoint: CheckpointOption = None,
    backbone: BackboneOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    pretrained: PretrainedOption = False,
    onnx: OnnxOption = None,
    manifest: Path | None = _MANIFEST,
    split: str | None = _SPLIT,
    role: str | None = _ROLE,
    images: Path | None = _IMAGES,
    embeddings: Path | None = _EMBEDDINGS,
    index_factory: str = typer.Option(
        "Flat", "--index-factory", help="FAISS factory string: Flat (exact), HNSW32, IVF1024,PQ32 ..."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Match threshold (default: the checkpoint's calibration, if any)."
    ),
    target_fpir: float | None = typer.Option(
        None, "--target-fpir", help="Calibrate for this FPIR at the gallery's size (with --calibrate-on)."
    ),
    target_far: float | None = typer.Option(None, "--target-far", help="Alias of --target-fpir."),
    calibrate_on: Path | None = typer.Option(
        None, "--calibrate-on", help="Split manifest to calibrate on (its --calibrate-split rows)."
    ),
    calibrate_split: str = typer.Option("val", "--calibrate-split", help="Split to calibrate on."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing gallery."),
    device: str = _DEVICE,
    batch_size: int = _BATCH,
) -> None:
    """Create a gallery from images (a manifest or class folders) or saved embeddings; its threshold is
    set for its size from the calibration (--target-fpir with --calibrate-on, or the checkpoint's)."""
    from lookalike.gallery.indexing import build_gallery, gallery_header

    try:
        location = _location(out, store)
        _one_source(manifest, images, embeddings)
        rate = _target(threshold, target_fpir, target_far, calibrate_on)
        if not overwrite and _exists(location):
            raise FileExistsError(f"{location} already exists; pass --overwrite to replace it")
        dev = resolve_cli_device(device)
        model = ModelOptions(checkpoint, backbone, weights, image_size, pretrained, onnx).load(dev)
        emb, items = _items_and_embeddings(
            model, manifest, split, role, images, embeddings, batch_size=batch_size, device=dev
        )
        record = _record(model, threshold, rate, calibrate_on, calibrate_split, dev)
        n_objects = int(items["label"].astype(str).nunique())
        header = gallery_header(
            model,
            index_factory=index_factory,
            calibration=record,
            gallery=(emb, items["label"].astype(str).tolist()),
        )
        with build_gallery(location, header, emb, items, overwrite=overwrite) as gallery:
            n = len(gallery)
    except _ERRORS as exc:
        raise _fail(exc) from None
    _note(
        f"built gallery {location}: {n} items of {n_objects} labels, {header.embed_dim}-d, "
        f"{header.index_factory}, model {model.source}"
    )
    if header.threshold is None:
        _note(
            "warning: no match threshold (the model has no calibration); searches will answer "
            "'no threshold'. Calibrate with --target-fpir F --calibrate-on SPLIT.csv, or set one with "
            "`lookalike index set-threshold`."
        )
    else:
        _threshold_note(header.threshold, n_objects, record)


def _target(
    threshold: float | None, target_fpir: float | None, target_far: float | None, calibrate_on: Path | None
) -> float | None:
    """The target FPIR asked for (None: none), checking it goes with --calibrate-on, not --threshold."""
    from lookalike.cli.calibrate import target_rate

    rate = target_rate(target_fpir, target_far, default=None)
    if threshold is not None and (rate is not None or calibrate_on is not None):
        raise ValueError("give either --threshold or --target-fpir with --calibrate-on, not both")
    if (rate is None) != (calibrate_on is None):
        raise ValueError("--target-fpir and --calibrate-on go together")
    return rate


def _record(
    model: InferenceModel,
    threshold: float | None,
    rate: float | None,
    calibrate_on: Path | None,
    split: str,
    device: torch.device,
) -> CalibrationRecord | None:
    """The gallery's calibration: calibrated now, a given threshold, or the model's (None: none)."""
    from lookalike.calibration import read_calibration
    from lookalike.gallery.indexing import model_calibration

    if rate is not None:
        return _calibrate(model, calibrate_on, split, rate, device)  # type: ignore[arg-type]
    if threshold is not None:
        if not _finite(threshold):
            raise ValueError(f"--threshold must be a finite number, got {threshold}")
        return read_calibration({"method": "given"}, threshold=threshold)
    return model_calibration(model)


def _threshold_note(
    threshold: float, n_objects: int, record: CalibrationRecord | None, verb: str = "set"
) -> None:
    """Say which threshold the gallery now has, for which size, and warn outside the covered range."""
    if record is None or record.method != "object-profiles":
        _note(f"match threshold {threshold:.4f} (one threshold for every gallery size)")
        return
    lo, hi = record.size_range or (None, None)
    _note(
        f"match threshold {verb} to {threshold:.4f} for {n_objects} objects: decision score {record.score}, "
        f"target FPIR {record.target_fpir:g}, calibration covers {lo}-{hi} objects"
    )
    warning = record.range_warning(n_objects)
    if warning:
        _note(f"warning: {warning}")


@index_app.command("add")
def add(
    gallery: str = typer.Argument(..., help="The gallery to add to."),
    manifest: Path | None = _MANIFEST,
    split: str | None = _SPLIT,
    role: str | None = _ROLE,
    images: Path | None = _IMAGES,
    embeddings: Path | None = _EMBEDDINGS,
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Override the gallery's model."),
    backbone: str | None = typer.Option(None, "--backbone", help="Override: a frozen backbone by name."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file for --backbone."),
    onnx: OnnxOption = None,
    device: str = _DEVICE,
    batch_size: int = _BATCH,
) -> None:
    """Add items to a gallery, embedded with the gallery's own model (another model is refused); the
    threshold is set again for the gallery's new size."""
    from lookalike.gallery.indexing import check_items
    from lookalike.gallery.matcher import Matcher

    try:
        _one_source(manifest, images, embeddings)
        dev = resolve_cli_device(device)
        with Matcher.open(
            gallery,
            checkpoint=checkpoint,
            backbone=backbone,
            weights=weights,
            device=dev,
            writable=True,
            onnx=onnx,
        ) as matcher:
            emb, items = _items_and_embeddings(
                matcher.model, manifest, split, role, images, embeddings, batch_size=batch_size, device=dev
            )
            check_items(emb, items, embed_dim=matcher.gallery.header.embed_dim)
            ids = matcher.gallery.add(emb, items.reset_index(drop=True))
            total = len(matcher.gallery)
            rederived = matcher.rederive_threshold()
    except _ERRORS as exc:
        raise _fail(exc) from None
    _note(f"added {len(ids)} items to {gallery}; it holds {total}")
    if rederived is not None:
        _threshold_note(rederived[0], rederived[1], matcher.calibration, verb="re-derived")


@index_app.command("remove")
def remove(
    gallery: str = typer.Argument(..., help="The gallery to remove from."),
    ids: list[str] = typer.Option(
        [], "--ids", "--id", help="Item ids to remove (repeatable, or comma-separated)."
    ),
    labels: list[str] = typer.Option([], "--label", help="Remove every item of this label (repeatable)."),
) -> None:
    """Remove items by id or by label (an unknown id or label changes nothing); the threshold is set
    again for the gallery's new size."""
    from lookalike.calibration import read_calibration
    from lookalike.gallery import open_gallery
    from lookalike.gallery.calibration import rederive_gallery_threshold

    wanted = [x.strip() for text in ids for x in text.split(",") if x.strip()]
    try:
        if bool(wanted) == bool(labels):
            raise ValueError("give the items to remove with --ids ID[,ID...] or with --label LABEL")
        with open_gallery(gallery, writable=True) as store:
            if labels:
                wanted = _ids_of_labels(store, labels)
            n = store.remove(wanted)
            left = len(store)
            rederived = rederive_gallery_threshold(store)
            record = read_calibration(store.header.calibration, threshold=store.header.threshold)
    except _ERRORS as exc:
        raise _fail(exc) from None
    _note(f"removed {n} items from {gallery}; {left} left")
    if rederived is not None:
        _threshold_note(rederived[0], rederived[1], record, verb="re-derived")


@index_app.command("set-threshold")
def set_threshold(
    gallery: str = typer.Argument(..., help="The gallery whose match threshold to set."),
    threshold: float | None = typer.Option(None, "--threshold", help="Match when the score <= this."),
    target_fpir: float | None = typer.Option(
        None, "--target-fpir", help="Calibrate for this FPIR (with --calibrate-on)."
    ),
    target_far: float | None = typer.Option(None, "--target-far", help="Alias of --target-fpir."),
    calibrate_on: Path | None = typer.Option(None, "--calibrate-on", help="Split manifest to calibrate on."),
    calibrate_split: str = typer.Option("val", "--calibrate-split", help="Split to calibrate on."),
    clear: bool = typer.Option(False, "--clear", help="Remove the threshold."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Override the gallery's model."),
    backbone: str | None = typer.Option(None, "--backbone", help="Override: a frozen backbone by name."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file for --backbone."),
    device: str = _DEVICE,
) -> None:
    """Set (or --clear) the gallery's match threshold: a value, or calibrated for a target FPIR (then set
    for the gallery's size, and again whenever it grows or shrinks)."""
    from lookalike.gallery.calibration import set_gallery_calibration
    from lookalike.gallery.matcher import Matcher

    try:
        rate = _target(threshold, target_fpir, target_far, calibrate_on)
        if (threshold is not None) + (rate is not None) + int(clear) != 1:
            raise ValueError(
                "give one of --threshold VALUE, --target-fpir F --calibrate-on MANIFEST, or --clear"
            )
        dev = resolve_cli_device(device)
        with Matcher.open(
            gallery, checkpoint=checkpoint, backbone=backbone, weights=weights, device=dev, writable=True
        ) as matcher:
            record = (
                None if clear else _record(matcher.model, threshold, rate, calibrate_on, calibrate_split, dev)
            )
            value, n_objects = set_gallery_calibration(matcher.gallery, record)
    except _ERRORS as exc:
        raise _fail(exc) from None
    if value is None:
        _note(f"{gallery}: cleared the threshold")
    else:
        _threshold_note(value, n_objects, record)


@index_app.command("info")
def info(
    gallery: str = typer.Argument(..., help="The gallery to describe."),
    sample: int = typer.Option(
        1000, "--sample", min=1, help="Queries sampled to measure an approximate index's recall@10."
    ),
    as_json: bool = typer.Option(False, "--json", help="The header and figures as one JSON object."),
) -> None:
    """Size, model, distance, threshold and calibration, index type (approximate: recall@10 vs exact)."""
    from lookalike.gallery import index_recall, open_gallery

    try:
        with open_gallery(gallery) as store:
            header = store.header
            n = len(store)
            labels = int(store.labels().nunique()) if n else 0
            recall = index_recall(store, sample=sample, k=10) if not header.is_exact and n > 1 else None
    except _ERRORS as exc:
        raise _fail(exc) from None
    if as_json:
        payload = {"gallery": gallery, "items": n, "labels": labels, **header.to_dict()}
        payload["recall@10_vs_exact"] = recall
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    rows: list[tuple[str, Any]] = [
        ("gallery", gallery),
        ("items", n),
        ("labels", labels),
        ("embedding size", header.embed_dim),
        ("distance", header.distance),
        ("model", header.model_source),
        ("model fingerprint", header.model_fingerprint),
        ("index", header.index_factory + (" (exact)" if header.is_exact else " (approximate)")),
    ]
    if recall is not None:
        rows.append((f"recall@10 vs exact ({min(sample, n)} sampled)", recall))
    no_threshold = "none (searches answer 'no threshold')"
    rows.append(("threshold", no_threshold if header.threshold is None else header.threshold))
    rows.extend(_calibration_rows(header.calibration, header.threshold, labels))
    width = max(len(key) for key, _ in rows)
    console = Console(soft_wrap=True)
    for key, value in rows:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        console.print(f"[bold]{key:<{width}}[/bold]  {text}", highlight=False)


def _calibration_rows(
    calibration: dict | None, threshold: float | None, n_objects: int
) -> list[tuple[str, Any]]:
    """The calibration worth a line each: score, target, size range, then its scalar figures."""
    from lookalike.calibration import read_calibration
    from lookalike.calibration.record import GALLERY_FIGURES

    record = read_calibration(calibration, threshold=threshold)
    if record is None:
        return []
    rows: list[tuple[str, Any]] = [
        ("decision score", f"{record.score} (match when score <= threshold)"),
        ("calibration", record.method),
    ]
    if record.target_fpir is not None:
        rows.append(("target FPIR", record.target_fpir))
    if record.method == "object-profiles":
        lo, hi = record.size_range or (None, None)
        rows.append(("sizes covered (objects)", f"{lo}-{hi}"))
        rows.append(("threshold set for", f"{record.figures.get('gallery_objects')} objects"))
        rows.append(("threshold set from", _set_from(record.figures)))
        warning = record.range_warning(n_objects)
        if warning:
            rows.append(("warning", warning))
    for key, value in sorted(record.figures.items()):
        if isinstance(value, dict):
            rows.extend(
                (f"  {key}.{k}", v) for k, v in sorted(value.items()) if not isinstance(v, dict | list)
            )
        elif isinstance(value, (list, tuple)):
            rows.extend((f"  {key}", v) for v in value)  # warnings
        elif key != "gallery_objects" and key not in GALLERY_FIGURES:
            rows.append((f"  {key}", value))
    return rows


def _set_from(figures: dict) -> str:
    """How the gallery's threshold was set: the calibration alone, or pooled with its own images."""
    if "gallery_probes" not in figures:
        return "the calibration's threshold for the size"
    return (
        f"the calibration (weight {figures['calibration_weight']:g}) pooled with {figures['gallery_probes']} "
        f"of the gallery's images searched as non-mated (from {figures['gallery_probe_objects']} objects, "
        f"weight {figures['gallery_weight']:g}; searched at {figures.get('gallery_probed_objects')} objects)"
    )


def _location(out: str | None, store: str | None) -> str:
    if out is None and store is None:
        raise ValueError(
            "give the gallery to create with --out FOLDER (or --store milvus-lite:PATH.db / milvus://...)"
        )
    if out is not None and store is not None and out != store:
        raise ValueError(f"--out {out} and --store {store} name two different galleries; give one")
    return str(store if store is not None else out)


def _exists(location: str) -> bool:
    from lookalike.gallery.location import gallery_folder

    folder = gallery_folder(location)  # None for Milvus: create_gallery refuses an existing collection
    return folder is not None and folder.exists()


def _one_source(manifest: Path | None, images: Path | None, embeddings: Path | None) -> None:
    if sum(x is not None for x in (manifest, images, embeddings)) != 1:
        raise ValueError("give exactly one of --manifest FILE, --images DIR or --embeddings EMB.parquet")


def _finite(x: float) -> bool:
    import math

    return math.isfinite(x)


def _items_and_embeddings(
    model: InferenceModel,
    manifest: Path | None,
    split: str | None,
    role: str | None,
    images: Path | None,
    embeddings: Path | None,
    *,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, pd.DataFrame]:
    """The items to add and their embeddings, from whichever source was given."""
    from lookalike.data import manifest_from_folder, read_manifest
    from lookalike.gallery.indexing import embed_items, read_embeddings_file, select_rows

    if embeddings is not None:
        emb, items, meta = read_embeddings_file(embeddings, split=split, role=role)
        recorded = meta.get("model_fingerprint")
        if recorded and recorded != model.fingerprint:
            raise ValueError(
                f"{embeddings} was embedded with another model ({meta.get('model_source', recorded[:12])}) "
                f"than {model.source}; embed it again with this model or give that model"
            )
        return emb, items
    if manifest is not None:
        items = select_rows(read_manifest(manifest), split=split, role=role)
    else:
        if split is not None or role is not None:
            raise ValueError("--split and --role select rows of a --manifest")
        items = manifest_from_folder(images)
    return embed_items(model, items, batch_size=batch_size, device=device, progress=True), items


def _ids_of_labels(store: GalleryStore, labels: list[str]) -> list[str]:
    by_id = store.labels()
    present = set(by_id)
    unknown = [x for x in labels if x not in present]
    if unknown:
        raise KeyError(f"no item has label {unknown[0]!r}; the gallery has {len(present)} labels")
    return by_id.index[by_id.isin(labels)].tolist()


def _calibrate(
    model: InferenceModel, manifest: Path, split: str, target_fpir: float, device: torch.device
) -> CalibrationRecord:
    """Calibrate on ``split`` of a split manifest (:func:`lookalike.calibration.open_set.calibrate_model`);
    the record names the manifest."""
    import dataclasses

    from lookalike.calibration.open_set import calibrate_model
    from lookalike.data import read_manifest

    record = calibrate_model(
        model, read_manifest(manifest), split=split, target_fpir=target_fpir, device=device, progress=True
    )
    figures = {**record.figures, "manifest": str(Path(manifest).resolve()), "source": model.source}
    return dataclasses.replace(record, figures=figures)
