"""Reports people want to look at: the demo's self-contained HTML page (``html.py``, its page
template in ``_template.py``) and its figures (``figures.py``: training curves, ROC)."""

from lookalike.report.figures import roc_figure, training_figure
from lookalike.report.html import (
    Neighbour,
    ReportData,
    SearchCase,
    image_data_uri,
    render_report,
    worst_first,
    write_report,
)

__all__ = [
    "Neighbour",
    "ReportData",
    "SearchCase",
    "image_data_uri",
    "render_report",
    "roc_figure",
    "training_figure",
    "worst_first",
    "write_report",
]
