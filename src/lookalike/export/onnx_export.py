"""Export an embedder to ONNX: the file that ``--onnx FILE`` and plain onnxruntime run.

The graph takes ``images`` (batch, C, S, S) float32, already prepared by the model's preprocessing
(resize, crop, scale to [0, 1], mean/std), at the model's own fixed resolution S with a dynamic batch
axis, and returns ``embedding`` (batch, D) float32, **L2-normalised inside the graph** (the
embedder's last operation), so a user must not normalise again. The preprocessing, D, the distance,
the calibrated threshold and the model fingerprint are in the file's metadata
(:class:`~lookalike.models.onnx_runtime.OnnxMetadata`).

Exported with PyTorch's ``torch.export``-based exporter (``dynamo=True``), which handles the CNNs
and the DINOv2 ViTs (at the resolution they were created for: their position embeddings are sized
for it). Every export is checked against PyTorch before the file is written (on random inputs; an
int8 one on its calibration images).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from lookalike._io import atomic_path
from lookalike.models.inference import InferenceModel
from lookalike.models.onnx_runtime import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxMetadata,
    load_onnx_model,
    require_onnx,
    require_onnxruntime,
)

__all__ = ["DEFAULT_OPSET", "PARITY_MIN_COSINE", "ExportResult", "export_onnx", "parity_cosines"]

DEFAULT_OPSET = 18
#: The least cosine similarity an export must reach against PyTorch on every checked input.
PARITY_MIN_COSINE = 0.9999
#: For an int8 export, which approximates the float model, the least mean cosine accepted at export
#: (a broken quantisation gives 0.0-0.6; a working one 0.95-1.0, see BENCHMARKS.md).
INT8_MIN_MEAN_COSINE = 0.9


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote: the file, its metadata, and the least and the mean cosine
    similarity between its embeddings and PyTorch's on the check inputs."""

    path: Path
    metadata: OnnxMetadata
    min_cosine: float
    mean_cosine: float


def export_onnx(
    model: InferenceModel,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    calibration: torch.Tensor | None = None,
) -> ExportResult:
    """Write ``model`` (a PyTorch :class:`InferenceModel`) to the ONNX file ``out``, atomically.

    ``quantize="int8"``: static int8 quantisation (:mod:`lookalike.export.quantize`) calibrated on
    ``calibration``, (N, C, S, S) images prepared with the model's preprocessing (required then);
    the file then gets its own fingerprint (its embeddings are close to, not equal to, the float
    model's), so a gallery must be built with it to be searched with it.

    Raises ValueError for a bad option, RuntimeError when the export does not reproduce PyTorch
    (cosine < 0.9999 on random inputs; for int8, a mean cosine < 0.9 on calibration images).
    """
    onnx = require_onnx()
    require_onnxruntime()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"the output must be a .onnx file, got {out.name!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if quantize is not None and calibration is None:
        raise ValueError(
            "int8 quantisation needs calibration images (a few hundred of the kind you will embed)"
        )
    if not isinstance(model.embedder, torch.nn.Module) or not hasattr(model.embedder, "config"):
        raise ValueError(f"export takes a PyTorch model (a checkpoint or a backbone), got {model.source}")
    embedder = model.embedder.to("cpu").eval()
    size = model.preprocessing.image_size
    in_chans = int(embedder.config.in_chans)
    with atomic_path(out, suffix=".onnx") as tmp:
        proto = _to_onnx_proto(embedder, in_chans=in_chans, size=size, opset=opset)
        metadata = _metadata(model)
        if quantize == "int8":
            from lookalike.export.quantize import quantize_int8

            assert calibration is not None
            proto = quantize_int8(proto, calibration, tmp.parent)
            digest = hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()
            metadata = _int8_metadata(metadata, digest)
        _set_metadata(proto, metadata)
        onnx.save_model(proto, str(tmp))
        cosine = _check(embedder, tmp, calibration, in_chans=in_chans, size=size)
        if (cosine.min() if quantize is None else cosine.mean()) < _MINIMUM[quantize]:
            what = "least" if quantize is None else "mean"
            raise RuntimeError(
                f"the ONNX export of {model.source} gives embeddings with a {what} cosine of "
                f"{cosine.min() if quantize is None else cosine.mean():.6f} to PyTorch's (at least "
                f"{_MINIMUM[quantize]} expected); nothing was written to {out}"
            )
    return ExportResult(
        path=out, metadata=metadata, min_cosine=float(cosine.min()), mean_cosine=float(cosine.mean())
    )


_MINIMUM = {None: PARITY_MIN_COSINE, "int8": INT8_MIN_MEAN_COSINE}


def _check(
    embedder, path: Path, calibration: torch.Tensor | None, *, in_chans: int, size: int
) -> torch.Tensor:
    """Cosines to PyTorch on random inputs, or for int8 (whose activations are clipped to the
    calibration images' ranges) on up to 32 calibration images."""
    torch.manual_seed(0)
    inputs = torch.rand(3, in_chans, size, size) if calibration is None else calibration[:32].float()
    return parity_cosines(embedder, path, inputs)


def _to_onnx_proto(embedder: torch.nn.Module, *, in_chans: int, size: int, opset: int):
    """The embedder traced to an in-memory ONNX ModelProto (weights inside, batch axis dynamic)."""
    example = torch.rand(2, in_chans, size, size)  # batch 2: a batch of 1 would be specialised
    batch = torch.export.Dim("batch", min=1)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            embedder,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={"images": {0: batch}},
            verbose=False,
        )
    if program is None:
        raise RuntimeError(f"torch.onnx.export returned no program; log: {sink.getvalue()[-2000:]}")
    return program.model_proto


def _metadata(model: InferenceModel) -> OnnxMetadata:
    return OnnxMetadata(
        model_fingerprint=model.fingerprint,
        source_fingerprint=model.fingerprint,
        model_source=model.source,
        preprocessing=model.preprocessing,
        embed_dim=model.embed_dim,
        distance=model.distance,
        calibration=model.calibration,
    )


def _int8_metadata(metadata: OnnxMetadata, graph_digest: str) -> OnnxMetadata:
    """The float export's metadata with a fingerprint of its own: the source's and the int8 graph's."""
    digest = hashlib.sha256(b"lookalike-onnx-int8-v1\n")
    digest.update(f"{metadata.source_fingerprint}\n{graph_digest}".encode())
    return OnnxMetadata(
        model_fingerprint=digest.hexdigest(),
        source_fingerprint=metadata.source_fingerprint,
        model_source=metadata.model_source,
        preprocessing=metadata.preprocessing,
        embed_dim=metadata.embed_dim,
        distance=metadata.distance,
        quantization="int8",
        calibration=metadata.calibration,
    )


def _set_metadata(proto, metadata: OnnxMetadata) -> None:
    props = metadata.to_props()
    kept = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (
        "lookalike embedder: input 'images' (batch, C, S, S) float32 prepared with the preprocessing in "
        "metadata lookalike.preprocessing; output 'embedding' (batch, D), already L2-normalised."
    )


@torch.no_grad()
def parity_cosines(embedder: torch.nn.Module, path: str | Path, inputs: torch.Tensor) -> torch.Tensor:
    """(N,) cosine similarities, one per input of ``inputs`` (N, C, S, S), between ``embedder``'s
    embeddings and those of the ONNX file at ``path``."""
    ours = embedder(inputs).float()
    theirs = load_onnx_model(path).embedder(inputs)
    return torch.nn.functional.cosine_similarity(ours, theirs, dim=1)
