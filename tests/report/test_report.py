"""The demo report: outcomes, ordering, the metrics table, inlined images, escaping."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.report import (
    Neighbour,
    ReportData,
    SearchCase,
    det_figure,
    gallery_size_figure,
    image_data_uri,
    outcome_rows,
    render_report,
    roc_figure,
    training_figure,
    worst_first,
    write_report,
)


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "q.png"
    Image.new("L", (32, 32), 200).save(path)
    return str(path)


def _case(path: str, *, known: bool, decision: str, matched: str | None, correct: list[bool], d0: float):
    neighbours = [
        Neighbour(path=path, label="A" if c else "B", distance=d0 + 0.1 * i, correct=c)
        for i, c in enumerate(correct)
    ]
    return SearchCase(
        path, "A", known, decision, matched, d0, 0.5, neighbours, title="A latin capital letter a"
    )


def test_outcomes_of_known_and_left_out_queries(image: str) -> None:
    assert (
        _case(image, known=True, decision="match", matched="A", correct=[True], d0=0.1).outcome
        == "correct match"
    )
    assert (
        _case(image, known=True, decision="match", matched="B", correct=[False], d0=0.1).outcome
        == "wrong match"
    )
    assert _case(image, known=True, decision="no match", matched=None, correct=[True], d0=0.9).outcome == (
        "missed (no match)"
    )
    assert _case(image, known=False, decision="no match", matched=None, correct=[False], d0=0.9).good
    assert (
        _case(image, known=False, decision="match", matched="B", correct=[False], d0=0.2).outcome
        == "false match"
    )


def test_outcome_rows_count_the_three_outcomes_by_hand(image: str) -> None:
    known = [
        _case(image, known=True, decision="match", matched="A", correct=[True], d0=0.1),  # right
        _case(image, known=True, decision="match", matched="A", correct=[True], d0=0.2),  # right
        _case(image, known=True, decision="match", matched="B", correct=[False], d0=0.1),  # wrong
        _case(image, known=True, decision="no match", matched=None, correct=[True], d0=0.9),  # none
    ]
    unknown = [
        _case(image, known=False, decision="match", matched="B", correct=[False], d0=0.2),  # wrong
        _case(image, known=False, decision="no match", matched=None, correct=[False], d0=0.9),
        _case(image, known=False, decision="no match", matched=None, correct=[False], d0=0.8),
    ]
    mated, non_mated = outcome_rows(known + unknown)
    assert (mated.searches, mated.right_match, mated.wrong_match, mated.no_match) == (4, 2, 1, 1)
    assert (non_mated.searches, non_mated.right_match, non_mated.wrong_match, non_mated.no_match) == (
        3,
        0,
        1,
        2,
    )
    assert mated.share(2) == "50.0% (2)"


def test_worst_first_orders_by_outcome_then_rank_of_the_own_class(image: str) -> None:
    ok = _case(image, known=True, decision="match", matched="A", correct=[True, False], d0=0.1)
    absent = _case(image, known=True, decision="match", matched="B", correct=[False, False], d0=0.2)
    second = _case(image, known=True, decision="match", matched="B", correct=[False, True], d0=0.2)
    third = _case(image, known=True, decision="match", matched="B", correct=[False, False, True], d0=0.2)
    assert worst_first([ok, second, absent, third]) == [absent, third, second, ok]


def test_image_data_uri_is_a_small_png(image: str) -> None:
    uri = image_data_uri(image, size=16)
    assert uri.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert decoded.size == (16, 16)


def test_figures_are_png_bytes() -> None:
    epochs = [{"epoch": 1, "loss": 0.3}, {"epoch": 2, "loss": 0.2}]
    evals = [{"epoch": 0, "hit_rate@1": 0.1}, {"epoch": 2, "hit_rate@1": 0.5}]
    assert training_figure(epochs, evals, metrics=["hit_rate@1"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert training_figure([], evals, metrics=["hit_rate@1"]) is None
    png = roc_figure(
        np.array([0, 0.5, 1]), np.array([0, 0.8, 1]), threshold_far=0.0, threshold_tar=0.3, label="t"
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    det = det_figure(
        {"nearest": (np.array([0.0, 0.1, 1.0]), np.array([1.0, 0.4, 0.0]))}, marks=[(0.05, 0.5, "t")]
    )
    assert det[:8] == b"\x89PNG\r\n\x1a\n"
    sizes = gallery_size_figure([10, 100], {"fpir": [0.04, 0.05]}, xlabel="n", reference=(0.05, "target"))
    assert sizes[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_shows_the_table_and_escapes_text(image: str, tmp_path: Path) -> None:
    data = ReportData(
        title="demo <b>",
        dataset="glyphs & co",
        facts=[("images", "10")],
        split_rows=[{"split": "test", "classes": 2, "queries": 2, "images": 8}],
        config_yaml="data: {root: x}\n",
        ks=[1, 10],
        before={"hit_rate@1": 0.25, "recall@1": 0.05, "hit_rate@10": 0.5, "recall@10": 0.2, "map@r": 0.1},
        after={"hit_rate@1": 0.75, "recall@1": 0.15, "hit_rate@10": 0.9, "recall@10": 0.6, "map@r": 0.4},
        searches=[_case(image, known=True, decision="match", matched="A", correct=[True], d0=0.1)],
        no_match=[_case(image, known=False, decision="no match", matched=None, correct=[False], d0=0.9)],
        stages=[("train", 12.0), ("report", 1.0)],
        commands=[("page", "lookalike serve --gallery g")],
        outcomes=outcome_rows(
            [
                _case(image, known=True, decision="match", matched="A", correct=[True], d0=0.1),
                _case(image, known=False, decision="match", matched="B", correct=[False], d0=0.1),
            ]
        ),
    )
    html = render_report(data)
    assert "demo &lt;b&gt;" in html and "glyphs &amp; co" in html
    assert re.search(
        r'<td>hit_rate@1</td><td class="num">0.250</td><td class="num">0.750</td>'
        r'<td class="num up">\+0.500</td>',
        html,
    )
    assert "<td>map@r</td>" in html and "hit_rate@50" not in html  # only the ks computed
    assert html.count("data:image/png;base64,") == 4  # two queries and their neighbours, inlined
    assert "correct no match" in html and "13 s" in html
    assert re.search(r"<td>known objects \(mated searches\): 1</td><td class=\"num\">100.0% \(1\)</td>", html)
    assert re.search(
        r"<td>unknown objects \(non-mated\): 1</td><td class=\"num\">–</td><td class=\"num\">100.0% \(1\)",
        html,
    )
    path = write_report(tmp_path / "r" / "report.html", data)
    assert path.read_text(encoding="utf-8") == html
