"""Reports people want to look at: the demo's self-contained HTML page (``html.py``, its page
template in ``_template.py``) and its figures (``figures.py``: training curves, ROC)."""

from lookalike.report.figures import det_figure, gallery_size_figure, roc_figure, training_figure
from lookalike.report.html import (
    Neighbour,
    OutcomeRow,
    ReportData,
    SearchCase,
    image_data_uri,
    outcome_rows,
    render_report,
    worst_first,
    write_report,
)

__all__ = [
    "Neighbour",
    "OutcomeRow",
    "ReportData",
    "SearchCase",
    "det_figure",
    "gallery_size_figure",
    "image_data_uri",
    "outcome_rows",
    "render_report",
    "roc_figure",
    "training_figure",
    "worst_first",
    "write_report",
]
