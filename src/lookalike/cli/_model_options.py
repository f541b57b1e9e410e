"""The model options shared by every command that embeds images: a trained ``--checkpoint`` or, in
transfer-learning mode, a frozen pretrained ``--backbone NAME [--weights FILE] [--image-size N]
[--pretrained]``, or an ``--onnx FILE`` from ``lookalike export`` (run by onnxruntime). Used by
``evaluate``, ``embed``, ``calibrate``, ``index build`` and ``export`` (``--onnx``: ``evaluate``,
``embed`` and ``index build``; ``index add``, ``search`` and ``serve`` take ``OnnxOption`` to the
matcher; ``calibrate`` writes into a checkpoint, so an export is calibrated by ``index build
--onnx F --target-fpir R --calibrate-on SPLIT``).

In a command::

    @app.command("embed")
    def embed(
        checkpoint: CheckpointOption = None,
        backbone: BackboneOption = None,
        weights: WeightsOption = None,
        image_size: ImageSizeOption = None,
        pretrained: PretrainedOption = False,
        device: DeviceOption = "auto",
        ...
    ):
        options = ModelOptions(checkpoint, backbone, weights, image_size, pretrained)
        model = options.load(device)  # ValueError / FileNotFoundError / RuntimeError: a clear message
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import torch
import typer

if TYPE_CHECKING:
    from lookalike.models.inference import InferenceModel

__all__ = [
    "BackboneOption",
    "CheckpointOption",
    "DeviceOption",
    "ImageSizeOption",
    "ModelOptions",
    "OnnxOption",
    "PretrainedOption",
    "WeightsOption",
    "resolve_cli_device",
]

CheckpointOption = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="A lookalike checkpoint (.pt) from `lookalike train`."),
]
BackboneOption = Annotated[
    str | None,
    typer.Option(
        "--backbone",
        help="Transfer mode instead of --checkpoint: a frozen pretrained backbone (timm name or alias such "
        "as dinov2_vits14; see `lookalike backbones`), its pooled features as the embedding.",
    ),
]
WeightsOption = Annotated[
    Path | None,
    typer.Option(
        "--weights", help="With --backbone: a local .safetensors/.pt file of its weights (timm key names)."
    ),
]
ImageSizeOption = Annotated[
    int | None,
    typer.Option(
        "--image-size", min=1, help="With --backbone: input size in pixels (default: the backbone's)."
    ),
]
PretrainedOption = Annotated[
    bool,
    typer.Option(
        "--pretrained",
        help="With --backbone: download its pretrained weights through timm (needs the network; offline, "
        "use --weights FILE).",
    ),
]
OnnxOption = Annotated[
    Path | None,
    typer.Option(
        "--onnx",
        help="Instead of --checkpoint: an ONNX model from `lookalike export`, run with onnxruntime "
        "(needs the onnx extra: pip install 'lookalike[onnx]').",
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (cuda when available), cpu, cuda, cuda:N.")]


@dataclass(frozen=True)
class ModelOptions:
    """What the user chose on the command line; :meth:`load` checks and loads it."""

    checkpoint: Path | None = None
    backbone: str | None = None
    weights: Path | None = None
    image_size: int | None = None
    pretrained: bool = False
    onnx: Path | None = None

    def check(self) -> None:
        """Raise ValueError, in command-line words, unless exactly one model is chosen consistently."""
        chosen = [
            flag
            for flag, value in (
                ("--checkpoint", self.checkpoint),
                ("--backbone", self.backbone),
                ("--onnx", self.onnx),
            )
            if value is not None
        ]
        if not chosen:
            raise ValueError(
                "choose a model: --checkpoint CKPT (trained), --backbone NAME [--weights FILE] (frozen) "
                "or --onnx FILE (exported)"
            )
        if len(chosen) > 1:
            raise ValueError(f"{' and '.join(chosen)} each choose the model; give one of them")
        if self.checkpoint is not None or self.onnx is not None:
            given = [
                flag
                for flag, value in (
                    ("--weights", self.weights),
                    ("--image-size", self.image_size),
                    ("--pretrained", self.pretrained or None),
                )
                if value is not None
            ]
            if given:
                what = "a checkpoint" if self.onnx is None else "an ONNX export"
                raise ValueError(
                    f"{', '.join(given)} go with --backbone; {what} holds its own weights and preprocessing"
                )
        if self.pretrained and self.weights is not None:
            raise ValueError("--pretrained (download) and --weights FILE both give weights; choose one")

    def describe(self) -> str:
        """A short human name of the model, for titles and logs."""
        if self.checkpoint is not None or self.onnx is not None:
            return str(self.checkpoint if self.checkpoint is not None else self.onnx)
        weights = f" ({self.weights.name})" if self.weights is not None else ""
        weights = " (pretrained)" if self.pretrained else weights or " (random init)"
        return f"{self.backbone}{weights}"

    def load(self, device: str | torch.device = "auto") -> InferenceModel:
        """:func:`lookalike.models.load_inference_model` for these options on ``device``
        (``auto``: CUDA when available)."""
        from lookalike.models.inference import load_inference_model

        self.check()
        if self.onnx is not None:
            from lookalike.models.onnx_runtime import load_onnx_model

            return load_onnx_model(self.onnx, device=resolve_cli_device(device))
        return load_inference_model(
            checkpoint=self.checkpoint,
            backbone=self.backbone,
            weights=self.weights,
            image_size=self.image_size,
            pretrained=self.pretrained,
            device=resolve_cli_device(device),
        )


def resolve_cli_device(name: str | torch.device, *, local_rank: int = 0) -> torch.device:
    """:func:`lookalike.devices.resolve_device`, except that ``auto`` under ``torchrun`` means this
    process's GPU, ``cuda:LOCAL_RANK`` (CPU when there is no CUDA)."""
    from lookalike.devices import resolve_device

    device = resolve_device(name)
    if str(name) == "auto" and device.type == "cuda":
        return torch.device("cuda", local_rank)
    return device
