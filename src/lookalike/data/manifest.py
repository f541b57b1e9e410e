"""Manifests: the one table every stage reads.

A manifest is a CSV or Parquet file with at least the columns ``path`` and ``label``, one row per
image. Paths in the file are relative to the manifest's folder or absolute; in memory (what
:func:`read_manifest` returns) they are absolute strings. Labels are strings. Any other columns
(``split``, ``role``, ...) are carried along untouched.

Rows are numbered from 0, the header not counted; a frame read from a file keeps that number as
its index, and errors and row ids refer to it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lookalike._io import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "MANIFEST_SUFFIXES",
    "REQUIRED_COLUMNS",
    "ManifestError",
    "check_values",
    "file_sha256",
    "is_image_file",
    "manifest_from_folder",
    "read_manifest",
    "write_manifest",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
)
MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "label")
_MAX_ROWS_IN_MESSAGE = 10


class ManifestError(ValueError):
    """A manifest that cannot be used as it is; the message names the file, rows and values."""


def is_image_file(path: str | Path) -> bool:
    """True for a visible file whose extension (any case) is one of :data:`IMAGE_EXTENSIONS`."""
    path = Path(path)
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def manifest_from_folder(root: str | Path) -> pd.DataFrame:
    """Build a manifest from a folder tree in which each class is a folder.

    Folders may nest: the label is the image's folder relative to ``root`` in POSIX form, so
    ``Greek/character03`` and ``Latin/character03`` are different classes. Images are found by
    extension (:data:`IMAGE_EXTENSIONS`, any case); hidden files and folders and non-images are
    skipped, and so are images lying directly in ``root`` (they have no class folder).

    Returns a frame with columns ``path`` (absolute str) and ``label`` (str), sorted by path.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(
            f"manifest_from_folder: {str(root)!r} is not a folder; expected a folder "
            "holding one sub-folder of images per class"
        )
    root = root.resolve()
    rows: list[tuple[str, str]] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        if rel == Path("."):
            continue
        label = rel.as_posix()
        rows.extend((str(Path(folder) / name), label) for name in filenames if is_image_file(name))
    if not rows:
        raise ManifestError(
            f"manifest_from_folder: no images found in class folders under {str(root)!r}; expected "
            f"<root>/<class>/<image> with extensions {sorted(IMAGE_EXTENSIONS)}"
        )
    return pd.DataFrame(sorted(rows), columns=list(REQUIRED_COLUMNS))


def _check_suffix(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise ManifestError(
            f"{what}: unsupported manifest suffix {path.suffix!r} in {str(path)!r}; "
            f"expected one of {list(MANIFEST_SUFFIXES)}"
        )
    return suffix


def _rows_text(rows: Iterable[object]) -> str:
    rows = list(rows)
    text = ", ".join(str(r) for r in rows[:_MAX_ROWS_IN_MESSAGE])
    more = len(rows) - _MAX_ROWS_IN_MESSAGE
    return text + (f" and {more} more" if more > 0 else "")


def _read_table(path: Path) -> pd.DataFrame:
    suffix = _check_suffix(path, "read_manifest")
    if not path.is_file():
        raise ManifestError(f"read_manifest: no manifest file at {str(path)!r}")
    if suffix == ".csv":
        # keep_default_na=False: a label such as "NA" or "None" stays a string.
        frame = pd.read_csv(path, dtype={"path": str, "label": str}, keep_default_na=False)
    else:
        frame = pd.read_parquet(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"read_manifest: {str(path)!r} has no column(s) {missing}; found columns "
            f"{list(frame.columns)}, expected at least {list(REQUIRED_COLUMNS)}"
        )
    return frame


def _as_clean_str(column: pd.Series) -> pd.Series:
    return column.map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))


def _resolve_paths(paths: pd.Series, folder: Path) -> pd.Series:
    def resolve(p: str) -> str:
        if not p:
            return p
        return os.path.normpath(os.path.join(folder, os.path.expanduser(p)))

    return paths.map(resolve)


def check_values(frame: pd.DataFrame, *, source: str = "manifest") -> None:
    """Raise :class:`ManifestError` on empty paths, empty labels or duplicated paths, naming rows."""
    problems = []
    for column in REQUIRED_COLUMNS:
        empty = frame.index[frame[column].astype(str).str.strip() == ""]
        if len(empty):
            problems.append(f"empty {column} in row(s) {_rows_text(empty)}")
    dup = frame.index[frame["path"].duplicated() & (frame["path"] != "")]
    if len(dup):
        first = frame["path"][frame.index == dup[0]].iloc[0]
        problems.append(f"duplicated path in row(s) {_rows_text(dup)} (first: {first!r})")
    if problems:
        raise ManifestError(
            f"{source}: " + "; ".join(problems) + ". Every row needs a non-empty, unique path and a "
            "non-empty label; `lookalike manifest MANIFEST --out FILE --drop-invalid` writes a clean copy"
        )


def read_manifest(path: str | Path, *, strict: bool = True) -> pd.DataFrame:
    """Read a manifest (CSV or Parquet by suffix).

    Returns a frame with ``path`` as absolute str (relative paths are resolved against the
    manifest's folder), ``label`` as str, and every other column as stored. The index is the
    0-based data row of the file. With ``strict`` (the default) empty paths or labels and
    duplicated paths are an error naming the rows; ``strict=False`` only checks the structure
    (suffix, file, columns), for tools that report such rows themselves.
    """
    path = Path(path)
    frame = _read_table(path)
    frame = frame.reset_index(drop=True)
    frame["path"] = _as_clean_str(frame["path"])
    frame["label"] = _as_clean_str(frame["label"])
    frame["path"] = _resolve_paths(frame["path"], path.resolve().parent)
    ordered = list(REQUIRED_COLUMNS) + [c for c in frame.columns if c not in REQUIRED_COLUMNS]
    frame = frame[ordered]
    if strict:
        check_values(frame, source=f"read_manifest {str(path)!r}")
    return frame


def _relative_if_inside(p: str, folder: Path) -> str:
    path = Path(p)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return Path(os.path.normpath(path)).relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def write_manifest(frame: pd.DataFrame, path: str | Path, *, relative_to: str | Path | None = None) -> Path:
    """Write ``frame`` as a manifest, atomically (a temporary file in the same folder, then rename).

    CSV or Parquet by the suffix of ``path``. Paths under ``relative_to`` (default: the manifest's
    folder) are stored relative to it, so a data folder and its manifest can move together;
    other paths are stored absolute. ``path`` and ``label`` come first, other columns follow in
    their order; the index is not written. Returns the absolute path written.
    """
    path = Path(path)
    suffix = _check_suffix(path, "write_manifest")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"write_manifest: the frame has no column(s) {missing}; found {list(frame.columns)}, "
            f"expected at least {list(REQUIRED_COLUMNS)}"
        )
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(relative_to).resolve() if relative_to is not None else path.parent
    out = frame.copy()
    out["path"] = [_relative_if_inside(str(p), folder) for p in out["path"]]
    out["label"] = out["label"].astype(str)
    ordered = list(REQUIRED_COLUMNS) + [c for c in out.columns if c not in REQUIRED_COLUMNS]
    out = out[ordered].reset_index(drop=True)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            out.to_csv(tmp, index=False)
        else:
            out.to_parquet(tmp, index=False)
    return path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
