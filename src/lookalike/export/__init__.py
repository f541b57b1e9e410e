"""Export for production: an embedder as an ONNX file (optionally int8) that onnxruntime runs with or
without lookalike. ``lookalike export`` on the command line; :func:`export_onnx` in Python; the file
is used back with ``--onnx FILE`` or :func:`lookalike.models.load_onnx_model`.

Needs the optional extra ``lookalike[onnx]`` (onnx, onnxruntime, onnxscript).
"""

from lookalike.export.onnx_export import (
    DEFAULT_OPSET,
    PARITY_MIN_COSINE,
    ExportResult,
    export_onnx,
    parity_cosines,
)

__all__ = ["DEFAULT_OPSET", "PARITY_MIN_COSINE", "ExportResult", "export_onnx", "parity_cosines"]
