"""int8 quantisation of an exported embedder with onnxruntime.quantization.

Static quantisation in QDQ format: weights int8 per output channel in 7 bits (``reduce_range``),
activations uint8 with ranges calibrated (MinMax) on images of the kind the model will embed. The
7-bit weights avoid the saturation of uint8 x int8 products in the AVX2/AVX-512 kernels without
VNNI: with 8-bit weights a trained Conv-4 fell to cosine 0.02-0.56 against PyTorch on its own
calibration images, with 7 bits it keeps >= 0.9996. Dynamic quantisation is not used:
onnxruntime runs its int8 convolutions (ConvInteger) several times slower than float on CPU, and
these embedders are convolution-heavy. The last operations (the L2 normalisation) are kept in float,
so the output is still unit length.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookalike.models.backbones import Preprocessing
from lookalike.models.onnx_runtime import INPUT_NAME, require_onnx, require_onnxruntime

__all__ = ["calibration_images", "quantize_int8"]

_BATCH = 16


def quantize_int8(proto: Any, calibration: torch.Tensor, workdir: str | Path) -> Any:
    """The ONNX ModelProto ``proto`` quantised to int8, calibrated on ``calibration`` (N, C, S, S)
    prepared images. Scratch files go to a temporary folder in ``workdir`` and are removed."""
    onnx = require_onnx()
    require_onnxruntime()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration.ndim != 4 or len(calibration) == 0:
        raise ValueError(
            f"calibration must be (N, C, S, S) images with N >= 1, got {tuple(calibration.shape)}"
        )
    batches = [
        {INPUT_NAME: np.ascontiguousarray(calibration[i : i + _BATCH].float().numpy())}
        for i in range(0, len(calibration), _BATCH)
    ]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(dir=workdir, prefix=".quantize-") as scratch:
        src, pre, dst = (Path(scratch) / f"{name}.onnx" for name in ("float", "pre", "int8"))
        onnx.save_model(proto, str(src))
        # folds BatchNorm into the convolutions and fixes shapes, so that fewer tensors are quantised;
        # the symbolic shape pass does not follow the exporter's graphs, the ONNX one does
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            reduce_range=True,
            nodes_to_exclude=_tail_nodes(proto),
        )
        return onnx.load_model(str(dst))


def _tail_nodes(proto: Any) -> list[str]:
    """The nodes after the last MatMul/Gemm/Conv (the L2 normalisation and what feeds the output
    beyond the last weighted layer): kept in float."""
    nodes = list(proto.graph.node)
    last = max((i for i, n in enumerate(nodes) if n.op_type in ("MatMul", "Gemm", "Conv")), default=-1)
    return [n.name for n in nodes[last + 1 :] if n.name]


def calibration_images(folder: str | Path, preprocessing: Preprocessing, *, count: int = 256) -> torch.Tensor:
    """(n, C, S, S): up to ``count`` images below ``folder`` (evenly spaced over the sorted file list,
    so that every class folder contributes), prepared with ``preprocessing`` as for embedding."""
    from lookalike.data import ManifestDataset, eval_transform
    from lookalike.embed import list_images

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    frame = list_images(folder)
    picks = np.unique(np.linspace(0, len(frame) - 1, num=min(count, len(frame))).round().astype(int))
    frame = frame.iloc[picks].assign(label="")
    dataset = ManifestDataset(frame, transform=eval_transform(preprocessing))
    return torch.stack([dataset[i][0] for i in range(len(dataset))])
