"""``lookalike calibrate``: calibrate the match decision on a val split and keep it with the model.

The calibration (:mod:`lookalike.calibration.open_set`) chooses the decision score and the
threshold for a target FPIR (the share of searches for objects nobody enrolled that are answered
"match") at every gallery size. With ``--checkpoint`` the record is stored in the checkpoint
(``extra["calibration"]``): written to ``--out NEW.pt`` (default ``CKPT`` with ``.calibrated.pt``)
or, with ``--in-place``, over the checkpoint (atomically); ``index build`` and the service read it
from there and set the threshold for the gallery's size. With ``--backbone`` (no checkpoint to
store into) it is written as JSON to ``--out FILE.json``; ``index build --target-fpir F
--calibrate-on SPLIT.csv`` calibrates a frozen backbone's gallery in one step.
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

__all__ = ["TARGET_FAR_ALIAS", "target_rate"]

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)

#: What ``--target-far`` says when it is used.
TARGET_FAR_ALIAS = (
    "note: --target-far is an alias of --target-fpir: the threshold is calibrated for the false positive "
    "identification rate (searches for objects not in the gallery answered 'match'); say --target-fpir"
)


def target_rate(
    target_fpir: float | None, target_far: float | None, *, default: float | None = 0.05
) -> float | None:
    """The target FPIR from ``--target-fpir`` or its alias ``--target-far`` (which prints
    :data:`TARGET_FAR_ALIAS` on stderr); both given is an error."""
    if target_fpir is not None and target_far is not None:
        raise ValueError("give --target-fpir (or its alias --target-far), not both")
    if target_far is not None:
        _err.print(TARGET_FAR_ALIAS, markup=False, highlight=False)
        return target_far
    return default if target_fpir is None else target_fpir


@app.command("calibrate")
def calibrate(
    checkpoint: CheckpointOption = None,
    backbone: BackboneOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    pretrained: PretrainedOption = False,
    manifest: Path = typer.Option(..., "--manifest", help="A split manifest (from `lookalike split`)."),
    split: str = typer.Option("val", "--split", help="The split to calibrate on (classes not trained on)."),
    target_fpir: float | None = typer.Option(
        None,
        "--target-fpir",
        help="Target FPIR: share of searches for unknown objects answered 'match' [0.05].",
    ),
    target_far: float | None = typer.Option(None, "--target-far", help="Alias of --target-fpir."),
    score: str | None = typer.Option(
        None,
        "--score",
        help="Decide on this score (nearest, ratio, znorm) instead of choosing by FNIR on the split.",
    ),
    open_set_share: float = typer.Option(
        0.5,
        "--open-set-share",
        help="Share of the split's classes searched as unknown objects while the decision score is chosen.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the enrolled / unknown class draws."),
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
    """Calibrate the match decision on a split: the decision score (by FNIR at the target FPIR) and the
    threshold for every gallery size; store it with the checkpoint (or, with --backbone, in a JSON file)."""
    from lookalike.calibration import write_checkpoint_calibration
    from lookalike.calibration.open_set import calibrate_model
    from lookalike.data import read_manifest

    options = ModelOptions(checkpoint, backbone, weights, image_size, pretrained)
    try:
        options.check()
        rate = target_rate(target_fpir, target_far)
        target = _check_output(checkpoint, out, in_place)
        frame = read_manifest(manifest)
        model = options.load(device)
        record = calibrate_model(
            model, frame, split=split, target_fpir=rate, score=score, open_set_share=open_set_share,
            seed=seed, batch_size=batch_size, progress=not as_json,
        )  # fmt: skip
        payload = {"model": model.source, "model_fingerprint": model.fingerprint, **record.to_dict()}
        if checkpoint is not None:
            written = write_checkpoint_calibration(checkpoint, record, out=target)
        else:
            from lookalike._io import atomic_write_text

            written = atomic_write_text(target, json.dumps(_finite(payload), indent=2) + "\n")
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        _err.print(f"error: {err}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({**_finite(payload), "written": str(written)}))
        return
    _out.print(_table(record, title=f"{options.describe()} on {manifest} [{split}]"))
    _out.print(f"calibration stored in {written}", markup=False, highlight=False)


def _check_output(checkpoint: Path | None, out: Path | None, in_place: bool) -> Path:
    if checkpoint is None:  # transfer mode: a JSON file
        if in_place:
            raise ValueError("--in-place stores into a checkpoint; with --backbone give --out FILE.json")
        if out is None or out.suffix.lower() != ".json":
            raise ValueError(
                "with --backbone there is no checkpoint to store the calibration in: give --out FILE.json "
                "(or calibrate a gallery in one step: "
                "`lookalike index build --target-fpir F --calibrate-on SPLIT.csv`)"
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


def _table(record, *, title: str) -> Table:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    f = record.figures
    lo, hi = record.size_range
    rows = [
        ("decision score (match when score <=)", record.score),
        ("target FPIR", f"{record.target_fpir:g}"),
        *((f"FNIR at the target, {name}", f"{value:.4f}") for name, value in f["fnir_at_target"].items()),
        *((f"threshold for {n} objects", f"{record.threshold_for(n):.6g}") for n in (10, 100, 1000, 10000)),
        ("gallery sizes covered (objects)", f"{lo} - {hi}"),
        ("classes / images calibrated on", f"{f['calibration_objects']} / {f['calibration_images']}"),
        ("distance", record.distance),
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
