"""The batched decision (``decide_all``) against the one-query decision (``decide``), query by query."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.gallery.decision import Neighbour, decide, decide_all, kept_ids
from lookalike.metrics import identification
from lookalike.metrics.identification import SCORES

DEPTH = 8


def _search(seed: int, q: int = 400) -> tuple[np.ndarray, np.ndarray, dict[str, dict]]:
    """A store-like batched search of ``q`` queries, ``DEPTH`` deep: full rows, rows with fewer
    neighbours (padding: id None, distance inf, at the end), empty rows, a row with padding between
    neighbours, rows of one label only, ties; and the item rows by id."""
    rng = np.random.default_rng(seed)
    items = {
        f"id{i}": {"id": f"id{i}", "label": f"L{i % 5}", "path": f"/g/{i}.png", "w": i} for i in range(60)
    }
    one_label = [f"id{i}" for i in range(0, 60, 5)]  # every one labelled L0
    ids = np.empty((q, DEPTH), dtype=object)
    distances = np.sort(rng.uniform(0, 2, size=(q, DEPTH)), axis=1).astype(np.float32)
    distances[::7, 1] = distances[::7, 0]  # ties
    for row in range(q):
        pool = one_label if row % 4 == 0 else list(items)
        ids[row] = rng.choice(pool, size=DEPTH, replace=False)
        found = DEPTH if row % 3 else int(rng.integers(0, DEPTH))  # a third with fewer, some none
        ids[row, found:] = None
        distances[row, found:] = np.inf
    ids[5, 2] = None  # an approximate index's gap, not at the end
    distances[5, 2] = np.inf
    return distances, ids, items


def _one_by_one(names, distances, ids, items, threshold, *, score, k):
    """The reference: each query's neighbours built by hand, decided one at a time."""
    out = []
    for name, row_ids, row_d in zip(names, ids, distances, strict=True):
        kept = [(i, float(d)) for i, d in zip(row_ids, row_d, strict=True) if i is not None]
        neighbours = [
            Neighbour(rank, i, items[i]["label"], d, items[i]["path"], {"w": items[i]["w"]})
            for rank, (i, d) in enumerate(kept, start=1)
        ]
        out.append(decide(name, neighbours, threshold, score=score, k=k))
    return out


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("threshold", [None, 0.4, 0.9, -0.3])
def test_the_batch_answers_what_each_query_answers(score, threshold):
    distances, ids, items = _search(seed=SCORES.index(score))
    names = [f"q{i}" for i in range(len(ids))]
    labels = {i: row["label"] for i, row in items.items()}
    kept = {i: items[i] for i in kept_ids(ids, 3)}  # only the rows the results list
    got = decide_all(names, distances, ids, labels, kept, threshold, score=score, k=3)
    want = _one_by_one(names, distances, ids, items, threshold, score=score, k=3)
    assert got == want  # every field: decision, label, distance, score, margin, neighbours
    decisions = {r.decision for r in got}
    if threshold is None:
        assert decisions == {"no threshold"}
    elif threshold == 0.9:  # both answers occur
        assert decisions == {"match", "no match"}
    empty = [r for r, row in zip(got, ids, strict=True) if all(i is None for i in row)]
    assert empty and all(r.neighbours == [] and r.score is None for r in empty)
    assert [n.rank for n in got[5].neighbours] == [1, 2, 3] and got[5].neighbours[2].id == ids[5, 3]


def test_the_batch_scores_with_one_call(monkeypatch):
    distances, ids, items = _search(seed=0, q=50)
    calls = []
    real = identification.decision_scores

    def counted(labels, dist, *, score):
        calls.append(labels.shape)
        return real(labels, dist, score=score)

    monkeypatch.setattr(identification, "decision_scores", counted)
    labels = {i: row["label"] for i, row in items.items()}
    decide_all([f"q{i}" for i in range(50)], distances, ids, labels, items, 0.5, score="znorm", k=DEPTH)
    assert calls == [(50, DEPTH)]


def test_the_batch_checks_its_input():
    distances, ids, items = _search(seed=0, q=8)
    distances, ids = distances[:4], ids[:4]
    labels = {i: row["label"] for i, row in items.items()}
    with pytest.raises(ValueError, match="got 3 names for 4 searches"):
        decide_all(["a", "b", "c"], distances, ids, labels, items, 0.5)
    with pytest.raises(ValueError, match=r"ids and distances must both be \(Q, n\)"):
        decide_all(["a"] * 4, distances[:, :2], ids, labels, items, 0.5)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        decide_all(["a"] * 4, distances, ids, labels, items, float("inf"))
    with pytest.raises(ValueError, match="unknown decision score 'best'"):
        decide_all(["a"] * 4, distances, ids, labels, items, 0.5, score="best")


def test_kept_ids_are_the_first_k_found_of_each_search():
    _, ids, _ = _search(seed=1, q=40)
    for k in (1, 3, DEPTH, None):
        expected = []
        for row in ids:  # a loop: the first k ids that are not padding, in order
            found = [i for i in row if i is not None]
            expected += found if k is None else found[:k]
        assert kept_ids(ids, k) == list(dict.fromkeys(expected))
    assert "id0" in kept_ids(np.array([[None, "id0"]], dtype=object), 1)
    assert kept_ids(np.empty((3, 0), dtype=object), 5) == []


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_k_must_keep_at_least_one_neighbour(k):
    distances, ids, items = _search(seed=0, q=8)
    labels = {i: row["label"] for i, row in items.items()}
    with pytest.raises(ValueError, match="must be a positive integer or None"):
        decide_all(["q"] * 8, distances, ids, labels, items, 0.5, k=k)
    with pytest.raises(ValueError, match="must be a positive integer or None"):
        decide("q", [], 0.5, k=k)
