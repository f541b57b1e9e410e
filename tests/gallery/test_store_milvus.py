"""What only the Milvus store does: locations, index mapping, the commit mark, foreign collections."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from lookalike.gallery import GalleryError, GalleryHeader, GalleryLockedError, create_gallery, open_gallery
from lookalike.gallery.milvus_store import (
    DEFAULT_COLLECTION,
    MilvusStore,
    milvus_index_params,
    parse_location,
)

needs_lite = pytest.mark.skipif(
    importlib.util.find_spec("milvus_lite") is None or importlib.util.find_spec("pymilvus") is None,
    reason="Milvus Lite is not installed here; pip install 'lookalike[milvus]' to run these",
)
D = 8


def test_locations(tmp_path, monkeypatch):
    monkeypatch.delenv("LOOKALIKE_MILVUS_TOKEN", raising=False)
    lite = parse_location(f"milvus-lite:{tmp_path}/g.db")
    assert lite.lite and lite.uri == f"{tmp_path}/g.db" and lite.collection == DEFAULT_COLLECTION
    assert parse_location(f"milvus-lite:{tmp_path}/g.db#shoes").collection == "shoes"
    server = parse_location("milvus://milvus.local:19530/products")
    assert (server.uri, server.collection, server.token, server.lite) == (
        "http://milvus.local:19530",
        "products",
        "",
        False,
    )
    assert parse_location("milvus://root:Mil%40vus@h:19530/c").token == "root:Mil@vus"
    monkeypatch.setenv("LOOKALIKE_MILVUS_TOKEN", "tok")
    assert parse_location("milvus://h:1/c").token == "tok"
    for bad, why in [
        ("milvus://h/c", "must look like milvus://HOST:PORT/COLLECTION"),
        ("milvus://h:1/", "must look like"),
        ("milvus-lite:g.sqlite", "must end in .db"),
        ("milvus://h:1/bad-name", "collection name 'bad-name'"),
    ]:
        with pytest.raises(GalleryError, match=why):
            parse_location(bad)
    with pytest.raises(GalleryError, match="unknown gallery location 's3://x'"):
        open_gallery("s3://x")


def test_index_factory_mapping():
    assert milvus_index_params("Flat") == ("FLAT", {}, {})
    assert milvus_index_params("HNSW32")[:2] == ("HNSW", {"M": 32, "efConstruction": 200})
    assert milvus_index_params("IVF1024,PQ32")[:2] == ("IVF_PQ", {"nlist": 1024, "m": 32, "nbits": 8})
    assert milvus_index_params("IVF256,Flat") == ("IVF_FLAT", {"nlist": 256}, {"nprobe": 32})
    assert milvus_index_params("IVF64,SQ8")[0] == "IVF_SQ8"
    with pytest.raises(GalleryError, match="'OPQ16,IVF64,PQ16' has no Milvus equivalent"):
        milvus_index_params("OPQ16,IVF64,PQ16")


@pytest.mark.skipif(importlib.util.find_spec("pymilvus") is None, reason="pymilvus is not installed")
def test_an_unreachable_server_is_a_clear_error():
    with pytest.raises(GalleryError, match=r"cannot connect to Milvus at http://127\.0\.0\.1:1\b"):
        open_gallery("milvus://127.0.0.1:1/products")


@needs_lite
def test_an_interrupted_add_stays_invisible_and_the_next_writer_drops_it(tmp_path, unit, monkeypatch):
    loc = f"milvus-lite:{tmp_path}/m.db#g"
    x = unit(30, D, seed=0)
    with create_gallery(loc, GalleryHeader(embed_dim=D)) as store:
        store.add(x[:10], pd.DataFrame({"id": [f"old{i}" for i in range(10)], "label": "o"}))
    store = open_gallery(loc, writable=True)
    assert isinstance(store, MilvusStore)

    def die(*args, **kwargs):  # the process "dies" after inserting, before the commit mark moves
        raise KeyboardInterrupt

    monkeypatch.setattr(store._client, "alter_collection_properties", die)
    monkeypatch.setattr(store, "_drop_uncommitted", lambda: None)  # a dead process cleans nothing up
    with pytest.raises(KeyboardInterrupt):
        store.add(x[10:], pd.DataFrame({"id": [f"new{i}" for i in range(20)], "label": "n"}))
    raw = store._client
    assert raw.query("g", filter="seq >= 0", output_fields=["count(*)"])[0]["count(*)"] == 30
    store.close()
    with open_gallery(loc) as reader:  # rows past the commit mark are invisible
        assert len(reader) == 10 and set(reader.items()["id"]) == {f"old{i}" for i in range(10)}
        assert not any(i.startswith("new") for i in reader.search(x[10:], 30)[1].ravel())
    with open_gallery(loc, writable=True) as writer:  # and the next writer deletes them
        assert writer._client.query("g", filter="seq >= 0", output_fields=["count(*)"])[0]["count(*)"] == 10
        writer.add(
            x[10:], pd.DataFrame({"id": [f"new{i}" for i in range(20)], "label": "n"})
        )  # ids free again
        assert len(writer) == 30


@needs_lite
def test_foreign_collections_and_the_writer_lock(tmp_path):
    from pymilvus import MilvusClient

    db = tmp_path / "m.db"
    client = MilvusClient(str(db))
    client.create_collection("theirs", dimension=D)
    client.close()
    with pytest.raises(GalleryError, match="is a Milvus collection but not a lookalike gallery"):
        open_gallery(f"milvus-lite:{db}#theirs")
    with pytest.raises(GalleryError, match="did not create; refusing to replace it"):
        create_gallery(f"milvus-lite:{db}#theirs", GalleryHeader(embed_dim=D), overwrite=True)
    with pytest.raises(
        GalleryError, match=r"collection 'absent' does not exist \(collections there: theirs\)"
    ):
        open_gallery(f"milvus-lite:{db}#absent")
    with pytest.raises(GalleryError, match="does not exist"):
        open_gallery(f"milvus-lite:{tmp_path}/nothing.db")
    with create_gallery(f"milvus-lite:{db}#ours", GalleryHeader(embed_dim=D)) as writer:
        with pytest.raises(GalleryLockedError, match="being written by another process"):
            open_gallery(f"milvus-lite:{db}#ours", writable=True)
        writer.add(np.ones((1, D), np.float32), pd.DataFrame({"label": ["a"]}))
