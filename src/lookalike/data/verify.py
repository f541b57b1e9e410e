"""Manifest validation: find the rows a pipeline would trip over, each named by row and path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

__all__ = ["ManifestProblem", "drop_problems", "find_problems"]


@dataclass(frozen=True)
class ManifestProblem:
    """One bad row: ``row`` is the frame's index label (the 0-based data row of a file read with
    :func:`~lookalike.data.read_manifest`), ``path`` as in the frame, ``reason`` in words."""

    row: int
    path: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.path!r}: {self.reason}"


def _image_problem(path: str) -> str | None:
    p = Path(path)
    if not p.exists():
        return "missing file"
    if not p.is_file():
        return "not a file"
    try:
        with Image.open(p) as image:
            image.load()  # a full decode: verify() alone misses truncated data
    except Exception as exc:  # PIL raises many types for bad data
        return f"not a decodable image ({type(exc).__name__}: {exc})"
    return None


def find_problems(frame: pd.DataFrame, *, check_files: bool = True) -> list[ManifestProblem]:
    """Every problem in ``frame``, in row order: empty path, empty label, duplicated path (each
    repeat after the first), and with ``check_files`` a missing file or one that does not decode
    as an image (a full decode of each file: it reads every image once).

    A row has at most one problem reported: the first of the order above.
    """
    problems: list[ManifestProblem] = []
    seen: dict[str, object] = {}
    for row, path, label in zip(frame.index, frame["path"], frame["label"], strict=True):
        path = "" if pd.isna(path) else str(path)
        label = "" if pd.isna(label) else str(label)
        reason = None
        if not path.strip():
            reason = "empty path"
        elif not label.strip():
            reason = "empty label"
        elif path in seen:
            reason = f"duplicated path (first in row {seen[path]})"
        elif check_files:
            reason = _image_problem(path)
        if path and path not in seen:
            seen[path] = row
        if reason is not None:
            problems.append(ManifestProblem(row=int(row), path=path, reason=reason))
    return problems


def drop_problems(frame: pd.DataFrame, problems: list[ManifestProblem]) -> pd.DataFrame:
    """``frame`` without the rows named in ``problems`` (index kept)."""
    return frame.drop(index=[p.row for p in problems])
