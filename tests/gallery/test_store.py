"""The gallery store protocol, run on every backend (FAISS folder, Milvus Lite): see conftest.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lookalike.gallery import (
    GalleryError,
    GalleryHeader,
    GalleryStore,
    check_model,
    create_gallery,
    index_recall,
    open_gallery,
)
from lookalike.knn import topk

D = 16


def _items(n: int, *, prefix: str = "i", start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"{prefix}{start + i}" for i in range(n)],
            "label": [f"class{(start + i) % 5}" for i in range(n)],
            "path": [f"img/{start + i}.png" for i in range(n)],
        }
    )


def _filled(location, unit, n: int = 60, *, name: str = "g", **header) -> tuple[GalleryStore, np.ndarray]:
    store = create_gallery(location(name), GalleryHeader(embed_dim=D, **header))
    x = unit(n, D, seed=1)
    store.add(x, _items(n))
    return store, x


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_search_equals_exact_topk(location, unit, distance):
    n = 120
    x = unit(n, D, seed=3) * np.linspace(0.5, 3.0, n, dtype=np.float32)[:, None]  # unnormalised on purpose
    q = unit(7, D, seed=4)
    with create_gallery(location("g"), GalleryHeader(embed_dim=D, distance=distance)) as store:
        ids = store.add(x, _items(n))
        dist, got = store.search(q, 5)
    ref_v, ref_i = topk(q, x, 5, distance=distance)
    ref_v, ref_i = ref_v.numpy(), ref_i.numpy()
    expected = 1.0 - ref_v if distance == "cosine" else ref_v  # the store: true distances, smallest first
    assert dist.dtype == np.float32 and dist.shape == (7, 5) and got.dtype == object
    np.testing.assert_allclose(dist, expected, atol=2e-6)
    assert (got == np.asarray(ids, dtype=object)[ref_i]).all()
    assert (np.diff(dist, axis=1) >= 0).all()
    if distance == "euclidean":  # true Euclidean between normalised vectors, not its square
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        row = np.linalg.norm(xn[ref_i[0]] - q[0], axis=1)
        np.testing.assert_allclose(dist[0], row, atol=2e-6)


def test_k_is_clamped_and_an_empty_gallery_answers(location, unit):
    with create_gallery(location("g"), GalleryHeader(embed_dim=D)) as store:
        assert len(store) == 0
        dist, ids = store.search(unit(3, D, seed=0), 5)
        assert dist.shape == (3, 0) and ids.shape == (3, 0)
        store.add(unit(2, D, seed=1), _items(2))
        dist, ids = store.search(unit(3, D, seed=0), 5)
        assert dist.shape == (3, 2) and sorted(ids[0]) == ["i0", "i1"]
        with pytest.raises(ValueError, match="k must be a positive integer"):
            store.search(unit(1, D, seed=0), 0)


def test_ids_and_metadata_round_trip(location, unit):
    loc = location("g")
    items = pd.DataFrame(
        {
            "id": ["a", "", None, "d"],
            "label": ["cat", "dog", "cat", "eel"],
            "path": ["x/a.png", None, "x/c.png", "x/d.png"],
            "count": np.array([1, 2, 3, 4], dtype=np.int64),
            "score": [0.5, np.nan, 1.5, 2.5],
            "flag": [True, False, True, False],
            "colour": ["red", "green", "blue", "red"],
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]),
        }
    )
    with create_gallery(loc, GalleryHeader(embed_dim=D)) as store:
        ids = store.add(unit(4, D, seed=0), items)
    assert ids[0] == "a" and ids[3] == "d"
    for generated in ids[1:3]:  # empty and missing ids are generated: 32 hex digits, unique
        assert len(generated) == 32 and int(generated, 16) >= 0
    assert len(set(ids)) == 4
    with open_gallery(loc) as store:
        got = store.items()
        assert list(got.columns) == ["id", "label", "path", "count", "score", "flag", "colour", "when"]
        assert got["id"].tolist() == ids
        assert got["label"].tolist() == ["cat", "dog", "cat", "eel"]
        assert got["path"].tolist() == ["x/a.png", None, "x/c.png", "x/d.png"]
        for col in ("count", "score", "flag", "when"):
            pd.testing.assert_series_equal(got[col], items[col], check_names=True)
        assert got["colour"].tolist() == ["red", "green", "blue", "red"]
        picked = store.items(["d", "a"])  # rows in the order asked
        assert picked["id"].tolist() == ["d", "a"] and picked["count"].tolist() == [4, 1]


def test_a_column_missing_from_one_batch_becomes_nullable(location, unit):
    loc = location("g")
    with create_gallery(loc, GalleryHeader(embed_dim=D)) as store:
        store.add(unit(2, D, seed=0), _items(2).assign(n=[7, 8]))
        store.add(unit(1, D, seed=1), _items(1, start=2).assign(extra=["x"]))
    with open_gallery(loc) as store:
        got = store.items()
    assert str(got["n"].dtype) == "Int64" and got["n"].tolist()[:2] == [7, 8] and got["n"].isna().tolist()[2]
    assert got["extra"].isna().tolist() == [True, True, False]


def test_remove_persist_and_reopen(location, unit):
    loc = location("g")
    store, x = _filled(lambda _: loc, unit, 60)
    before_d, before_i = store.search(x[:5], 60)
    removed = [f"i{i}" for i in range(0, 60, 3)]
    assert store.remove(removed) == 20
    assert len(store) == 40
    dist, ids = store.search(x[:5], 60)
    assert ids.shape == (5, 40) and not set(ids.ravel()) & set(removed)
    for row in range(5):  # the survivors keep their order and distances
        keep = [j for j, i in enumerate(before_i[row]) if i not in removed]
        assert ids[row].tolist() == before_i[row][keep].tolist()
        np.testing.assert_allclose(dist[row], before_d[row][keep], atol=1e-6)
    store.close()
    with open_gallery(loc) as again:
        assert len(again) == 40
        d2, i2 = again.search(x[:5], 60)
        assert (i2 == ids).all()
        np.testing.assert_allclose(d2, dist, atol=1e-6)
        assert again.items()["id"].tolist() == [f"i{i}" for i in range(60) if f"i{i}" not in removed]
        np.testing.assert_allclose(again.vectors(["i1", "i2"]), x[[1, 2]], atol=1e-6)


def test_duplicate_ids_are_refused_and_nothing_changes(location, unit):
    loc = location("g")
    store, _ = _filled(lambda _: loc, unit, 10)
    batch = _items(3, start=100)
    batch.loc[2, "id"] = "i100"
    with pytest.raises(ValueError, match="duplicate id 'i100'"):
        store.add(unit(3, D, seed=5), batch)
    with pytest.raises(ValueError, match=r"duplicate id 'i4'.*already in gallery"):
        store.add(unit(2, D, seed=5), pd.DataFrame({"id": ["new", "i4"], "label": ["a", "b"]}))
    assert len(store) == 10 and store.search(unit(1, D, seed=5), 20)[1].shape == (1, 10)
    store.close()
    with open_gallery(loc) as again:
        assert again.items()["id"].tolist() == [f"i{i}" for i in range(10)]


def test_removing_an_unknown_id_changes_nothing(location, unit):
    loc = location("g")
    store, _ = _filled(lambda _: loc, unit, 10)
    with pytest.raises(KeyError, match="unknown id 'nope'"):
        store.remove(["i1", "nope"])
    assert len(store) == 10
    store.close()
    with open_gallery(loc) as again:
        assert len(again) == 10 and "i1" in again.items()["id"].tolist()
        with pytest.raises(KeyError, match="unknown id 'nope'"):
            again.items(["i1", "nope"])


def test_dimension_mismatch_and_bad_input(location, unit):
    store, _ = _filled(location, unit, 5)
    with pytest.raises(GalleryError, match=rf"D=17 but the gallery holds D={D}"):
        store.add(unit(2, 17, seed=0), _items(2, start=50))
    with pytest.raises(GalleryError, match=rf"queries have D=8 but the gallery holds D={D}"):
        store.search(unit(2, 8, seed=0), 3)
    with pytest.raises(ValueError, match="items has 1 rows but there are 2 embeddings"):
        store.add(unit(2, D, seed=0), _items(1, start=50))
    with pytest.raises(ValueError, match="need a 'label' column"):
        store.add(unit(1, D, seed=0), pd.DataFrame({"id": ["z"]}))
    bad = unit(2, D, seed=0)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="row 1 contains NaN"):
        store.add(bad, _items(2, start=50))
    assert len(store) == 5
    store.close()


def test_missing_gallery_and_existing_gallery(location, unit):
    with pytest.raises(GalleryError, match=r"does not exist|no gallery"):
        open_gallery(location("absent"))
    store, _ = _filled(location, unit, 3)
    store.close()
    with pytest.raises(GalleryError, match=r"already exists.*overwrite=True"):
        create_gallery(location("g"), GalleryHeader(embed_dim=D))
    with create_gallery(location("g"), GalleryHeader(embed_dim=8), overwrite=True) as fresh:
        assert len(fresh) == 0 and fresh.header.embed_dim == 8
    with open_gallery(location("g")) as again:
        assert len(again) == 0 and again.header.embed_dim == 8


def test_header_and_threshold_persist(location, unit):
    header = GalleryHeader(
        embed_dim=D,
        distance="cosine",
        model_fingerprint="ab" * 32,
        preprocessing={"size": 224, "mean": [0.5, 0.5, 0.5]},
        model_source="checkpoint:runs/x/best.pt",
    )
    loc = location("g")
    with create_gallery(loc, header) as store:
        store.add(unit(3, D, seed=0), _items(3))
        store.set_threshold(0.42, {"far": 0.01, "tar": 0.9})
    with open_gallery(loc) as again:
        assert again.header.threshold == 0.42 and again.header.calibration == {"far": 0.01, "tar": 0.9}
        assert again.header.preprocessing == header.preprocessing
        assert again.header.model_fingerprint == header.model_fingerprint and len(again) == 3
        check_model(again.header, "ab" * 32)
        with pytest.raises(GalleryError, match=r"built with another model.*checkpoint:runs/x/best.pt"):
            check_model(again.header, "cd" * 32)


def test_read_only_refuses_writes(location, unit):
    store, x = _filled(location, unit, 3)
    store.close()
    with open_gallery(location("g")) as ro:
        for call in (
            lambda: ro.add(x[:1], _items(1, start=9)),
            lambda: ro.remove(["i0"]),
            lambda: ro.set_threshold(1),
        ):
            with pytest.raises(GalleryError, match="read-only; open it with writable=True"):
                call()
    with open_gallery(location("g"), writable=True) as rw:
        assert rw.remove(["i0"]) == 1


@pytest.mark.parametrize("factory", ["HNSW32", "IVF16,Flat"])
def test_approximate_index_recall_against_exact(location, clustered, factory):
    n, d, k = 3000, 32, 10
    x = clustered(n, d, seed=7)
    q = clustered(200, d, seed=8)
    with create_gallery(location("g"), GalleryHeader(embed_dim=d, index_factory=factory)) as store:
        ids = np.asarray(store.add(x, pd.DataFrame({"label": np.arange(n) % 10})), dtype=object)
        _, got = store.search(q, k)
        exact = np.argsort(((q[:, None, :] - x[None, :, :]) ** 2).sum(-1), axis=1)[:, :k]  # brute force
        recall = np.mean([len(set(got[r]) & set(ids[exact[r]])) / k for r in range(len(q))])
        assert recall >= 0.95, f"{factory}: recall@10 {recall:.3f}"
        sampled = index_recall(store, sample=200, k=k, seed=0)
        assert 0.95 <= sampled <= 1.0
        store.remove(list(ids[:100]))  # HNSW cannot remove in FAISS: the store rebuilds it
        assert len(store) == n - 100
        _, after = store.search(x[:5], 3)
        assert not set(after.ravel()) & set(ids[:100])


def test_exact_index_recall_is_one(location, unit):
    store, _ = _filled(location, unit, 40)
    assert index_recall(store, sample=20, k=10) == 1.0
    store.close()


def test_awkward_ids_round_trip(location, unit):
    ids = ['a"b', "it's", "back\\slash", "ünï", "x y", "tab-there", "123"]
    with create_gallery(location("g"), GalleryHeader(embed_dim=D)) as store:
        assert store.add(unit(7, D, seed=0), pd.DataFrame({"id": ids, "label": "l"})) == ids
        assert store.items(ids[::-1])["id"].tolist() == ids[::-1]
        assert store.remove(ids[:3]) == 3
        assert store.items()["id"].tolist() == ids[3:]
        with pytest.raises(ValueError, match="duplicate id 'ünï'"):
            store.add(unit(1, D, seed=1), pd.DataFrame({"id": ["ünï"], "label": "l"}))
