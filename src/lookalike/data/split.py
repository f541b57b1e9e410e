"""Class-disjoint splitting into train / val / test, and query / gallery roles for evaluation.

The protocol is the point: a model is measured on classes it never saw in training. Every class
lies wholly in one split; the images of a val or test class are its queries and its gallery
(see :mod:`lookalike.data.roles` for the encoding).

The result depends only on the set of (path, label) rows and the seed, never on row order:
classes and paths are sorted before any seeded draw.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from lookalike.data.manifest import (
    REQUIRED_COLUMNS,
    check_values,
    file_sha256,
    manifest_from_folder,
    read_manifest,
    write_manifest,
)
from lookalike.data.roles import (
    ROLE_GALLERY,
    ROLE_QUERY,
    ROLE_QUERY_GALLERY,
    ROLE_TRAIN,
    ROLES,
    SPLITS,
)

__all__ = [
    "PROTOCOLS",
    "SPLIT_FILE",
    "SplitResult",
    "SplitSource",
    "resolve_split",
    "sorted_class_split",
    "split_manifest",
    "split_summary",
]

PROTOCOLS: tuple[str, ...] = ("query-gallery", "leave-one-out")


@dataclass(frozen=True)
class SplitResult:
    """What :func:`split_manifest` returns.

    - ``frame``: the input rows (same order and index) plus ``split``, ``role``, ``split_seed``
      (int) and ``source_sha256`` (the caller's record of the input file; ``""`` when none given).
    - ``summary``: one row per (split, role) present, columns ``split``, ``role``, ``classes``,
      ``images``.
    - ``n_classes_too_small`` / ``too_small_classes``: classes with too few images to be evaluated
      (fewer than ``queries_per_class + 1``; fewer than 2 for leave-one-out). With a fresh split they
      go to train; with ``keep_benchmark_split`` they stay where the benchmark put them, every
      image in the gallery (a distractor), never a query.
    """

    frame: pd.DataFrame
    summary: pd.DataFrame
    n_classes_too_small: int
    too_small_classes: tuple[str, ...]
    seed: int
    protocol: str
    source_sha256: str


def _check_args(val: float, test: float, seed: int, queries_per_class: int, protocol: str) -> None:
    for name, value in (("val", val), ("test", test)):
        if not (isinstance(value, int | float) and 0.0 <= value < 1.0):
            raise ValueError(f"{name}={value!r}: expected a fraction of classes in [0, 1)")
    if val + test >= 1.0:
        raise ValueError(
            f"val + test = {val} + {test} = {val + test:g}: expected less than 1, so that some classes train"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    if isinstance(queries_per_class, bool) or not isinstance(queries_per_class, int) or queries_per_class < 1:
        raise ValueError(f"queries_per_class={queries_per_class!r}: expected an integer >= 1")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}: expected one of {list(PROTOCOLS)}")


def _n_classes(fraction: float, n: int) -> int:
    """Classes for a fraction of ``n``: rounded half up, at least 1 for a positive fraction."""
    if fraction == 0 or n == 0:
        return 0
    return max(1, math.floor(fraction * n + 0.5))


def _class_rng(seed: int, label: str) -> np.random.Generator:
    # One stream per class: a class's queries do not change when other classes come or go.
    return np.random.default_rng([int(seed), zlib.crc32(label.encode("utf-8"))])


def _eval_roles(
    paths: pd.Series, label: str, *, seed: int, queries_per_class: int, protocol: str, too_small: bool
) -> pd.Series:
    """Roles for the rows of one val/test class (index kept)."""
    if too_small:
        return pd.Series(ROLE_GALLERY, index=paths.index)
    if protocol == "leave-one-out":
        return pd.Series(ROLE_QUERY_GALLERY, index=paths.index)
    ordered = paths.sort_values(kind="stable")
    picks = _class_rng(seed, label).choice(len(ordered), size=queries_per_class, replace=False)
    roles = pd.Series(ROLE_GALLERY, index=paths.index)
    roles.loc[ordered.index[picks]] = ROLE_QUERY
    return roles


def split_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Classes and images per (split, role) of a split frame, in the order train, val, test."""
    rows = []
    for split in SPLITS:
        for role in ROLES:
            part = frame[(frame["split"] == split) & (frame["role"] == role)]
            if len(part):
                rows.append(
                    {"split": split, "role": role, "classes": part["label"].nunique(), "images": len(part)}
                )
    return pd.DataFrame(rows, columns=["split", "role", "classes", "images"])


def _benchmark_splits(frame: pd.DataFrame) -> dict[str, str]:
    if "split" not in frame.columns:
        raise ValueError(
            "keep_benchmark_split=True but the manifest has no 'split' column; import the benchmark with "
            "`lookalike manifest DIR --format cub|sop|inshop`, or split it with keep_benchmark_split=False"
        )
    bad = sorted(set(frame["split"].astype(str)) - set(SPLITS))
    if bad:
        raise ValueError(f"unknown value(s) {bad} in the 'split' column; expected one of {list(SPLITS)}")
    per_class = frame.groupby("label")["split"].nunique()
    mixed = sorted(per_class.index[per_class > 1])
    if mixed:
        raise ValueError(
            f"the benchmark's split is not class-disjoint: class(es) {mixed[:10]} lie in more than one split"
        )
    return frame.groupby("label")["split"].first().astype(str).to_dict()


def _kept_roles(frame: pd.DataFrame) -> pd.Series | None:
    """The benchmark's own roles (In-Shop), when present and consistent; else None."""
    if "role" not in frame.columns:
        return None
    roles = frame["role"].astype(str)
    bad = sorted(set(roles) - set(ROLES))
    if bad:
        raise ValueError(f"unknown value(s) {bad} in the 'role' column; expected one of {list(ROLES)}")
    wrong = frame.index[(frame["split"] == "train") != (roles == ROLE_TRAIN)]
    if len(wrong):
        raise ValueError(
            f"row(s) {list(wrong[:10])}: role and split disagree; rows of split 'train' need role 'train' "
            "and only those"
        )
    return roles


def split_manifest(
    frame: pd.DataFrame,
    *,
    val: float = 0.1,
    test: float = 0.2,
    seed: int = 0,
    queries_per_class: int = 1,
    protocol: str = "query-gallery",
    keep_benchmark_split: bool = False,
    source_sha256: str | None = None,
) -> SplitResult:
    """Split ``frame`` (columns ``path``, ``label``) into class-disjoint train / val / test.

    ``val`` and ``test`` are fractions of the classes that can be evaluated (rounded half up, at
    least one class for a positive fraction); the rest, and every class too small to evaluate, go
    to train. Classes are drawn by a seeded permutation of the sorted class names.

    Roles, protocol ``query-gallery``: in each val/test class ``queries_per_class`` images (a seeded
    draw from its sorted paths) are ``query``, the rest ``gallery``. Protocol ``leave-one-out``:
    every val/test image is ``query+gallery``: each image is a query against all the others.

    ``keep_benchmark_split=True`` keeps the ``split`` column already there (from the CUB, SOP or
    In-Shop importers) and ignores ``val``/``test``; train rows get role ``train``, and the
    test classes get roles as above, except that existing query/gallery roles (In-Shop) are kept
    under the ``query-gallery`` protocol.

    ``source_sha256`` is recorded in the output (the CLI passes the input file's SHA-256), as is
    ``seed``. The input is not modified.
    """
    _check_args(val, test, seed, queries_per_class, protocol)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"split_manifest: the frame has no column(s) {missing}; found {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("split_manifest: the manifest has no rows")
    check_values(frame, source="split_manifest")
    out = frame.copy()
    out["label"] = out["label"].astype(str)
    counts = out.groupby("label").size()
    min_images = 2 if protocol == "leave-one-out" else queries_per_class + 1
    too_small = sorted(counts.index[counts < min_images])

    kept_roles = None
    if keep_benchmark_split:
        split_of = _benchmark_splits(out)
        too_small = [c for c in too_small if split_of[c] != "train"]
        if protocol == "query-gallery":
            kept_roles = _kept_roles(out)
    else:
        split_of = _drawn_splits(counts, min_images, val=val, test=test, seed=int(seed))

    out["split"] = out["label"].map(split_of)
    if kept_roles is not None:
        out["role"] = kept_roles
    else:
        out["role"] = _roles(
            out, set(too_small), seed=int(seed), queries_per_class=queries_per_class, protocol=protocol
        )
    out["split_seed"] = int(seed)
    out["source_sha256"] = source_sha256 or ""
    return SplitResult(
        frame=out,
        summary=split_summary(out),
        n_classes_too_small=len(too_small),
        too_small_classes=tuple(too_small),
        seed=int(seed),
        protocol=protocol,
        source_sha256=source_sha256 or "",
    )


def _drawn_splits(
    counts: pd.Series, min_images: int, *, val: float, test: float, seed: int
) -> dict[str, str]:
    """Split name per class: ``test`` and ``val`` shares of the classes with at least ``min_images``
    images, drawn by a seeded permutation of their sorted names; every other class train."""
    eligible = sorted(counts.index[counts >= min_images])
    n_test, n_val = _n_classes(test, len(eligible)), _n_classes(val, len(eligible))
    n_train = len(counts) - n_test - n_val
    if n_train < 1:
        raise ValueError(
            f"val={val}, test={test} of {len(eligible)} evaluable classes leaves no class to train "
            f"({n_val} val, {n_test} test); use smaller fractions or a manifest with more classes"
        )
    order = [eligible[i] for i in np.random.default_rng(seed).permutation(len(eligible))]
    split_of = dict.fromkeys(counts.index, "train")
    split_of.update(dict.fromkeys(order[:n_test], "test"))
    split_of.update(dict.fromkeys(order[n_test : n_test + n_val], "val"))
    return split_of


def _roles(
    frame: pd.DataFrame, too_small: set[str], *, seed: int, queries_per_class: int, protocol: str
) -> pd.Series:
    """``role`` per row of a frame with ``split``: train rows ``train``, each val/test class's rows
    as :func:`_eval_roles` draws them."""
    roles = pd.Series(ROLE_TRAIN, index=frame.index, dtype=object)
    evaluated = frame[frame["split"] != "train"]
    for label, part in evaluated.groupby("label", sort=True):
        roles.loc[part.index] = _eval_roles(
            part["path"],
            str(label),
            seed=seed,
            queries_per_class=queries_per_class,
            protocol=protocol,
            too_small=label in too_small,
        )
    return roles


# ---- the split of a training run -------------------------------------------------------------------

#: The split manifest a training run writes into its run folder (and reads back on resume).
SPLIT_FILE = "split.csv"


class SplitSource(Protocol):
    """What :func:`resolve_split` reads of a run's data settings (``lookalike.config.DataConfig``
    has these fields; data/ does not import the configuration layer above it)."""

    root: str | Path
    class_order: str
    val: float
    test: float
    seed: int
    queries_per_class: int
    protocol: str


def resolve_split(data: SplitSource, run_dir: Path, *, write: bool = True) -> pd.DataFrame:
    """The split manifest of a run: ``run_dir/split.csv`` if the run has one (resume), else the
    config's source, split class-disjointly (seeded, as ``lookalike split`` does) unless it
    already carries ``split`` and ``role`` columns. With ``write`` the result is saved in the run
    folder."""
    saved = Path(run_dir) / SPLIT_FILE
    if saved.exists():
        return read_manifest(saved)
    root = Path(data.root)
    if root.is_dir():
        frame = manifest_from_folder(root)
    elif root.is_file():
        frame = read_manifest(root)
    else:
        raise FileNotFoundError(
            f"data.root {str(root)!r} does not exist (resolved from {Path.cwd()}); give an image folder "
            "(a folder per class) or a manifest file (CSV/Parquet with path and label columns)"
        )
    if not {"split", "role"} <= set(frame.columns):
        keep = data.class_order == "sorted"
        if keep:
            frame = frame.assign(split=sorted_class_split(frame["label"], val=data.val, test=data.test))
        frame = split_manifest(
            frame,
            val=data.val,
            test=data.test,
            seed=data.seed,
            queries_per_class=data.queries_per_class,
            protocol=data.protocol,
            keep_benchmark_split=keep,
            source_sha256=file_sha256(root) if root.is_file() else None,
        ).frame
    if write:
        write_manifest(frame, saved)
    return frame


def sorted_class_split(labels: pd.Series, *, val: float, test: float) -> pd.Series:
    """``split`` per row when classes are assigned by name: the last ``test`` share of the sorted
    class names is test, the ``val`` share before them val, the rest train."""
    classes = sorted(labels.astype(str).unique())
    n = len(classes)
    n_test, n_val = round(test * n), round(val * n)
    if n - n_test - n_val < 1:
        raise ValueError(f"val={val}, test={test} of {n} classes leaves no class to train")
    split_of = dict.fromkeys(classes[: n - n_test - n_val], "train")
    split_of.update(dict.fromkeys(classes[n - n_test - n_val : n - n_test], "val"))
    split_of.update(dict.fromkeys(classes[n - n_test :], "test"))
    return labels.astype(str).map(split_of)
