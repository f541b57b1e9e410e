"""lookalike.gallery.indexing: which rows go in, the header from a model, a build that leaves nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from lookalike.gallery import GalleryHeader, open_gallery
from lookalike.gallery.indexing import (
    build_gallery,
    check_items,
    gallery_header,
    model_threshold,
    select_rows,
)
from lookalike.metrics.verification import Threshold
from lookalike.models import create_embedder_from, save_checkpoint
from lookalike.models.inference import load_inference_model


def split_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [f"/d/{i}.png" for i in range(8)],
            "label": ["a", "a", "b", "b", "c", "c", "d", "d"],
            "split": ["train", "train", "val", "val", "test", "test", "test", "test"],
            "role": ["train", "train", "query", "gallery", "query", "gallery", "query+gallery", "gallery"],
            "split_seed": 0,
            "source_sha256": "",
            "sku": list("abcdefgh"),
        }
    )


def test_select_rows_by_split_and_role():
    frame = split_frame()
    assert select_rows(frame, split="test")["path"].tolist() == ["/d/5.png", "/d/6.png", "/d/7.png"]
    assert select_rows(frame, split="test", role="query")["path"].tolist() == ["/d/4.png", "/d/6.png"]
    assert len(select_rows(frame, split="test", role="all")) == 4
    assert len(select_rows(frame)) == 8
    assert list(select_rows(frame, split="val").columns) == ["path", "label", "sku"]
    with pytest.raises(
        ValueError, match=r"no rows of split 'tset'; splits present: \['test', 'train', 'val'\]"
    ):
        select_rows(frame, split="tset")
    with pytest.raises(ValueError, match="role must be one of gallery, query, all"):
        select_rows(frame, split="test", role="both")
    with pytest.raises(ValueError, match="no 'split' column"):
        select_rows(frame.drop(columns="split"), split="test")
    with pytest.raises(ValueError, match="no query rows in split 'train'"):
        select_rows(frame, split="train", role="query")


def test_check_items_refuses_what_a_store_would():
    items = pd.DataFrame({"id": ["x", "y", "x"], "label": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="duplicate id 'x'"):
        check_items(np.ones((3, 4), np.float32), items, embed_dim=4)
    with pytest.raises(
        ValueError, match=r"dimension mismatch: the gallery holds 5-d embeddings, got shape \(3, 4\)"
    ):
        check_items(np.ones((3, 4), np.float32), items, embed_dim=5)
    with pytest.raises(ValueError, match="2 items for 3 embeddings"):
        check_items(np.ones((3, 4), np.float32), items.iloc[:2].assign(id=["p", "q"]), embed_dim=4)


def test_a_failed_build_leaves_no_folder(tmp_path):
    header = GalleryHeader(embed_dim=4)
    emb = np.ones((2, 4), np.float32)
    emb[1, 2] = np.nan
    items = pd.DataFrame({"label": ["a", "b"]})
    with pytest.raises(ValueError, match="NaN"):
        build_gallery(tmp_path / "g", header, emb, items)
    assert not (tmp_path / "g").exists()
    emb[1, 2] = 0.5
    with build_gallery(tmp_path / "g", header, emb, items) as store:
        assert len(store) == 2
    with pytest.raises(Exception, match="exist"):  # an existing gallery is kept as it was
        build_gallery(tmp_path / "g", header, emb, items)
    with open_gallery(tmp_path / "g") as store:
        assert len(store) == 2


def test_header_and_threshold_from_a_calibrated_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    embedder = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    t = Threshold(
        0.4, far=0.01, tar=0.7, frr=0.3, precision=0.9, f1=0.8, higher_is_closer=False, method="far"
    )
    save_checkpoint(tmp_path / "m.pt", embedder, extra={"calibration": {"threshold": dataclasses.asdict(t)}})
    monkeypatch.chdir(tmp_path)
    model = load_inference_model(checkpoint="m.pt")  # a relative path ...
    value, calibration = model_threshold(model, model.distance)
    header = gallery_header(model, index_factory="HNSW16", threshold=value, calibration=calibration)
    assert header.model_source == f"checkpoint:{(tmp_path / 'm.pt').resolve()}"  # ... recorded absolute
    assert (header.threshold, header.embed_dim, header.index_factory) == (0.4, 8, "HNSW16")
    assert header.model_fingerprint == model.fingerprint and header.preprocessing["image_size"] == 16
    assert calibration["source"] == header.model_source
    similar = dataclasses.replace(model, threshold=dataclasses.replace(t, higher_is_closer=True))
    with pytest.raises(ValueError, match="calibrated on similarities"):
        model_threshold(similar, "euclidean")
    assert model_threshold(dataclasses.replace(model, threshold=None), "euclidean") == (None, None)
