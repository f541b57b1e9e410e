"""The Matcher on a real (tiny, random-init) model and real gallery stores."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lookalike.calibration import CalibrationRecord
from lookalike.embed import embed_images
from lookalike.gallery import GalleryError, create_gallery, open_gallery
from lookalike.gallery.calibration import set_gallery_calibration
from lookalike.gallery.decision import Neighbour, decide
from lookalike.gallery.indexing import gallery_header
from lookalike.gallery.matcher import Matcher
from lookalike.knn import topk
from lookalike.models import create_embedder_from, save_checkpoint
from lookalike.models.inference import load_inference_model


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    embedder = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    return save_checkpoint(path, embedder)


def make_images(
    root: Path, *, classes: int = 4, per_class: int = 3, seed: int = 0
) -> tuple[list[Path], list[str]]:
    """Each class a colour and stripe pattern, plus noise."""
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for c in range(classes):
        base = rng.integers(0, 255, size=3).astype(np.uint8)
        for i in range(per_class):
            img = np.zeros((20, 20, 3), dtype=np.uint8) + base
            img[:: (c % 4) + 2] = 255 - base
            img = np.clip(img + rng.normal(0, 25, img.shape), 0, 255).astype(np.uint8)
            path = root / f"class{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
            paths.append(path)
            labels.append(f"class{c}")
    return paths, labels


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("matcher")
    ckpt = tiny_checkpoint(root / "model.pt")
    paths, labels = make_images(root / "images")
    return root, ckpt, paths, labels


@pytest.fixture
def matcher(setup, tmp_path):
    """A matcher over a fresh folder gallery holding the first two images of each class."""
    _, ckpt, paths, labels = setup
    model = load_inference_model(checkpoint=ckpt)
    store = create_gallery(tmp_path / "g", gallery_header(model, threshold=0.05))
    m = Matcher(store, model)
    keep = [i for i in range(len(paths)) if i % 3 != 2]
    m.add([paths[i] for i in keep], [labels[i] for i in keep], ids=[f"item{i}" for i in keep])
    yield m
    m.close()


def test_a_gallery_image_finds_itself_and_matches(matcher, setup):
    _, _, paths, labels = setup
    (r,) = matcher.search([paths[0]], k=3)
    assert r.query == "0.png"
    assert r.neighbours[0].id == "item0" and r.neighbours[0].distance == pytest.approx(0.0, abs=1e-3)
    assert r.decision == "match" and r.label == labels[0]
    assert r.threshold == 0.05 and r.margin == pytest.approx(0.05 - r.distance)
    assert r.neighbours[0].path == str(paths[0].resolve())
    assert [n.rank for n in r.neighbours] == [1, 2, 3]


def test_neighbours_equal_exact_search_on_the_same_embeddings(matcher, setup):
    _, _, paths, labels = setup
    keep = [i for i in range(len(paths)) if i % 3 != 2]
    queries = [paths[i] for i in range(len(paths)) if i % 3 == 2]
    with_images = [Image.open(p) for p in [paths[i] for i in keep] + queries]
    emb = embed_images(matcher.model, with_images).numpy()
    g, q = emb[: len(keep)], emb[len(keep) :]
    ref_d, ref_i = topk(q, g, 5, distance="euclidean")
    results = matcher.search(queries, k=5)
    for row, r in enumerate(results):
        assert [n.id for n in r.neighbours] == [f"item{keep[j]}" for j in ref_i[row].tolist()]
        np.testing.assert_allclose([n.distance for n in r.neighbours], ref_d[row].numpy(), atol=1e-4)
        assert [n.label for n in r.neighbours] == [labels[keep[j]] for j in ref_i[row].tolist()]
        expected = "match" if ref_d[row, 0] <= 0.05 else "no match"
        assert r.decision == expected


def test_unreadable_queries_are_reported_by_name_and_the_others_answer(matcher, setup, tmp_path):
    _, _, paths, _ = setup
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    results = matcher.search([paths[1], text, tmp_path / "missing.png", b"garbage", paths[4]], k=2)
    assert [r.query for r in results] == ["1.png", "notes.txt", "missing.png", "query 3", "1.png"]
    assert [r.decision for r in results] == ["match", "error", "error", "error", "match"]
    assert "notes.txt" in results[1].error and "no such file" in results[2].error
    assert results[3].error.startswith("not a readable image")
    assert results[0].neighbours[0].id == "item1" and results[4].neighbours[0].id == "item4"


def test_path_bytes_and_pil_queries_answer_the_same(matcher, setup):
    _, _, paths, _ = setup
    data = paths[5].read_bytes()
    gray = Image.open(io.BytesIO(data))
    by_path, by_bytes, by_pil = matcher.search([paths[5], data, gray], k=4, names=["a", "b", "c"])
    assert [r.query for r in (by_path, by_bytes, by_pil)] == ["a", "b", "c"]
    for other in (by_bytes, by_pil):
        assert [n.id for n in other.neighbours] == [n.id for n in by_path.neighbours]
        np.testing.assert_allclose(
            [n.distance for n in other.neighbours], [n.distance for n in by_path.neighbours], atol=1e-5
        )


def test_another_model_is_refused(matcher, setup, tmp_path):
    other = load_inference_model(checkpoint=tiny_checkpoint(tmp_path / "other.pt", seed=1))
    with pytest.raises(GalleryError, match="another model"):
        Matcher(matcher.gallery, other)


def test_threshold_override_and_no_threshold(setup, tmp_path):
    _, ckpt, paths, labels = setup
    model = load_inference_model(checkpoint=ckpt)
    with create_gallery(tmp_path / "g", gallery_header(model)) as store:
        m = Matcher(store, model)
        m.add(paths[:6], labels[:6])
        (r,) = m.search([paths[7]], k=2)
        assert (r.decision, r.label, r.margin, r.threshold) == (
            "no threshold",
            r.neighbours[0].label,
            None,
            None,
        )
        d = r.distance
        for t, expected in ((d + 1e-3, "match"), (d - 1e-3, "no match")):
            (r2,) = Matcher(store, model, threshold=t).search([paths[7]], k=2)
            assert r2.decision == expected and r2.threshold == pytest.approx(t)


def test_open_finds_the_model_from_the_header(matcher, setup, tmp_path, monkeypatch):
    _, _, paths, labels = setup
    location = tmp_path / "g"
    matcher.close()
    monkeypatch.chdir(tmp_path)  # the recorded checkpoint path is absolute
    with Matcher.open(location) as m:
        (r,) = m.search([paths[3]], k=1)
        assert r.neighbours[0].id == "item3" and r.decision == "match" and r.label == labels[3]


def test_open_with_a_foreign_checkpoint_is_refused(matcher, setup, tmp_path):
    other = tiny_checkpoint(tmp_path / "other.pt", seed=2)
    matcher.close()
    with pytest.raises(GalleryError, match="another model"):
        Matcher.open(tmp_path / "g", checkpoint=other)


def test_add_with_an_unreadable_image_adds_nothing(matcher, setup, tmp_path):
    _, _, paths, _ = setup
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    before = len(matcher.gallery)
    with pytest.raises(ValueError, match=r"image 1 \(bad\.png\).*nothing was added"):
        matcher.add([paths[2], bad], ["x", "y"])
    assert len(matcher.gallery) == before


def test_add_keeps_metadata_and_remove_takes_items_out(matcher, setup):
    _, _, paths, _ = setup
    ids = matcher.add([paths[2]], ["new"], ids=["n1"], metadata=[{"sku": "A-1", "price": 3.5}])
    assert ids == ["n1"]
    (r,) = matcher.search([paths[2]], k=1)
    assert r.neighbours[0].id == "n1" and r.neighbours[0].metadata == {"sku": "A-1", "price": 3.5}
    assert r.to_dict()["neighbours"][0]["metadata"] == {"sku": "A-1", "price": 3.5}
    assert matcher.remove(["n1"]) == 1
    (r,) = matcher.search([paths[2]], k=1)
    assert r.neighbours[0].id != "n1"
    with pytest.raises(KeyError, match="n1"):
        matcher.remove(["n1"])


def test_search_embeddings_checks_its_input(matcher):
    with pytest.raises(ValueError, match=r"\(Q, 8\)"):
        matcher.search_embeddings(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        matcher.search_embeddings(np.ones((1, 8), dtype=np.float32), k=0)
    assert matcher.search([], k=3) == []


def test_an_empty_gallery_answers_no_match(setup, tmp_path):
    _, ckpt, paths, _ = setup
    model = load_inference_model(checkpoint=ckpt)
    with create_gallery(tmp_path / "empty", gallery_header(model, threshold=0.3)) as store:
        (r,) = Matcher(store, model).search([paths[0]], k=5)
    assert (r.decision, r.neighbours, r.distance, r.label) == ("no match", [], None, None)


def test_milvus_lite_gallery_answers_like_the_folder_one(matcher, setup, tmp_path):
    pytest.importorskip("milvus_lite")
    _, _, paths, _ = setup
    items = matcher.gallery.items()
    vectors = matcher.gallery.vectors(items["id"].tolist())
    location = f"milvus-lite:{tmp_path / 'm.db'}"
    with create_gallery(location, matcher.gallery.header) as store:
        store.add(vectors, items)
    with open_gallery(location) as store:
        m = Matcher(store, matcher.model)
        expected = matcher.search(paths, k=3)
        got = m.search(paths, k=3)
    for a, b in zip(expected, got, strict=True):
        assert [n.id for n in a.neighbours] == [n.id for n in b.neighbours]
        assert a.decision == b.decision and a.label == b.label
        np.testing.assert_allclose(
            [n.distance for n in a.neighbours], [n.distance for n in b.neighbours], atol=1e-4
        )


def test_long_query_lists_are_answered_in_order_across_chunks(matcher, setup, tmp_path):
    _, _, paths, _ = setup
    keep = [i for i in range(len(paths)) if i % 3 != 2]
    order = [keep[i % len(keep)] for i in range(300)]
    queries: list = [paths[i] for i in order]
    queries[260] = tmp_path / "missing.png"
    results = matcher.search(queries, k=1)
    assert len(results) == 300 and results[260].decision == "error"
    found = [r.neighbours[0].id for j, r in enumerate(results) if j != 260]
    assert found == [f"item{i}" for j, i in enumerate(order) if j != 260]


def test_a_long_add_is_all_or_nothing_across_chunks(matcher, setup, tmp_path):
    _, _, paths, labels = setup
    sources: list = [paths[i % len(paths)] for i in range(300)]
    names = [labels[i % len(paths)] for i in range(300)]
    sources[280] = tmp_path / "missing.png"
    before = len(matcher.gallery)
    with pytest.raises(ValueError, match=r"image 280 \(missing\.png\).*nothing was added"):
        matcher.add(sources, names)
    assert len(matcher.gallery) == before
    sources[280] = paths[0]
    ids = matcher.add(sources, names, ids=[f"bulk{i}" for i in range(300)])
    assert len(matcher.gallery) == before + 300 and ids[299] == "bulk299"
    (r,) = matcher.search([paths[299 % len(paths)]], k=2)
    assert {n.label for n in r.neighbours} == {labels[299 % len(paths)]}


def _decided_one_by_one(m: Matcher, emb: np.ndarray, k: int) -> list:
    """The reference: each query searched alone, its neighbours' rows read one query at a time, and
    decided with ``decide``."""
    out = []
    for q in range(len(emb)):
        distances, ids = m.gallery.search(emb[q : q + 1], max(k, m.depth))
        kept = [(str(i), float(d)) for i, d in zip(ids[0], distances[0], strict=True) if i is not None]
        rows = m.gallery.items([i for i, _ in kept]).to_dict(orient="records") if kept else []
        neighbours = [
            Neighbour(rank, i, str(row["label"]), d, row["path"], {})
            for rank, ((i, d), row) in enumerate(zip(kept, rows, strict=True), start=1)
        ]
        out.append(decide(f"query {q}", neighbours, m.threshold, score=m.score, k=k))
    return out


@pytest.mark.parametrize("score", ["nearest", "ratio", "znorm"])
def test_a_batch_is_decided_as_each_query_alone(matcher, setup, score, monkeypatch):
    """Fewer items than the decision depth (every row shorter than depth), then one label left (every
    neighbour of every row has the same label)."""
    _, _, paths, _ = setup
    record = CalibrationRecord(method="object-profiles", target_fpir=0.1, thresholds=((1, 0.5),), score=score)
    set_gallery_calibration(matcher.gallery, record)
    m = Matcher(matcher.gallery, matcher.model)
    assert (m.score, m.depth) == (score, 1 if score == "nearest" else 32) and len(m.gallery) == 8
    emb = m.embed([Image.open(p) for p in paths])
    read, items = [], m.gallery.items
    monkeypatch.setattr(m.gallery, "items", lambda ids=None: read.append(ids) or items(ids))
    got = m.search_embeddings(emb, k=3)
    monkeypatch.undo()
    assert got == _decided_one_by_one(m, emb, 3)
    assert {len(r.neighbours) for r in got} == {3} and {r.score_name for r in got} == {score}
    # one read of item rows, of the neighbours listed only (the deeper ones: their labels alone)
    assert len(read) == 1 and set(read[0]) == {n.id for r in got for n in r.neighbours}
    m.remove([f"item{i}" for i in (3, 4, 6, 7, 9, 10)])  # class0 (items 0, 1) is left
    got = m.search_embeddings(emb, k=3)
    assert got == _decided_one_by_one(m, emb, 3)
    assert {n.label for r in got for n in r.neighbours} == {"class0"}


def test_an_approximate_index_that_finds_fewer_than_asked(setup, tmp_path):
    """IVF probing 16 of 64 lists finds fewer than the 32 items a ratio decision asks for: the rows are
    padded (id None), which the matcher leaves out of the neighbours and the score."""
    _, ckpt, _, _ = setup
    model = load_inference_model(checkpoint=ckpt)
    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    items = pd.DataFrame({"id": [f"v{i}" for i in range(100)], "label": [f"c{i % 7}" for i in range(100)]})
    record = CalibrationRecord(
        method="object-profiles", target_fpir=0.1, thresholds=((1, 0.8),), score="ratio"
    )
    header = gallery_header(model, index_factory="IVF64,Flat", calibration=record, n_objects=7)
    with create_gallery(tmp_path / "ivf", header, embeddings=x, items=items) as store:
        m = Matcher(store, model)
        _, ids = store.search(x[:20], 32)
        assert (ids == None).any()  # noqa: E711 - the padding this test is about
        got = m.search_embeddings(x[:20], k=32)
        assert got == _decided_one_by_one(m, x[:20], 32)
        assert [len(r.neighbours) for r in got] == [int((row != None).sum()) for row in ids]  # noqa: E711
