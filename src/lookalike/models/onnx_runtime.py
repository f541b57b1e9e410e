"""An embedder backed by onnxruntime: a ``lookalike export`` file used where a checkpoint would be.

:func:`load_onnx_model` returns an :class:`~lookalike.models.inference.InferenceModel` whose
``embedder`` is an :class:`OnnxEmbedder`: it takes the same (N, C, H, W) float tensors as the PyTorch
embedder, prepared with the same preprocessing (read from the file), and returns the same
L2-normalised (N, D) embeddings, so ``embed``, ``index``, ``search`` and ``serve`` run it unchanged.

The file's metadata (:class:`OnnxMetadata`, ONNX ``metadata_props`` under ``lookalike.*``) carries
the preprocessing, the embedding size, the distance, the calibrated threshold and the model
fingerprint: an export of a checkpoint has the checkpoint's fingerprint, so a gallery built with the
checkpoint accepts it and refuses any other model. L2 normalisation is the graph's last operation
(``l2_normalized`` is always true); nothing here normalises again.

onnx and onnxruntime are the optional extra ``lookalike[onnx]``; :func:`require_onnxruntime` says
how to install them when they are missing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lookalike.models.backbones import Preprocessing
from lookalike.models.inference import InferenceModel, threshold_from_calibration

__all__ = [
    "INPUT_NAME",
    "METADATA_PREFIX",
    "ONNX_FORMAT_VERSION",
    "OUTPUT_NAME",
    "MissingOnnxError",
    "OnnxEmbedder",
    "OnnxMetadata",
    "load_onnx_model",
    "require_onnx",
    "require_onnxruntime",
]

#: Keys of an exported file's ``metadata_props`` start with this.
METADATA_PREFIX = "lookalike."
ONNX_FORMAT_VERSION = 1
#: The graph's input, (batch, C, H, W) float32 prepared by the preprocessing, and its output (batch, D).
INPUT_NAME = "images"
OUTPUT_NAME = "embedding"

logger = logging.getLogger(__name__)

_INSTALL = "pip install 'lookalike[onnx]'"


class MissingOnnxError(ImportError, RuntimeError):
    """onnx or onnxruntime is not installed (an ImportError, and a RuntimeError so that the commands
    report it like any other failure to load a model)."""


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or :class:`MissingOnnxError` saying to install the ``onnx`` extra."""
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingOnnxError(
            f"running an ONNX model needs onnxruntime, which is not installed ({err}); {_INSTALL}"
        ) from None
    return onnxruntime


def require_onnx() -> Any:
    """The ``onnx`` module, or :class:`MissingOnnxError` saying to install the ``onnx`` extra."""
    try:
        import onnx
    except ImportError as err:
        raise MissingOnnxError(
            f"exporting to ONNX needs the onnx package, which is not installed ({err}); {_INSTALL}"
        ) from None
    return onnx


@dataclass(frozen=True)
class OnnxMetadata:
    """What ``lookalike export`` stores in the file, beside the graph.

    Attributes:
        model_fingerprint: the fingerprint a gallery checks: the checkpoint's own for a float export;
            for a quantised one a new fingerprint derived from it (its embeddings differ slightly).
        source_fingerprint: the fingerprint of the PyTorch model it was exported from.
        model_source: where it came from (``checkpoint:PATH`` or ``backbone:NAME``).
        preprocessing: how to prepare images (size, mean/std, interpolation, crop).
        embed_dim: D, the size of the output.
        distance: how a gallery compares the embeddings (``euclidean`` or ``cosine``).
        quantization: ``none`` or ``int8`` (static, QDQ, per-channel weights).
        calibration: the checkpoint's calibrated threshold and figures, else None.
        l2_normalized: True: the graph's output is already L2-normalised.
    """

    model_fingerprint: str
    source_fingerprint: str
    model_source: str
    preprocessing: Preprocessing
    embed_dim: int
    distance: str
    quantization: str = "none"
    calibration: dict[str, Any] | None = None
    l2_normalized: bool = True

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` of the file: ``lookalike.KEY`` -> string (JSON for structures)."""
        values: dict[str, Any] = {
            "format_version": ONNX_FORMAT_VERSION,
            "model_fingerprint": self.model_fingerprint,
            "source_fingerprint": self.source_fingerprint,
            "model_source": self.model_source,
            "preprocessing": json.dumps(self.preprocessing.to_dict(), sort_keys=True),
            "embed_dim": self.embed_dim,
            "distance": self.distance,
            "quantization": self.quantization,
            "l2_normalized": "true" if self.l2_normalized else "false",
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
        }
        if self.calibration is not None:
            values["calibration"] = json.dumps(self.calibration, sort_keys=True)
        return {METADATA_PREFIX + key: str(value) for key, value in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], *, where: str) -> OnnxMetadata:
        """Read :meth:`to_props`' keys back; ValueError naming the file and the missing key otherwise."""
        ours = {k[len(METADATA_PREFIX) :]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)}
        if not ours:
            raise ValueError(
                f"{where} has no lookalike metadata (keys {sorted(props)}): it was not written by "
                "`lookalike export`; export the checkpoint with "
                "`lookalike export --checkpoint CKPT --out FILE`"
            )
        required = ("format_version", "model_fingerprint", "preprocessing", "embed_dim", "distance")
        missing = [key for key in required if key not in ours]
        if missing:
            raise ValueError(f"{where}: the lookalike metadata lacks {missing}; export it again")
        version = int(ours["format_version"])
        if version > ONNX_FORMAT_VERSION:
            raise ValueError(
                f"{where} has lookalike ONNX format {version}; this lookalike reads up to "
                f"{ONNX_FORMAT_VERSION}: upgrade lookalike"
            )
        calibration = ours.get("calibration")
        return cls(
            model_fingerprint=ours["model_fingerprint"],
            source_fingerprint=ours.get("source_fingerprint", ours["model_fingerprint"]),
            model_source=ours.get("model_source", ""),
            preprocessing=Preprocessing.from_dict(json.loads(ours["preprocessing"])),
            embed_dim=int(ours["embed_dim"]),
            distance=ours["distance"],
            quantization=ours.get("quantization", "none"),
            calibration=json.loads(calibration) if calibration else None,
            l2_normalized=ours.get("l2_normalized", "true") == "true",
        )


class OnnxEmbedder(nn.Module):
    """images (N, C, H, W) -> L2-normalised embeddings (N, D), run by an onnxruntime session.

    Has the inference surface of :class:`~lookalike.models.Embedder` (``preprocessing``,
    ``embed_dim``, ``forward``, ``eval``/``train``) and no parameters; ``features`` is refused (the
    file holds the whole embedder, not the backbone's pooled features).
    """

    def __init__(self, session: Any, metadata: OnnxMetadata, *, path: Path) -> None:
        super().__init__()
        self.session = session
        self.metadata = metadata
        self.path = path
        self.preprocessing = metadata.preprocessing
        self.embed_dim = metadata.embed_dim
        shape = session.get_inputs()[0].shape
        self.in_chans = int(shape[1]) if isinstance(shape[1], int) else len(metadata.preprocessing.mean)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float -> (N, D) float32 on the device of ``images``."""
        size = self.preprocessing.image_size
        expected = (self.in_chans, size, size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"{self.path.name} takes (N, {', '.join(map(str, expected))}) images (its fixed input "
                f"resolution), got {tuple(images.shape)}"
            )
        batch = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        (out,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return torch.from_numpy(np.array(out, dtype=np.float32)).to(images.device)  # a writable copy

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise ValueError(
            f"{self.path.name} is an ONNX export of the whole embedder: it gives embeddings, not the "
            "backbone's pooled features; use the checkpoint for features"
        )


def _session(path: Path, device: torch.device, threads: int | None) -> Any:
    ort = require_onnxruntime()
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        else:  # as onnxruntime itself does for a provider it lacks: run, and say so
            logger.warning(
                "device %s asked for, but this onnxruntime has no CUDA provider (%s): running %s on the CPU; "
                "install onnxruntime-gpu for CUDA",
                device,
                ort.get_available_providers(),
                path.name,
            )
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for unreadable files
        raise ValueError(
            f"{path} is not a model onnxruntime can load ({type(err).__name__}: {err})"
        ) from None


def load_onnx_model(
    path: str | Path, *, device: str | torch.device = "cpu", threads: int | None = None
) -> InferenceModel:
    """An :class:`~lookalike.models.inference.InferenceModel` running the ``lookalike export`` file
    ``path`` with onnxruntime (``device``: cpu, or cuda with onnxruntime-gpu; ``threads``: intra-op
    threads, default onnxruntime's). Its fingerprint, preprocessing, distance and threshold come from
    the file's metadata; ``source`` is ``onnx:ABSOLUTE_PATH``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    session = _session(path, torch.device(device), threads)
    metadata = OnnxMetadata.from_props(session.get_modelmeta().custom_metadata_map, where=str(path))
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise ValueError(f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, got {names}")
    return InferenceModel(
        embedder=OnnxEmbedder(session, metadata, path=path),  # type: ignore[arg-type]
        preprocessing=metadata.preprocessing,
        fingerprint=metadata.model_fingerprint,
        threshold=threshold_from_calibration(metadata.calibration, where=str(path)),
        calibration=metadata.calibration,
        source=f"onnx:{path.resolve()}",
        distance=metadata.distance,
    )
