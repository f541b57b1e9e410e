"""Importers for the standard metric-learning benchmarks, in their own published layouts.

Each returns a manifest frame (``path`` absolute str, ``label`` str) plus the benchmark's own
split in a ``split`` column (``train``/``test``), so that published numbers can be reproduced
with ``split_manifest(..., keep_benchmark_split=True)``:

- ``cub``: ``images.txt``, ``image_class_labels.txt``, ``classes.txt`` (optional). Split: classes
  1-100 train, 101-200 test, the DML protocol (``train_test_split.txt`` is the classification
  split and is not used).
- ``sop``: ``Ebay_train.txt``, ``Ebay_test.txt``. Split by file.
- ``inshop``: ``list_eval_partition.txt`` (in the root or ``Eval/``). Split train / test, and
  ``role`` train / query / gallery as published.
- ``folder``: a folder per class; no split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lookalike.data.manifest import ManifestError, manifest_from_folder, read_manifest

__all__ = [
    "FORMATS",
    "detect_format",
    "import_manifest",
    "manifest_from_cub",
    "manifest_from_inshop",
    "manifest_from_sop",
]

FORMATS: tuple[str, ...] = ("auto", "manifest", "folder", "cub", "sop", "inshop")
CUB_TRAIN_CLASSES = 100  # DML protocol: classes 1..100 train, 101..200 test


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _need(root: Path, names: list[str], fmt: str) -> None:
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise ManifestError(f"{fmt} import: {str(root)!r} lacks {missing}; the {fmt} layout needs {names}")


def _fields(row: list[str], n: int, file: Path, line_no: int, expected: str) -> list[str]:
    if len(row) < n:
        raise ManifestError(
            f"{file.name} line {line_no}: {' '.join(row)!r} has {len(row)} field(s); expected {expected}"
        )
    return row


def manifest_from_cub(root: str | Path) -> pd.DataFrame:
    """CUB-200-2011 (``CUB_200_2011/``): ``images.txt`` (``<image_id> <path under images/>``) and
    ``image_class_labels.txt`` (``<image_id> <class_id>``).

    Labels are the class names of ``classes.txt`` (``001.Black_footed_Albatross``), or the class
    id when that file is absent. Columns: path, label, class_id (int), split (classes 1-100
    ``train``, 101-200 ``test``), in ``images.txt`` order.
    """
    root = Path(root).resolve()
    _need(root, ["images.txt", "image_class_labels.txt"], "cub")
    images = {
        r[0]: r[1]
        for i, r in enumerate(_lines(root / "images.txt"), 1)
        if _fields(r, 2, root / "images.txt", i, "'<image_id> <path>'")
    }
    classes: dict[int, str] = {}
    if (root / "classes.txt").is_file():
        for i, r in enumerate(_lines(root / "classes.txt"), 1):
            _fields(r, 2, root / "classes.txt", i, "'<class_id> <name>'")
            classes[int(r[0])] = r[1]
    labels: dict[str, int] = {}
    for i, r in enumerate(_lines(root / "image_class_labels.txt"), 1):
        _fields(r, 2, root / "image_class_labels.txt", i, "'<image_id> <class_id>'")
        labels[r[0]] = int(r[1])
    unlabelled = [k for k in images if k not in labels]
    if unlabelled:
        raise ManifestError(
            f"cub import: image id(s) {unlabelled[:10]} of images.txt have no line in image_class_labels.txt"
        )
    rows = []
    for image_id, rel in images.items():
        class_id = labels[image_id]
        rows.append(
            {
                "path": str(root / "images" / rel),
                "label": classes.get(class_id, str(class_id)),
                "class_id": class_id,
                "split": "train" if class_id <= CUB_TRAIN_CLASSES else "test",
            }
        )
    return pd.DataFrame(rows, columns=["path", "label", "class_id", "split"])


def manifest_from_sop(root: str | Path) -> pd.DataFrame:
    """Stanford Online Products (``Stanford_Online_Products/``): ``Ebay_train.txt`` and
    ``Ebay_test.txt``, each with the header ``image_id class_id super_class_id path``.

    Labels are the class ids. Columns: path, label, super_class_id (int), split (``train``/``test``
    by file), train rows first.
    """
    root = Path(root).resolve()
    _need(root, ["Ebay_train.txt", "Ebay_test.txt"], "sop")
    rows = []
    for split in ("train", "test"):
        file = root / f"Ebay_{split}.txt"
        lines = _lines(file)
        if not lines or lines[0][:4] != ["image_id", "class_id", "super_class_id", "path"]:
            raise ManifestError(
                f"sop import: {file.name} starts with {lines[0] if lines else '(nothing)'}; expected the "
                "header 'image_id class_id super_class_id path'"
            )
        for i, r in enumerate(lines[1:], 2):
            _fields(r, 4, file, i, "'<image_id> <class_id> <super_class_id> <path>'")
            rows.append(
                {"path": str(root / r[3]), "label": r[1], "super_class_id": int(r[2]), "split": split}
            )
    return pd.DataFrame(rows, columns=["path", "label", "super_class_id", "split"])


_INSHOP_STATUS = {"train": "train", "query": "test", "gallery": "test"}


def manifest_from_inshop(root: str | Path) -> pd.DataFrame:
    """In-Shop Clothes Retrieval: ``list_eval_partition.txt`` (in ``root`` or ``root/Eval``): a count
    line, the header ``image_name item_id evaluation_status``, then one line per image with status
    ``train``, ``query`` or ``gallery``.

    Image paths (``img/...``) are taken relative to ``root/Img`` when that folder exists, else to
    ``root``. Labels are the item ids. Columns: path, label, split (``train``/``test``), role
    (``train``/``query``/``gallery``, as published).
    """
    root = Path(root).resolve()
    file = next(
        (
            f
            for f in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt")
            if f.is_file()
        ),
        None,
    )
    if file is None:
        raise ManifestError(f"inshop import: no list_eval_partition.txt in {str(root)!r} or its Eval/ folder")
    base = root / "Img" if (root / "Img").is_dir() else root
    lines = _lines(file)
    try:
        start = next(
            i for i, r in enumerate(lines[:3]) if r[:3] == ["image_name", "item_id", "evaluation_status"]
        )
    except StopIteration:
        raise ManifestError(
            f"inshop import: {file.name} has no header line 'image_name item_id evaluation_status' "
            "among its first lines"
        ) from None
    rows = []
    for i, r in enumerate(lines[start + 1 :], start + 2):
        _fields(r, 3, file, i, "'<image_name> <item_id> <evaluation_status>'")
        if r[2] not in _INSHOP_STATUS:
            raise ManifestError(
                f"inshop import: {file.name} line {i}: evaluation_status {r[2]!r}; expected one of "
                f"{list(_INSHOP_STATUS)}"
            )
        rows.append({"path": str(base / r[0]), "label": r[1], "split": _INSHOP_STATUS[r[2]], "role": r[2]})
    return pd.DataFrame(rows, columns=["path", "label", "split", "role"])


def detect_format(source: str | Path) -> str:
    """The format :func:`import_manifest` reads ``source`` as, when asked for ``"auto"``.

    A file is a ``manifest``; a folder holding ``images.txt`` and ``image_class_labels.txt`` is
    ``cub``, one holding ``Ebay_train.txt`` is ``sop``, one holding ``list_eval_partition.txt``
    (or ``Eval/list_eval_partition.txt``) is ``inshop``; any other folder is ``folder``.
    """
    source = Path(source)
    if source.is_file():
        return "manifest"
    if not source.is_dir():
        raise ManifestError(f"no file or folder at {str(source)!r}")
    if (source / "images.txt").is_file() and (source / "image_class_labels.txt").is_file():
        return "cub"
    if (source / "Ebay_train.txt").is_file():
        return "sop"
    if (source / "list_eval_partition.txt").is_file() or (
        source / "Eval" / "list_eval_partition.txt"
    ).is_file():
        return "inshop"
    return "folder"


def import_manifest(source: str | Path, *, format: str = "auto") -> pd.DataFrame:
    """Read ``source`` in the given format (see :data:`FORMATS`; ``auto`` uses :func:`detect_format`).

    ``manifest`` reads an existing manifest without the value checks (``read_manifest(strict=False)``),
    so that a validation step can report bad rows itself.
    """
    if format not in FORMATS:
        raise ManifestError(f"unknown manifest format {format!r}; expected one of {list(FORMATS)}")
    fmt = detect_format(source) if format == "auto" else format
    readers = {
        "manifest": lambda s: read_manifest(s, strict=False),
        "folder": manifest_from_folder,
        "cub": manifest_from_cub,
        "sop": manifest_from_sop,
        "inshop": manifest_from_inshop,
    }
    return readers[fmt](source)
