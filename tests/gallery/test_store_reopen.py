"""What a gallery must survive between processes and on bad input, on every backend: opened, searched,
added to and removed from by a new process; a failed --overwrite leaving the old gallery as it was; one
id rule and one metadata rule."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import lookalike
from lookalike.gallery import GalleryHeader, create_gallery, open_gallery
from lookalike.gallery.items import MAX_GALLERY_COLUMNS, MAX_METADATA_KEYS, check_id, check_metadata

D = 8

# Runs in a new process: opens the gallery, searches, adds, removes, and prints what it saw.
SECOND_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd
    from lookalike.gallery import open_gallery

    location, query = sys.argv[1], np.array(json.loads(sys.argv[2]), dtype="float32")
    with open_gallery(location) as store:
        _, ids = store.search(query[None, :], 3)
        seen = {"count": len(store), "nearest": ids[0].tolist()}
    with open_gallery(location, writable=True) as store:
        store.add(query[None, :] * -1, pd.DataFrame({"id": ["from-child"], "label": "c", "n": [7]}))
        seen["removed"] = store.remove(["i0", "i1"])
        seen["after"] = len(store)
    print(json.dumps(seen))
    """
)


def _env() -> dict[str, str]:
    src = str(Path(lookalike.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}


def _items(n: int, prefix: str = "i") -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(n)], "label": [f"c{i % 3}" for i in range(n)]})


def test_a_new_process_opens_searches_adds_and_removes(location, unit):
    loc = location("g")
    x = unit(20, D, seed=0)
    with create_gallery(loc, GalleryHeader(embed_dim=D), embeddings=x, items=_items(20)):
        pass  # this process closes the gallery (Milvus Lite: one process at a time per file)
    child = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, loc, json.dumps(x[5].tolist())],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    seen = json.loads(child.stdout.strip().splitlines()[-1])
    assert seen["count"] == 20 and seen["nearest"][0] == "i5"
    assert seen["removed"] == 2 and seen["after"] == 19
    with open_gallery(loc) as store:  # and this process sees the child's writes
        ids = store.items()["id"].tolist()
        assert sorted(ids) == sorted([f"i{i}" for i in range(2, 20)] + ["from-child"])
        assert store.items(["from-child"])["n"].tolist() == [7]
        _, nearest = store.search(-x[5][None, :], 1)
        assert nearest[0, 0] == "from-child"


def _snapshot(loc: str) -> dict:
    """Everything a gallery shows: header, items, vectors; plus the bytes of a folder's files."""
    with open_gallery(loc) as store:
        seen = {
            "header": store.header.to_dict(),
            "items": store.items().to_dict(orient="list"),
            "vectors": store.vectors().tobytes(),
        }
    if not loc.startswith("milvus-lite:"):
        seen["files"] = {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(loc).iterdir())
            if p.name != ".lock"
        }
    return seen


def _fail_before_publishing(monkeypatch, backend: str) -> None:
    """Make the last step before the new gallery would replace the old one fail (a full disk, a lost
    connection): the FAISS pointer switch, the Milvus rename."""
    from lookalike.gallery import faiss_store
    from lookalike.gallery.milvus_store import MilvusStore

    def boom(*args, **kwargs):
        raise OSError("simulated failure")

    if backend == "faiss":
        monkeypatch.setattr(
            faiss_store, "_crash_point", lambda name: boom() if name == "publish:before" else None
        )
    else:
        monkeypatch.setattr(MilvusStore, "_swap_in", boom)


@pytest.mark.parametrize("case", ["untrainable index", "bad id", "failure before the swap"])
def test_a_failed_overwrite_leaves_the_old_gallery_as_it_was(location, unit, backend, monkeypatch, case):
    loc = location("g")
    with create_gallery(loc, GalleryHeader(embed_dim=D), embeddings=unit(30, D, seed=0), items=_items(30)):
        pass
    before = _snapshot(loc)
    header, items, error = GalleryHeader(embed_dim=D, threshold=0.1), _items(120, "n"), "simulated failure"
    if case == "untrainable index":
        if backend != "faiss":
            pytest.skip("Milvus builds an IVF index on any number of vectors")
        header, error = GalleryHeader(embed_dim=D, index_factory="IVF1024,Flat"), "at least 1024 vectors"
    elif case == "bad id":
        items.loc[60, "id"], error = "n60\n", "is not valid"
    else:
        _fail_before_publishing(monkeypatch, backend)
    with pytest.raises((ValueError, OSError), match=error):
        create_gallery(loc, header, overwrite=True, embeddings=unit(120, D, seed=1), items=items)
    monkeypatch.undo()
    assert _snapshot(loc) == before
    with open_gallery(loc, writable=True) as store:  # and it still takes writes
        store.add(unit(1, D, seed=2), pd.DataFrame({"id": ["later"], "label": "l"}))
        assert len(store) == 31


def test_a_completed_overwrite_replaces_the_gallery(location, unit):
    loc = location("g")
    with create_gallery(loc, GalleryHeader(embed_dim=D), embeddings=unit(30, D, seed=0), items=_items(30)):
        pass
    new = GalleryHeader(embed_dim=D, threshold=0.5)
    x = unit(5, D, seed=1)
    with create_gallery(loc, new, overwrite=True, embeddings=x, items=_items(5, "n")) as store:
        assert len(store) == 5
        assert store.search(x[2:3], 1)[1][0, 0] == "n2"  # the store returned is the new one, usable
        store.add(unit(1, D, seed=3), pd.DataFrame({"id": ["n5"], "label": "l"}))
        assert store.remove(["n5"]) == 1
    with open_gallery(loc) as store:
        assert store.header == new and store.items()["id"].tolist() == [f"n{i}" for i in range(5)]


@pytest.mark.parametrize(
    "bad", ["a\n", "\na", " a", "a ", "a\tb", "a\x00b", "../up", "/abs", "x" * 257, "é" * 257]
)
def test_one_id_rule_for_every_store(location, unit, bad):
    with pytest.raises(ValueError, match="is not valid"):
        check_id(bad)
    with create_gallery(location("g"), GalleryHeader(embed_dim=D)) as store:
        with pytest.raises(ValueError, match=r"id .* is not valid: an id is 1 to 256 characters"):
            store.add(unit(1, D, seed=0), pd.DataFrame({"id": [bad], "label": "l"}))
        assert len(store) == 0
        with pytest.raises(KeyError, match="unknown id"):  # looking it up is a clean miss, not a crash
            store.items([bad])
        with pytest.raises(KeyError, match="unknown id"):
            store.remove([bad])


@pytest.mark.parametrize(
    ("meta", "error"),
    [
        ({"big": 2**64}, "outside the 64-bit integer range"),
        ({"neg": -(2**63) - 1}, "outside the 64-bit integer range"),
        ({"x": float("inf")}, "must be finite"),
        ({"t": "y" * 1025}, "at most 1024"),
        ({"seq": 1}, "reserved"),
        ({"_x": 1}, "reserved"),
        ({"a\nb": 1}, "not valid"),
        ({"l": [1, 2]}, "values must be strings, numbers"),
        ({f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}, f"at most {MAX_METADATA_KEYS}"),
    ],
)
def test_one_metadata_rule_for_every_store(location, unit, meta, error):
    with pytest.raises(ValueError, match=error):
        check_metadata(meta)
    with create_gallery(location("g"), GalleryHeader(embed_dim=D)) as store:
        row = pd.DataFrame([{"id": "a", "label": "l", **meta}])
        with pytest.raises(ValueError, match=error):
            store.add(unit(1, D, seed=0), row)
        assert len(store) == 0


def test_int64_bounds_are_stored_exactly(location, unit):
    meta = {"lo": -(2**63), "hi": 2**63 - 1}
    assert check_metadata(meta) == meta
    loc = location("g")
    with create_gallery(loc, GalleryHeader(embed_dim=D)) as store:
        store.add(unit(1, D, seed=0), pd.DataFrame([{"id": "a", "label": "l", **meta}]))
    with open_gallery(loc) as store:
        row = store.items(["a"]).iloc[0]
        assert int(row["lo"]) == -(2**63) and int(row["hi"]) == 2**63 - 1


def test_metadata_columns_per_gallery_are_bounded(location, unit):
    with create_gallery(location("g"), GalleryHeader(embed_dim=D)) as store:
        for b in range(MAX_GALLERY_COLUMNS // MAX_METADATA_KEYS):
            keys = {f"b{b}k{i}": i for i in range(MAX_METADATA_KEYS)}
            store.add(unit(1, D, seed=b), pd.DataFrame([{"id": f"a{b}", "label": "l", **keys}]))
        with pytest.raises(ValueError, match=f"at most {MAX_GALLERY_COLUMNS} are kept"):
            store.add(unit(1, D, seed=99), pd.DataFrame([{"id": "z", "label": "l", "one_more": 1}]))
        assert len(store) == MAX_GALLERY_COLUMNS // MAX_METADATA_KEYS


HOLDER = textwrap.dedent(
    """
    import sys, time
    from lookalike.gallery import open_gallery

    store = open_gallery(sys.argv[1])
    print("ready", flush=True)
    time.sleep(120)
    """
)


def test_a_milvus_lite_file_open_in_another_process_is_a_clear_error(tmp_path, unit):
    pytest.importorskip("milvus_lite", reason="Milvus Lite is not installed here")
    from lookalike.gallery import GalleryError

    loc = f"milvus-lite:{tmp_path / 'held.db'}"
    with create_gallery(loc, GalleryHeader(embed_dim=D), embeddings=unit(3, D, seed=0), items=_items(3)):
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, loc], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(GalleryError, match="Milvus Lite lets one process at a time open a file"):
            open_gallery(loc)
    finally:
        holder.kill()
        holder.wait()
    with open_gallery(loc) as store:  # once it is gone, the file opens again
        assert len(store) == 3
