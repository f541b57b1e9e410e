"""Evaluation: a model or saved embeddings measured on a split.

- :mod:`~lookalike.evaluation.split`: embed a split's queries and gallery and compute the retrieval
  metrics (shared by training, ``lookalike evaluate`` and the Python API);
- :mod:`~lookalike.evaluation.tables`: saved embeddings (``.parquet``, ``.csv``, ``.npz``, ``.npy``)
  read into one table and evaluated (``lookalike evaluate-embeddings``);
- :mod:`~lookalike.evaluation.open_set`: open-set identification (FNIR at FPIR, DET) of a split's
  searches; :mod:`~lookalike.evaluation.gallery_sizes`: the same at each gallery size or with
  distractors; :mod:`~lookalike.evaluation.summary`: all of it in one call.
"""

from lookalike.evaluation.gallery_sizes import SizePoint, distractor_sweep, gallery_size_sweep
from lookalike.evaluation.open_set import FPIR_TARGETS, EvalSet, OpenSetReport, open_set_report
from lookalike.evaluation.split import SplitEmbeddings, embed_split, evaluate_split, split_frames
from lookalike.evaluation.summary import OpenSetEvaluation, evaluate_open_set
from lookalike.evaluation.tables import EmbeddingTable, evaluate_embeddings, load_embeddings

__all__ = [
    "FPIR_TARGETS",
    "EmbeddingTable",
    "EvalSet",
    "OpenSetEvaluation",
    "OpenSetReport",
    "SizePoint",
    "SplitEmbeddings",
    "distractor_sweep",
    "embed_split",
    "evaluate_embeddings",
    "evaluate_open_set",
    "evaluate_split",
    "gallery_size_sweep",
    "load_embeddings",
    "open_set_report",
    "split_frames",
]
