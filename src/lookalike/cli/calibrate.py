"""``lookalike calibrate``: choose the match threshold on a val split and keep it with the model.

With ``--checkpoint`` the threshold and its figures are stored in the checkpoint
(``extra["calibration"]``): written to ``--out NEW.pt`` (default ``CKPT`` with ``.calibrated.pt``)
or, with ``--in-place``, over the checkpoint (atomically). ``load_inference_model``, ``index build``
and the service read it from there.

With ``--backbone`` (transfer mode, no checkpoint file to store into) the calibration is written as
JSON to ``--out FILE.json`` (required); pass its threshold on with ``index build --threshold VALUE``.

See :mod:`lookalike.calibration` for the procedure (open-set hold-out, nearest-item comparisons).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

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

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


@app.command("calibrate")
def calibrate(
    checkpoint: CheckpointOption = None,
    backbone: BackboneOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    pretrained: PretrainedOption = False,
    manifest: Path = typer.Option(..., "--manifest", help="A split manifest (from `lookalike split`)."),
    split: str = typer.Option("val", "--split", help="The split to calibrate on (classes not trained on)."),
    target_far: float = typer.Option(
        0.01, "--target-far", help="Highest false accept rate allowed on the calibration comparisons."
    ),
    open_set_share: float = typer.Option(
        0.5,
        "--open-set-share",
        help="Share of the split's classes left out of the gallery (their queries are unknown objects). "
        "Set it to the share of queries you expect to show objects nobody enrolled: the FAR holds for that "
        "mix, and known objects whose nearest item is another one are the harder impostors.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the open-set class draw."),
    queries: str = typer.Option(
        "all",
        "--queries",
        help="all: every image of the split is a query against the others; roles: the manifest's query rows.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Checkpoint to write (default CKPT.calibrated.pt); with --backbone a .json file (required).",
    ),
    in_place: bool = typer.Option(False, "--in-place", help="Store the threshold in CKPT itself."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON instead of a table."),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    device: DeviceOption = "auto",
) -> None:
    """Calibrate the match threshold on a split (open set included), report ROC AUC, EER, TAR@FAR and
    the threshold, and store them with the checkpoint (or, with --backbone, in a JSON file)."""
    from lookalike.calibration import calibrate_split, store_calibration
    from lookalike.data import read_manifest

    options = ModelOptions(checkpoint, backbone, weights, image_size, pretrained)
    try:
        options.check()
        target = _check_output(checkpoint, out, in_place)
        frame = read_manifest(manifest)
        model = options.load(device)
        result = calibrate_split(
            model,
            frame,
            split=split,
            target_far=target_far,
            open_set_share=open_set_share,
            seed=seed,
            queries=queries,  # type: ignore[arg-type]
            batch_size=batch_size,
            progress=not as_json,
        )
        payload = {"model": model.source, "model_fingerprint": model.fingerprint, **result.to_dict()}
        if checkpoint is not None:
            written = store_calibration(checkpoint, result, out=target)
        else:
            from lookalike._io import atomic_write_text

            written = atomic_write_text(target, json.dumps(_finite(payload), indent=2) + "\n")
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        _err.print(f"error: {err}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({**_finite(payload), "written": str(written)}))
        return
    _out.print(_table(result, title=f"{options.describe()} on {manifest} [{split}]"))
    for warning in result.warnings:
        _err.print(f"warning: {warning}", markup=False, highlight=False)
    _out.print(f"threshold {result.threshold.value:.6g} stored in {written}", markup=False, highlight=False)


def _check_output(checkpoint: Path | None, out: Path | None, in_place: bool) -> Path:
    if checkpoint is None:  # transfer mode: a JSON file
        if in_place:
            raise ValueError("--in-place stores into a checkpoint; with --backbone give --out FILE.json")
        if out is None or out.suffix.lower() != ".json":
            raise ValueError(
                "with --backbone there is no checkpoint to store the threshold in: give --out FILE.json "
                "(then pass its threshold to `lookalike index build --threshold VALUE`)"
            )
        return out
    if in_place and out is not None:
        raise ValueError("give --out NEW.pt or --in-place, not both")
    if in_place:
        return checkpoint
    target = out if out is not None else checkpoint.with_suffix(".calibrated.pt")
    if target.resolve() == checkpoint.resolve():
        raise ValueError(f"--out {target} is the checkpoint itself; say --in-place to overwrite it")
    return target


def _table(result, *, title: str) -> Table:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    t = result.threshold
    rows = [
        ("threshold (match when distance <=)" if not t.higher_is_closer else "threshold (match when >=)",
         f"{t.value:.6g}"),
        ("FAR at threshold (target)", f"{result.far:.4f} ({result.target_far:g})"),
        ("TAR at threshold", f"{result.tar:.4f}"),
        (f"TAR@FAR={result.target_far:g}", f"{result.tar_at_far:.4f}"),
        ("ROC AUC", f"{result.roc_auc:.4f}"),
        ("EER", f"{result.eer:.4f}"),
        ("genuine / impostor comparisons", f"{result.n_genuine} / {result.n_impostor}"),
        ("of which open-set impostors", f"{result.n_open_set}"),
        ("classes (held out of the gallery)", f"{result.n_classes} ({result.n_held_out_classes})"),
        ("distance", result.distance),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table


def _finite(obj):
    """JSON-safe: NaN and infinities as None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
