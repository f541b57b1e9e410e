"""Manifest validation: every bad row found, named by row and path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lookalike.data import ManifestProblem, drop_problems, find_problems


def test_finds_each_kind_of_problem_by_row(tmp_path: Path, make_image) -> None:
    good = str(make_image(tmp_path / "a" / "good.png"))
    other = str(make_image(tmp_path / "a" / "other.jpg"))
    corrupt = tmp_path / "a" / "corrupt.png"
    corrupt.write_bytes(b"this is not a png")
    truncated = tmp_path / "a" / "truncated.png"
    truncated.write_bytes(make_image(tmp_path / "full.png", size=(64, 64)).read_bytes()[:60])
    missing = str(tmp_path / "a" / "missing.png")
    frame = pd.DataFrame(
        {
            "path": [good, missing, str(corrupt), good, other, "", str(truncated), str(tmp_path / "a")],
            "label": ["a", "a", "a", "a", " ", "a", "a", "a"],
        }
    )

    problems = find_problems(frame)

    assert [(p.row, p.path) for p in problems] == [
        (1, missing),
        (2, str(corrupt)),
        (3, good),
        (4, other),
        (5, ""),
        (6, str(truncated)),
        (7, str(tmp_path / "a")),
    ]
    reasons = [p.reason for p in problems]
    assert reasons[0] == "missing file"
    assert reasons[1].startswith("not a decodable image")
    assert reasons[2] == "duplicated path (first in row 0)"
    assert reasons[3] == "empty label"
    assert reasons[4] == "empty path"
    assert reasons[5].startswith("not a decodable image")
    assert reasons[6] == "not a file"
    assert str(problems[0]) == f"row 1: {missing!r}: missing file"

    kept = drop_problems(frame, problems)
    assert list(kept.index) == [0]
    assert find_problems(frame, check_files=False) == [
        ManifestProblem(3, good, "duplicated path (first in row 0)"),
        ManifestProblem(4, other, "empty label"),
        ManifestProblem(5, "", "empty path"),
    ]
