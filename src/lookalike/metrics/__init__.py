"""Metrics, as pure functions of embeddings and labels (or of distances and genuine flags).

- ``retrieval.py``: retrieval metrics at k (hit rate, recall, precision, MAP, MAP@R, R-precision)
  from one exact, chunked top-k search;
- ``verification.py``: verification metrics (ROC, AUC, EER, TAR@FAR) and the threshold for a
  target FAR.

Each agrees with pytorch-metric-learning where it has the same metric (checked in the tests).
"""

from lookalike.metrics.retrieval import (
    METRICS_AT_K,
    METRICS_WHOLE_RANKING,
    RetrievalReport,
    metric_names,
    rank_metrics,
    retrieval_metrics,
)
from lookalike.metrics.verification import (
    OpenSetReport,
    RocCurve,
    Threshold,
    calibrate_threshold,
    eer,
    nearest_neighbour_matches,
    open_set_evaluation,
    roc_auc,
    roc_curve,
    tar_at_far,
)

__all__ = [
    "METRICS_AT_K",
    "METRICS_WHOLE_RANKING",
    "OpenSetReport",
    "RetrievalReport",
    "RocCurve",
    "Threshold",
    "calibrate_threshold",
    "eer",
    "metric_names",
    "nearest_neighbour_matches",
    "open_set_evaluation",
    "rank_metrics",
    "retrieval_metrics",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
]
