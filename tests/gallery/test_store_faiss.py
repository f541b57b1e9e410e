"""What only the FAISS folder store does: files, generations, the writer lock, readers' snapshots."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lookalike.gallery import GalleryError, GalleryHeader, GalleryLockedError, create_gallery, open_gallery
from lookalike.gallery.faiss_store import POINTER_FILE

D = 8


def _items(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"i{start + i}" for i in range(n)], "label": ["a"] * n})


def test_one_writer_at_a_time(tmp_path, unit):
    folder = tmp_path / "g"
    writer = create_gallery(folder, GalleryHeader(embed_dim=D))
    with pytest.raises(GalleryLockedError, match=r"being written by another process \(pid \d+\)"):
        open_gallery(folder, writable=True)
    with open_gallery(folder) as reader:  # readers need no lock
        assert len(reader) == 0
    writer.close()
    with open_gallery(folder, writable=True) as second:
        second.add(unit(2, D, seed=0), _items(2))


def test_a_reader_keeps_its_snapshot_while_a_writer_publishes(tmp_path, unit):
    folder = tmp_path / "g"
    x = unit(30, D, seed=0)
    with create_gallery(folder, GalleryHeader(embed_dim=D)) as writer:
        writer.add(x[:10], _items(10))
        reader = open_gallery(folder)
        first = reader.generation
        writer.add(x[10:20], _items(10, start=10))
        writer.remove(["i0", "i1"])
        writer.add(x[20:], _items(10, start=20))  # the reader's generation's files are gone by now
        assert len(reader) == 10 and reader.generation == first
        _, ids = reader.search(x[:1], 3)
        assert ids[0, 0] == "i0"  # still there in the reader's snapshot
        assert reader.refresh() and len(reader) == 28 and reader.generation == writer.generation
        assert reader.search(x[:1], 1)[1][0, 0] != "i0"
        assert not reader.refresh()
        reader.close()


def test_old_generations_are_removed_and_stray_files_ignored(tmp_path, unit):
    folder = tmp_path / "g"
    x = unit(40, D, seed=0)
    with create_gallery(folder, GalleryHeader(embed_dim=D, index_factory="HNSW16")) as store:
        for b in range(4):
            store.add(x[10 * b : 10 * b + 10], _items(10, start=10 * b))
        gen = store.generation
    # a writer killed half-way leaves files of a generation the pointer never named
    (folder / f"index-{gen + 1:06d}.faiss").write_bytes(b"partial")
    names = sorted(p.name for p in folder.iterdir())
    assert f"index-{gen:06d}.faiss" in names and f"index-{gen - 1:06d}.faiss" in names
    assert not any(f"-{g:06d}." in n for n in names for g in range(gen - 1))
    with open_gallery(folder, writable=True) as store:
        assert len(store) == 40
        store.remove(["i0"])  # the next writer overwrites/cleans the stray generation
    names = sorted(p.name for p in folder.iterdir())
    assert sum(n.startswith("index-") for n in names) == 2
    assert (folder / f"index-{gen + 1:06d}.faiss").stat().st_size > 100


def test_foreign_or_damaged_folders(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(GalleryError, match=f"not a lookalike gallery \\(no {POINTER_FILE}"):
        open_gallery(tmp_path / "plain")
    with pytest.raises(GalleryError, match="non-empty folder but not a gallery"):
        create_gallery(tmp_path / "plain", GalleryHeader(embed_dim=D), overwrite=True)
    assert (tmp_path / "plain" / "notes.txt").read_text() == "hello"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / POINTER_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(GalleryError, match="not a lookalike gallery header"):
        open_gallery(tmp_path / "other")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(GalleryError, match="is a file"):
        open_gallery(tmp_path / "afile")


def test_index_factory_errors(tmp_path, unit):
    with pytest.raises(GalleryError, match="invalid FAISS index factory 'Bogus7'"):
        create_gallery(tmp_path / "a", GalleryHeader(embed_dim=D, index_factory="Bogus7"))
    assert not (tmp_path / "a").exists()
    with pytest.raises(GalleryError, match="PQm needs D divisible by m"):
        create_gallery(tmp_path / "b", GalleryHeader(embed_dim=10, index_factory="IVF4,PQ4"))
    store = create_gallery(tmp_path / "c", GalleryHeader(embed_dim=D, index_factory="IVF64,Flat"))
    with pytest.raises(ValueError, match=r"needs at least 64 vectors \(FAISS recommends 2496\), got 20"):
        store.add(unit(20, D, seed=0), _items(20))
    assert len(store) == 0
    store.add(unit(200, D, seed=0), _items(200))  # enough to train: the first add trains it
    assert len(store) == 200
    store.close()


def test_unstorable_metadata_is_refused_before_any_change(tmp_path, unit):
    with create_gallery(tmp_path / "g", GalleryHeader(embed_dim=D)) as store:
        store.add(unit(1, D, seed=0), _items(1))
        mixed = _items(2, start=1).assign(weird=[1, "one"])
        with pytest.raises(ValueError, match="metadata column 'weird' cannot be stored in Parquet"):
            store.add(unit(2, D, seed=1), mixed)
        assert len(store) == 1 and store.search(unit(1, D, seed=2), 5)[1].shape == (1, 1)
    with open_gallery(tmp_path / "g") as again:
        assert again.items()["id"].tolist() == ["i0"]


def test_vectors_returns_the_normalised_embeddings(tmp_path, unit):
    x = unit(5, D, seed=0) * 3.0
    before = x.copy()
    with create_gallery(tmp_path / "g", GalleryHeader(embed_dim=D)) as store:
        store.add(x, _items(5))
        assert (x == before).all()  # the caller's array is not normalised in place
        np.testing.assert_allclose(store.vectors(["i3", "i1"]), x[[3, 1]] / 3.0, atol=1e-6)
        assert store.vectors().shape == (5, D)


def test_searches_from_threads_during_writes_see_whole_generations(tmp_path, unit):
    import threading

    x = unit(400, D, seed=0)
    errors: list[BaseException] = []
    sizes: set[int] = set()
    stop = threading.Event()
    with create_gallery(tmp_path / "g", GalleryHeader(embed_dim=D)) as store:
        store.add(x[:100], _items(100))

        def search_loop() -> None:
            try:
                while not stop.is_set():
                    dist, ids = store.search(x[:4], 1000)
                    assert (ids != None).all() and (np.diff(dist, axis=1) >= 0).all()  # noqa: E711
                    sizes.add(ids.shape[1])
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=search_loop) for _ in range(2)]
        for t in threads:
            t.start()
        for b in range(1, 4):
            store.add(x[100 * b : 100 * b + 100], _items(100, start=100 * b))
            store.remove([f"i{100 * b + j}" for j in range(50)])
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert sizes <= {100, 150, 200, 250, 300} and len(sizes) >= 2  # only published sizes


def test_create_over_the_leftovers_of_an_interrupted_create(tmp_path, unit):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "index-000001.faiss").write_bytes(b"half")  # killed before the pointer existed
    (folder / ".lock").write_text("")
    with create_gallery(folder, GalleryHeader(embed_dim=D)) as store:
        store.add(unit(3, D, seed=0), _items(3))
    with open_gallery(folder) as again:
        assert len(again) == 3
