"""Class-disjoint splits, query/gallery roles, determinism and the protocols."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lookalike.data import is_gallery, is_query, split_manifest


def _frame(counts: dict[str, int]) -> pd.DataFrame:
    rows = [(f"/data/{label}/{i:03d}.png", label) for label, n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "label"])


def _assert_class_disjoint(frame: pd.DataFrame) -> None:
    assert (frame.groupby("label")["split"].nunique() == 1).all()


def _assignment(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    return {p: (s, r) for p, s, r in zip(frame["path"], frame["split"], frame["role"], strict=True)}


def test_class_disjoint_with_one_query_per_eval_class() -> None:
    frame = _frame({f"c{i:02d}": 5 for i in range(40)})
    result = split_manifest(frame, val=0.1, test=0.2, seed=3)
    out = result.frame
    _assert_class_disjoint(out)
    classes = out.groupby("split")["label"].nunique().to_dict()
    assert classes == {"train": 28, "val": 4, "test": 8}
    evaluated = out[out["split"] != "train"]
    assert (evaluated.groupby("label")["role"].apply(lambda r: (r == "query").sum()) == 1).all()
    assert set(evaluated["role"]) == {"query", "gallery"}
    assert set(out.loc[out["split"] == "train", "role"]) == {"train"}
    assert list(out.index) == list(frame.index) and list(out["path"]) == list(frame["path"])
    assert (out["split_seed"] == 3).all()
    assert list(result.summary.columns) == ["split", "role", "classes", "images"]
    assert result.summary.set_index(["split", "role"])["images"].to_dict() == {
        ("train", "train"): 140,
        ("val", "query"): 4,
        ("val", "gallery"): 16,
        ("test", "query"): 8,
        ("test", "gallery"): 32,
    }


def test_deterministic_order_independent_and_seed_dependent() -> None:
    frame = _frame({f"c{i:02d}": 3 + i % 4 for i in range(50)})
    first = _assignment(split_manifest(frame, seed=0).frame)
    again = _assignment(split_manifest(frame, seed=0).frame)
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert _assignment(split_manifest(shuffled, seed=0).frame) == first == again
    assert _assignment(split_manifest(frame, seed=1).frame) != first


def test_queries_per_class_and_too_small_classes_go_to_train() -> None:
    frame = _frame({**{f"c{i:02d}": 4 for i in range(20)}, "tiny1": 1, "tiny2": 2, "tiny3": 3})
    result = split_manifest(frame, val=0.25, test=0.25, seed=0, queries_per_class=3)
    out = result.frame
    assert result.too_small_classes == ("tiny1", "tiny2", "tiny3")
    assert result.n_classes_too_small == 3
    assert set(out.loc[out["label"].str.startswith("tiny"), "split"]) == {"train"}
    evaluated = out[out["split"] != "train"]
    assert evaluated["label"].nunique() == 10  # fractions are of the 20 evaluable classes
    assert (evaluated.groupby("label")["role"].apply(lambda r: (r == "query").sum()) == 3).all()


def test_leave_one_out_marks_every_eval_image_query_and_gallery() -> None:
    frame = _frame({**{f"c{i:02d}": 3 for i in range(10)}, "single": 1})
    out = split_manifest(frame, val=0.2, test=0.2, protocol="leave-one-out").frame
    evaluated = out["split"] != "train"
    assert set(out.loc[evaluated, "role"]) == {"query+gallery"}
    assert (is_query(out) == evaluated.to_numpy()).all()
    assert (is_gallery(out) == evaluated.to_numpy()).all()
    assert out.loc[out["label"] == "single", "split"].item() == "train"


def test_masks_read_the_plain_roles() -> None:
    frame = pd.DataFrame(
        {"path": list("abcd"), "label": list("xxyy"), "role": ["train", "query", "gallery", "query"]}
    )
    assert is_query(frame).tolist() == [False, True, False, True]
    assert is_gallery(frame).tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match=r"unknown role value\(s\) \['probe'\]"):
        is_query(frame.assign(role=["probe"] * 4))
    with pytest.raises(ValueError, match="no 'role' column"):
        is_gallery(frame.drop(columns="role"))


def test_keep_benchmark_split() -> None:
    frame = _frame({"a": 3, "b": 3, "c": 3, "d": 1})
    frame["split"] = frame["label"].map({"a": "train", "b": "train", "c": "test", "d": "test"})
    result = split_manifest(frame, keep_benchmark_split=True, seed=0)
    out = result.frame
    assert list(out["split"]) == list(frame["split"])
    assert set(out.loc[out["split"] == "train", "role"]) == {"train"}
    assert sorted(out.loc[out["label"] == "c", "role"]) == ["gallery", "gallery", "query"]
    assert out.loc[out["label"] == "d", "role"].item() == "gallery"  # too small: a distractor
    assert result.too_small_classes == ("d",)

    inshop = _frame({"t": 2, "q": 3})
    inshop["split"] = ["train", "train", "test", "test", "test"]
    inshop["role"] = ["train", "train", "gallery", "query", "gallery"]
    kept = split_manifest(inshop, keep_benchmark_split=True).frame
    assert list(kept["role"]) == list(inshop["role"])
    loo = split_manifest(inshop, keep_benchmark_split=True, protocol="leave-one-out").frame
    assert list(loo["role"]) == ["train", "train"] + ["query+gallery"] * 3

    mixed = frame.assign(split=["train", "test"] + ["train"] * 8)
    with pytest.raises(ValueError, match=r"not class-disjoint: class\(es\) \['a'\]"):
        split_manifest(mixed, keep_benchmark_split=True)
    with pytest.raises(ValueError, match="no 'split' column"):
        split_manifest(frame.drop(columns="split"), keep_benchmark_split=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val": 0.5, "test": 0.5}, r"val \+ test = 0.5 \+ 0.5 = 1: expected less than 1"),
        ({"val": -0.1}, r"val=-0.1: expected a fraction of classes in \[0, 1\)"),
        ({"test": 1.2}, r"test=1.2"),
        ({"seed": -1}, r"seed=-1: expected a non-negative integer"),
        ({"queries_per_class": 0}, r"queries_per_class=0: expected an integer >= 1"),
        ({"protocol": "loo"}, r"protocol='loo': expected one of \['query-gallery', 'leave-one-out'\]"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_manifest(_frame({"a": 3, "b": 3, "c": 3}), **kwargs)


def test_too_few_classes_to_keep_any_for_training() -> None:
    with pytest.raises(ValueError, match="leaves no class to train"):
        split_manifest(_frame({"a": 3, "b": 3}), val=0.1, test=0.2)


def test_source_sha_is_recorded_and_input_untouched() -> None:
    frame = _frame({f"c{i}": 3 for i in range(10)})
    before = frame.copy()
    out = split_manifest(frame, source_sha256="ab" * 32).frame
    assert set(out["source_sha256"]) == {"ab" * 32}
    pd.testing.assert_frame_equal(frame, before)
    assert np.array_equal(out.index, frame.index)
