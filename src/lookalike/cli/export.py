"""``lookalike export``: an embedder as an ONNX file (optionally int8) for onnxruntime.

The file takes ``images`` (batch, C, S, S) float32 prepared with the model's preprocessing, at the
model's own fixed resolution with a dynamic batch axis, and returns ``embedding`` (batch, D), already
L2-normalised. Its metadata (``lookalike.*``) holds the preprocessing, D, the distance, the
calibrated threshold and the model fingerprint; ``--onnx FILE`` on ``embed``, ``index``, ``search``
and ``serve`` uses it in place of the checkpoint (a gallery built with the checkpoint accepts it).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from lookalike.cli._model_options import (
    BackboneOption,
    CheckpointOption,
    ImageSizeOption,
    ModelOptions,
    PretrainedOption,
    WeightsOption,
)
from lookalike.cli.app import app

_out = Console(soft_wrap=True, highlight=False)
_err = Console(stderr=True, soft_wrap=True, highlight=False)


@app.command("export")
def export(
    checkpoint: CheckpointOption = None,
    backbone: BackboneOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    pretrained: PretrainedOption = False,
    out: Path = typer.Option(..., "--out", "-o", help="The ONNX file to write (.onnx)."),
    opset: int = typer.Option(18, "--opset", min=18, help="ONNX opset version (18 or later)."),
    quantize: str | None = typer.Option(
        None, "--quantize", help="int8: static int8 quantisation, calibrated on --calibration-images."
    ),
    calibration_images: Path | None = typer.Option(
        None,
        "--calibration-images",
        help="With --quantize int8: a folder of images like those you will embed.",
    ),
    calibration_count: int = typer.Option(
        256, "--calibration-count", min=1, help="How many of those images to calibrate on (evenly spaced)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Export a checkpoint (or a frozen backbone) to ONNX, checked against PyTorch before it is written."""
    from lookalike.export import export_onnx

    options = ModelOptions(checkpoint, backbone, weights, image_size, pretrained)
    try:
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
        if quantize not in (None, "int8"):
            raise ValueError(f"--quantize {quantize}: the only quantisation is int8")
        if (quantize is None) != (calibration_images is None):
            raise ValueError("--quantize int8 and --calibration-images DIR go together")
        model = options.load("cpu")
        calibration = None
        if calibration_images is not None:
            from lookalike.export.quantize import calibration_images as load_images

            calibration = load_images(calibration_images, model.preprocessing, count=calibration_count)
        result = export_onnx(model, out, opset=opset, quantize=quantize, calibration=calibration)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        _err.print(f"error: {err}", markup=False)
        raise typer.Exit(1) from None
    meta = result.metadata
    size = meta.preprocessing.image_size
    _out.print(
        f"wrote {out}: {options.describe()}, "
        f"input (batch, {model.embedder.config.in_chans}, {size}, {size}), "
        f"{meta.embed_dim}-d L2-normalised embeddings, {meta.distance}, quantisation {meta.quantization}, "
        f"fingerprint {meta.model_fingerprint[:12]}; cosine to PyTorch: mean {result.mean_cosine:.6f}, "
        f"least {result.min_cosine:.6f}",
        markup=False,
    )
