"""The labels-only read (``store.labels()``), on every backend: the item table's ids and labels, in its
order, after adds and removes and in a new process, without reading paths or metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lookalike
from lookalike.gallery import GalleryHeader, GalleryStore, create_gallery, open_gallery

D = 8

# Runs in a new process: prints the labels() of the gallery, then removes, adds and prints them again.
SECOND_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd
    from lookalike.gallery import open_gallery

    def pairs(store):
        labels = store.labels()
        types = {type(i).__name__ for i in labels.index} | {type(v).__name__ for v in labels}
        pairs = [[i, v] for i, v in labels.items()]
        return {"pairs": pairs, "name": labels.index.name, "types": sorted(types)}

    seen = {}
    with open_gallery(sys.argv[1]) as store:
        seen["opened"] = pairs(store)
    with open_gallery(sys.argv[1], writable=True) as store:
        store.remove(["a1"])
        store.add(np.eye(2, 8, dtype="float32"), pd.DataFrame({"id": ["c0", "c1"], "label": ["zeta", "7"]}))
        seen["changed"] = pairs(store)
    print(json.dumps(seen))
    """
)


def _env() -> dict[str, str]:
    src = str(Path(lookalike.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}


def _batch(prefix: str, labels: list[str], **metadata) -> pd.DataFrame:
    ids = [f"{prefix}{i}" for i in range(len(labels))]
    return pd.DataFrame({"id": ids, "label": labels, "path": [f"img/{i}.png" for i in ids], **metadata})


def _from_items(store: GalleryStore) -> pd.Series:
    items = store.items()
    return pd.Series(items["label"].tolist(), index=pd.Index(items["id"].tolist(), name="id"), name="label")


def _check(store: GalleryStore, expected: list[tuple[str, str]]) -> None:
    """labels() equals the item table's id/label columns, row for row, and the hand-written pairs."""
    labels = store.labels()
    assert list(labels.items()) == expected
    pd.testing.assert_series_equal(labels, _from_items(store), check_dtype=False, check_index_type=False)
    assert labels.index.name == "id" and labels.name == "label"
    assert all(type(i) is str for i in labels.index) and all(type(v) is str for v in labels)


def test_labels_follow_adds_and_removes(location, unit):
    with create_gallery(location("g"), GalleryHeader(embed_dim=D)) as store:
        assert isinstance(store, GalleryStore)
        empty = store.labels()
        assert len(empty) == 0 and empty.index.name == "id"
        store.add(unit(4, D, seed=0), _batch("a", ["cat", "dog", "cat", "été"]))
        _check(store, [("a0", "cat"), ("a1", "dog"), ("a2", "cat"), ("a3", "été")])
        # metadata, a label that looks like a number, an id without a path
        more = _batch("b", ["007", "dog"], weight=np.array([1.5, 2.0]), note=["x", None])
        store.add(unit(2, D, seed=1), more)
        store.add(unit(1, D, seed=2), pd.DataFrame({"id": ["n0"], "label": ["eel"]}))
        expected = [("a0", "cat"), ("a1", "dog"), ("a2", "cat"), ("a3", "été"), ("b0", "007"), ("b1", "dog")]
        _check(store, [*expected, ("n0", "eel")])
        assert store.remove(["a2", "b0"]) == 2
        _check(store, [("a0", "cat"), ("a1", "dog"), ("a3", "été"), ("b1", "dog"), ("n0", "eel")])
        assert store.labels().nunique() == 4
        store.remove(store.labels().index.tolist())
        assert len(store.labels()) == 0


def test_labels_read_no_item_rows(location, unit, backend, monkeypatch):
    """The folder store answers from its table's label column (never through items(), and a change to
    the answer leaves the gallery alone); Milvus asks for id, label and seq only (seq orders and pages
    the rows), never path, metadata or vector, in pages of the store's seq range."""
    from lookalike.gallery import milvus_store

    with create_gallery(location("g"), GalleryHeader(embed_dim=D)) as store:
        labels = [f"c{i % 4}" for i in range(23)]
        store.add(unit(23, D, seed=0), _batch("i", labels, note=[f"n{i}" for i in range(23)]))
        if backend == "faiss":
            monkeypatch.setattr(store, "items", lambda *a, **k: pytest.fail("labels() read items()"))
            got = store.labels()
            got.iloc[0] = "changed"
            assert store.labels().tolist() == labels
            return
        asked: list[dict] = []
        query = store._client.query

        def spy(collection, **kwargs):
            asked.append(kwargs)
            return query(collection, **kwargs)

        monkeypatch.setattr(store._client, "query", spy)
        monkeypatch.setattr(milvus_store, "_SEQ_RANGE", 10)
        assert store.labels().tolist() == labels
    assert [sorted(a["output_fields"]) for a in asked] == [["id", "label", "seq"]] * 3  # 23 rows, pages of 10
    assert [a["filter"] for a in asked] == [f"seq >= {lo} and seq < {min(lo + 10, 23)}" for lo in (0, 10, 20)]


def test_labels_in_a_new_process(location, unit):
    loc = location("g")
    with create_gallery(loc, GalleryHeader(embed_dim=D)) as store:
        store.add(unit(3, D, seed=0), _batch("a", ["x", "y", "x"], size=[1, 2, 3]))
        store.add(unit(1, D, seed=1), _batch("b", ["w"]))
        store.remove(["a0"])
    child = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, loc], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, child.stderr[-3000:]
    seen = json.loads(child.stdout.strip().splitlines()[-1])
    assert seen["opened"] == {
        "pairs": [["a1", "y"], ["a2", "x"], ["b0", "w"]],
        "name": "id",
        "types": ["str"],
    }
    after = [["a2", "x"], ["b0", "w"], ["c0", "zeta"], ["c1", "7"]]
    assert seen["changed"] == {"pairs": after, "name": "id", "types": ["str"]}
    with open_gallery(loc) as store:  # and this process reads what the child wrote
        _check(store, [tuple(p) for p in after])


def test_labels_of_some_ids(location, unit, backend, monkeypatch):
    with create_gallery(location("g"), GalleryHeader(embed_dim=D)) as store:
        store.add(unit(6, D, seed=0), _batch("i", ["a", "b", "c", "a", "b", "c"], note=list("uvwxyz")))
        got = store.labels(["i4", "i0", "i4", "i5"])  # the order asked, repeats kept
        assert list(got.items()) == [("i4", "b"), ("i0", "a"), ("i4", "b"), ("i5", "c")]
        assert got.index.name == "id" and got.name == "label"
        assert len(store.labels([])) == 0
        with pytest.raises(KeyError, match="unknown id 'nope'"):
            store.labels(["i1", "nope"])
        with pytest.raises(TypeError, match="not one string"):
            store.labels("i1")
        store.remove(["i0"])
        with pytest.raises(KeyError, match="unknown id 'i0'"):
            store.labels(["i0"])
        if backend == "faiss":
            return
        asked: list[dict] = []
        query = store._client.query
        monkeypatch.setattr(store._client, "query", lambda c, **kw: asked.append(kw) or query(c, **kw))
        assert store.labels(["i3", "i1"]).tolist() == ["a", "b"]
    assert [a["output_fields"] for a in asked] == [["id", "label"]]
