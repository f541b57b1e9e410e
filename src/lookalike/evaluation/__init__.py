"""Evaluation: a model or saved embeddings measured on a split.

- :mod:`~lookalike.evaluation.split`: embed a split's queries and gallery and compute the retrieval
  metrics (shared by training, ``lookalike evaluate`` and the Python API);
- :mod:`~lookalike.evaluation.tables`: saved embeddings (``.parquet``, ``.csv``, ``.npz``, ``.npy``)
  read into one table and evaluated (``lookalike evaluate-embeddings``).
"""

from lookalike.evaluation.split import evaluate_split, split_frames
from lookalike.evaluation.tables import EmbeddingTable, evaluate_embeddings, load_embeddings

__all__ = [
    "EmbeddingTable",
    "evaluate_embeddings",
    "evaluate_split",
    "load_embeddings",
    "split_frames",
]
