"""The demo report: one self-contained HTML file (figures and images inlined as base64).

:func:`render_report` turns a :class:`ReportData` into HTML; :func:`write_report` writes it
atomically. The data carries everything the page shows, so the page needs nothing but a browser.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike._io import atomic_write_text
from lookalike.report._template import TEMPLATE

__all__ = [
    "Neighbour",
    "OutcomeRow",
    "ReportData",
    "SearchCase",
    "image_data_uri",
    "outcome_rows",
    "render_report",
    "worst_first",
    "write_report",
]

METRIC_HELP = {
    "hit_rate": "1 if any of the top k is of the query's class; what DML papers call Recall@K.",
    "recall": "the share of the query class's gallery images found in the top k.",
    "precision": "the share of the top k that is of the query's class.",
    "map": "mean average precision over the top k.",
}


@dataclass(frozen=True)
class Neighbour:
    """One of a query's nearest gallery items as the report shows it."""

    path: str | None
    label: str
    distance: float
    correct: bool


@dataclass(frozen=True)
class SearchCase:
    """One example search: the query, whether its class is in the gallery (``known``), the
    decision the matcher made and its nearest neighbours."""

    query_path: str
    query_label: str
    known: bool
    decision: str
    matched_label: str | None
    distance: float | None
    threshold: float | None
    neighbours: Sequence[Neighbour]
    title: str = ""
    #: the decision score compared with the threshold (the nearest distance under ``nearest``)
    score: float | None = None

    @property
    def outcome(self) -> str:
        """correct match, wrong match, missed, correct no match or false match."""
        if self.known:
            if self.decision == "match":
                return "correct match" if self.matched_label == self.query_label else "wrong match"
            return "missed (no match)"
        return "correct no match" if self.decision != "match" else "false match"

    @property
    def good(self) -> bool:
        return self.outcome in ("correct match", "correct no match")

    @property
    def first_correct_rank(self) -> int | None:
        return next((i + 1 for i, n in enumerate(self.neighbours) if n.correct), None)


@dataclass(frozen=True)
class OutcomeRow:
    """The three outcomes of one kind of search: ``known`` objects (mated searches) or unknown
    ones (non-mated: any match is wrong). Counts; ``right_match`` is 0 for unknown objects."""

    kind: str
    searches: int
    right_match: int
    wrong_match: int
    no_match: int

    def share(self, count: int) -> str:
        return "–" if self.searches == 0 else f"{count / self.searches:.1%} ({count})"


def outcome_rows(cases: Sequence[SearchCase]) -> list[OutcomeRow]:
    """Right match / wrong match / no match counted over the known and the unknown cases."""
    rows = []
    for known, kind in ((True, "known objects (mated searches)"), (False, "unknown objects (non-mated)")):
        part = [c for c in cases if c.known == known]
        matched = [c for c in part if c.decision == "match"]
        right = sum(c.matched_label == c.query_label for c in matched) if known else 0
        rows.append(OutcomeRow(kind, len(part), right, len(matched) - right, len(part) - len(matched)))
    return rows


@dataclass(frozen=True)
class ReportData:
    """What the report shows.

    ``before``/``after``: test-split metrics of the untrained and trained model (keys as
    :func:`lookalike.metrics.retrieval_metrics` names them). ``searches``: example searches of
    known classes, shown worst first; ``no_match``: searches of classes left out of the gallery.
    ``facts``: (name, value) rows about the data, split and run; ``stages``: (stage, seconds).
    ``names``: a short text shown for a label under its images (e.g. the character itself).
    ``det_png``: the DET curve (FNIR against FPIR) of the test searches, or ``det_note`` saying why
    there is none; ``sizes_png``: figures against gallery size; ``outcomes``: the three outcomes
    of the known and the unknown objects' searches.
    """

    title: str
    dataset: str
    facts: Sequence[tuple[str, str]]
    split_rows: Sequence[dict[str, Any]]
    config_yaml: str
    ks: Sequence[int]
    before: dict[str, float]
    after: dict[str, float]
    calibration: Sequence[tuple[str, str]] = ()
    open_set: Sequence[tuple[str, str]] = ()
    training_png: bytes | None = None
    det_png: bytes | None = None
    det_note: str = ""
    sizes_png: bytes | None = None
    sizes_note: str = ""
    outcomes: Sequence[OutcomeRow] = ()
    searches: Sequence[SearchCase] = ()
    no_match: Sequence[SearchCase] = ()
    stages: Sequence[tuple[str, float]] = ()
    commands: Sequence[tuple[str, str]] = ()
    notes: Sequence[str] = field(default_factory=tuple)
    names: dict[str, str] = field(default_factory=dict)


def worst_first(cases: Sequence[SearchCase]) -> list[SearchCase]:
    """Wrong answers first; among them, those whose own class is missing from the top k, then the
    ones where it appears lowest; then the farthest nearest neighbour."""

    def badness(case: SearchCase) -> tuple[bool, bool, int, float]:
        rank = case.first_correct_rank
        return (case.good, rank is not None, -(rank or 0), -(case.distance or 0.0))

    return sorted(cases, key=badness)


def image_data_uri(path: str | Path, *, size: int = 64) -> str:
    """A ``data:image/png;base64,...`` URI of the image at ``path``, no larger than ``size`` px."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB") if image.mode not in ("L", "RGB") else image.copy()
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _png_uri(data: bytes | None) -> str | None:
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _metric_rows(data: ReportData) -> list[dict[str, Any]]:
    rows = []
    for k in data.ks:
        for family in ("hit_rate", "recall", "precision", "map"):
            key = f"{family}@{k}"
            if key in data.after or key in data.before:
                rows.append(_row(key, data, first=family == "hit_rate"))
    for key in ("map@r", "r_precision"):
        if key in data.after or key in data.before:
            rows.append(_row(key, data, first=key == "map@r"))
    return rows


def _row(key: str, data: ReportData, *, first: bool) -> dict[str, Any]:
    before, after = data.before.get(key), data.after.get(key)
    delta = None if before is None or after is None else after - before
    return {
        "key": key,
        "before": _fmt(before),
        "after": _fmt(after),
        "delta": "" if delta is None else f"{delta:+.3f}",
        "up": delta is not None and delta > 0.0005,
        "down": delta is not None and delta < -0.0005,
        "first": first,
        "headline": key == "hit_rate@1",
    }


def _case(case: SearchCase, thumb: int, names: dict[str, str]) -> dict[str, Any]:
    return {
        "query": image_data_uri(case.query_path, size=thumb),
        "label": names.get(case.query_label, case.query_label),
        "title": case.title,
        "outcome": case.outcome,
        "good": case.good,
        "decision": case.decision,
        "matched": None if case.matched_label is None else names.get(case.matched_label, case.matched_label),
        "distance": _fmt(case.distance),
        "score": _fmt(case.score if case.score is not None else case.distance),
        "threshold": _fmt(case.threshold),
        "neighbours": [
            {
                "src": image_data_uri(n.path, size=thumb) if n.path else None,
                "label": names.get(n.label, n.label),
                "distance": _fmt(n.distance),
                "correct": n.correct,
            }
            for n in case.neighbours
        ],
    }


def render_report(data: ReportData, *, thumb: int = 64) -> str:
    """The report as one HTML string."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(TEMPLATE)
    return template.render(
        d=data,
        metric_rows=_metric_rows(data),
        help=METRIC_HELP,
        training=_png_uri(data.training_png),
        det=_png_uri(data.det_png),
        sizes=_png_uri(data.sizes_png),
        searches=[_case(c, thumb, dict(data.names)) for c in data.searches],
        no_match=[_case(c, thumb, dict(data.names)) for c in data.no_match],
        stages=[(name, f"{seconds:.1f} s") for name, seconds in data.stages],
        total=f"{sum(s for _, s in data.stages):.0f} s",
    )


def write_report(path: str | Path, data: ReportData, *, thumb: int = 64) -> Path:
    """Render and write the report to ``path`` atomically; returns the path."""
    return atomic_write_text(path, render_report(data, thumb=thumb))
