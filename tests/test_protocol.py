"""The retrieval protocol: split rows, roles, gallery distances."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lookalike.protocol import (
    ProtocolError,
    check_gallery_distance,
    from_backend,
    gallery_topk,
    role_rows,
    split_of,
    split_rows,
    union_rows,
)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [f"/d/{i}.png" for i in range(7)],
            "label": ["a", "a", "b", "b", "c", "c", "d"],
            "split": ["train", "train", "val", "val", "test", "test", "test"],
            "role": ["train", "train", "query+gallery", "query+gallery", "query", "gallery", "gallery"],
        }
    )


def test_split_rows_by_roles_and_all():
    f = _frame()
    q, g = split_rows(f, "test")
    assert q.index.tolist() == [4] and g.index.tolist() == [5, 6]
    q, g = split_rows(f, "test", queries="all")
    assert q.index.tolist() == [4, 5, 6] and g.index.tolist() == [5, 6]
    q, g = split_rows(f, "val")  # leave-one-out: the same rows are both
    assert q.index.tolist() == g.index.tolist() == [2, 3]
    assert union_rows(q, g) is q
    assert union_rows(*split_rows(f, "test")).index.tolist() == [4, 5, 6]


def test_split_errors_name_the_splits_present():
    with pytest.raises(
        ProtocolError, match=r"no rows of split 'tset'; splits present: \['test', 'train', 'val'\]"
    ):
        split_of(_frame(), "tset")
    assert split_of(_frame(), "tset", require=False).empty
    with pytest.raises(ProtocolError, match="no 'split' column"):
        split_rows(_frame().drop(columns="split"), "val")
    with pytest.raises(ProtocolError, match="'all' or 'roles'"):
        split_rows(_frame(), "val", queries="both")  # type: ignore[arg-type]


def test_role_rows():
    f = _frame()
    assert role_rows(f, "gallery").index.tolist() == [2, 3, 5, 6]
    assert role_rows(f, "query").index.tolist() == [2, 3, 4]
    assert len(role_rows(f, "all")) == 7
    with pytest.raises(ProtocolError, match="gallery, query, all"):
        role_rows(f, "both")


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_gallery_topk_answers_in_gallery_distances(distance):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 8)).astype(np.float32)
    g = rng.normal(size=(9, 8)).astype(np.float32)
    d, rows = gallery_topk(q, g, 4, distance=distance)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    for i in range(5):
        if distance == "euclidean":
            slow = [float(np.linalg.norm(qn[i] - gn[j])) for j in range(9)]
        else:
            slow = [1.0 - float(qn[i] @ gn[j]) for j in range(9)]
        order = np.argsort(slow)[:4]
        assert rows[i].tolist() == order.tolist()
        np.testing.assert_allclose(d[i], np.asarray(slow)[order], atol=1e-5)


def test_gallery_topk_pads_with_inf_and_excludes_own_rows():
    g = np.eye(3, dtype=np.float32)
    d, rows = gallery_topk(g, g, 3, distance="cosine", query_ids=np.arange(3), gallery_ids=np.arange(3))
    assert (rows[:, 2] == -1).all() and np.isinf(d[:, 2]).all()
    np.testing.assert_allclose(d[:, :2], 1.0)


def test_backend_conversions_and_names():
    np.testing.assert_allclose(from_backend(np.array([4.0, -1e-7]), "euclidean"), [2.0, 0.0])
    np.testing.assert_allclose(from_backend(np.array([0.25]), "euclidean", squared_l2=False), [0.25])
    np.testing.assert_allclose(from_backend(np.array([0.75]), "cosine"), [0.25])
    with pytest.raises(ProtocolError, match="valid: euclidean, cosine"):
        check_gallery_distance("dot")


def test_protocol_sits_low_in_the_import_graph():
    code = (
        "import sys, lookalike.protocol, lookalike.metrics.identification\n"
        "high = ('lookalike.embed', 'lookalike.models', 'lookalike.gallery', 'lookalike.training')\n"
        "print(sorted(m for m in sys.modules if m.startswith(high)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
