"""`lookalike search`: the table, JSON Lines, bad queries, bad galleries, and the end-to-end
equality with `lookalike evaluate` on Omniglot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_gallery_helpers import image_folder, snapshot, tiny_checkpoint
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.models import create_embedder_from, save_checkpoint

runner = CliRunner()
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("search_cli")
    ckpt = tiny_checkpoint(root / "model.pt")
    images = image_folder(root / "images", classes=5, per_class=3)
    gallery = root / "gallery"
    r = invoke(
        "index", "build", "--checkpoint", ckpt, "--images", images, "--out", gallery, "--threshold", 0.05
    )
    assert r.exit_code == 0, r.output
    return root, ckpt, images, gallery


def test_table_output_names_the_query_decision_and_neighbours(built):
    _, _, images, gallery = built
    r = invoke("search", "--gallery", gallery, images / "c2" / "1.png", "--k", 3)
    assert r.exit_code == 0, r.output
    assert "1.png: match c2" in r.stdout
    assert "margin +" in r.stdout and "threshold 0.0500" in r.stdout
    for column in ("rank", "id", "label", "distance", "path"):
        assert column in r.stdout
    assert r.stderr == ""


def test_json_lines_one_record_per_query(built):
    _, _, images, gallery = built
    queries = [images / "c0" / "0.png", images / "c4" / "2.png"]
    r = invoke("search", "--gallery", gallery, *queries, "--k", 4, "--json")
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["query"] for x in records] == [str(q) for q in queries]
    for record, query in zip(records, queries, strict=True):
        assert record["decision"] == "match" and record["label"] == query.parent.name
        assert [n["rank"] for n in record["neighbours"]] == [1, 2, 3, 4]
        assert record["neighbours"][0]["path"] == str(query.resolve())
        distances = [n["distance"] for n in record["neighbours"]]
        assert distances == sorted(distances) and record["distance"] == distances[0]
        assert record["margin"] == pytest.approx(record["threshold"] - record["distance"])


def test_a_folder_stands_for_its_images(built):
    _, _, images, gallery = built
    r = invoke("search", "--gallery", gallery, images / "c1", "--json", "--k", 1)
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["label"] for x in r.stdout.splitlines()] == ["c1"] * 3


def test_bad_queries_are_named_and_the_others_still_answer(built, tmp_path):
    _, _, images, gallery = built
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    queries = [
        images / "c0" / "1.png",
        tmp_path / "notes.txt",
        tmp_path / "broken.png",
        images / "c3" / "0.png",
    ]
    r = invoke("search", "--gallery", gallery, *queries, "--json")
    assert r.exit_code == 1
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["decision"] for x in records] == ["match", "error", "error", "match"]
    errors = r.stderr.splitlines()
    assert errors[0].startswith(f"error: query {tmp_path / 'notes.txt'}:") and errors[1].startswith(
        f"error: query {tmp_path / 'broken.png'}:"
    )
    assert errors[-1] == "error: 2 of 4 queries could not be read"
    table = invoke("search", "--gallery", gallery, *queries)
    assert table.exit_code == 1 and "1.png: match c0" in table.stdout and "0.png: match c3" in table.stdout


def test_no_threshold_warns_and_gives_the_nearest_label(built, tmp_path):
    _, ckpt, images, _ = built
    gallery = tmp_path / "g"
    assert invoke("index", "build", "--checkpoint", ckpt, "--images", images, "--out", gallery).exit_code == 0
    r = invoke("search", "--gallery", gallery, images / "c1" / "2.png", "--json")
    assert r.exit_code == 0, r.output
    assert "no calibrated threshold" in r.stderr and "set-threshold" in r.stderr
    record = json.loads(r.stdout)
    assert (record["decision"], record["label"], record["margin"]) == ("no threshold", "c1", None)
    r = invoke("search", "--gallery", gallery, images / "c1" / "2.png", "--json", "--threshold", 0.05)
    assert json.loads(r.stdout)["decision"] == "match" and r.stderr == ""


def test_gallery_problems_are_one_clear_line_and_change_nothing(built, tmp_path):
    _, _, images, gallery = built
    query = images / "c0" / "0.png"
    for bad in (tmp_path / "nope", images):
        r = invoke("search", "--gallery", bad, query)
        assert r.exit_code == 1
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and bad.name in lines[0], r.stderr
    before = snapshot(gallery)
    other = tiny_checkpoint(tmp_path / "other.pt", seed=7)
    r = invoke("search", "--gallery", gallery, query, "--checkpoint", other)
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "another model" in r.stderr
    assert snapshot(gallery) == before


@pytest.mark.skipif(
    not (SHARED_DATA / "omniglot-small").is_dir(), reason="../shared/data/omniglot-small absent"
)
def test_omniglot_search_top1_equals_evaluate_hit_rate(tmp_path):
    """Searching the test queries in a gallery of the test split's gallery images gives, as top-1 hit
    rate, exactly `lookalike evaluate`'s hit_rate@1 (a random-init Conv-4: equality needs no good model)."""
    from lookalike.data import manifest_from_folder, read_manifest, split_manifest, write_manifest

    split = split_manifest(manifest_from_folder(SHARED_DATA / "omniglot-small"), val=0.1, test=0.2, seed=0)
    manifest = write_manifest(split.frame, tmp_path / "split.csv")
    torch.manual_seed(0)
    embedder = create_embedder_from("convnet4", image_size=28, embed_dim=32, backbone_kwargs={"width": 16})
    ckpt = save_checkpoint(tmp_path / "random.pt", embedder)
    gallery = tmp_path / "g"
    r = invoke(
        "index", "build", "--checkpoint", ckpt, "--manifest", manifest, "--split", "test", "--out", gallery
    )
    assert r.exit_code == 0, r.output
    frame = read_manifest(manifest)
    queries = frame[(frame["split"] == "test") & (frame["role"] == "query")]
    r = invoke("search", "--gallery", gallery, *queries["path"], "--k", 1, "--json")
    assert r.exit_code == 0, r.stderr
    found = [json.loads(line)["neighbours"][0]["label"] for line in r.stdout.splitlines()]
    hits = np.mean(np.asarray(found) == queries["label"].to_numpy())
    r = invoke("evaluate", "--checkpoint", ckpt, "--manifest", manifest, "--split", "test", "--ks", "1",
               "--device", "cpu", "--out", tmp_path / "m.json")  # fmt: skip
    assert r.exit_code == 0, r.output
    expected = json.loads((tmp_path / "m.json").read_text())["metrics"]["hit_rate@1"]
    assert len(found) == len(queries) == 48
    assert 0.0 < expected < 1.0
    assert hits == pytest.approx(expected, abs=1e-12)


def test_milvus_lite_gallery_through_the_cli(built, tmp_path):
    pytest.importorskip("milvus_lite")
    _, ckpt, images, folder_gallery = built
    location = f"milvus-lite:{tmp_path / 'g.db'}"
    r = invoke(
        "index", "build", "--checkpoint", ckpt, "--images", images, "--store", location, "--threshold", 0.05
    )
    assert r.exit_code == 0, r.output
    queries = [images / "c0" / "2.png", images / "c3" / "1.png"]
    milvus = invoke("search", "--gallery", location, *queries, "--json", "--k", 3)
    folder = invoke("search", "--gallery", folder_gallery, *queries, "--json", "--k", 3)
    assert milvus.exit_code == folder.exit_code == 0, milvus.output
    for a, b in zip(milvus.stdout.splitlines(), folder.stdout.splitlines(), strict=True):
        a, b = json.loads(a), json.loads(b)
        assert (a["decision"], a["label"]) == (b["decision"], b["label"])
        assert [n["label"] for n in a["neighbours"]] == [n["label"] for n in b["neighbours"]]
        assert [n["path"] for n in a["neighbours"]] == [n["path"] for n in b["neighbours"]]
        np.testing.assert_allclose(
            [n["distance"] for n in a["neighbours"]], [n["distance"] for n in b["neighbours"]], atol=1e-4
        )


def test_backbone_gallery_needs_its_weights_back(built, tmp_path):
    """Transfer mode: the header records the backbone and image size but not the weights file."""
    _, _, images, _ = built
    torch.manual_seed(3)
    weights = tmp_path / "convnet4.pt"
    backbone = create_embedder_from("convnet4", image_size=16, head="identity", embed_dim=None).backbone
    torch.save(backbone.state_dict(), weights)
    gallery = tmp_path / "g"
    r = invoke("index", "build", "--backbone", "convnet4", "--weights", weights, "--image-size", 16,
               "--images", images, "--out", gallery, "--threshold", 0.05)  # fmt: skip
    assert r.exit_code == 0, r.output
    query = images / "c4" / "0.png"
    r = invoke("search", "--gallery", gallery, query, "--json")
    assert r.exit_code == 1 and "--backbone convnet4 --weights FILE" in r.stderr and r.stderr.count("\n") == 1
    r = invoke(
        "search", "--gallery", gallery, query, "--json", "--backbone", "convnet4", "--weights", weights
    )
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    assert record["decision"] == "match" and record["label"] == "c4"
    assert record["neighbours"][0]["path"] == str(query.resolve())


def test_a_moved_checkpoint_is_named_and_a_copy_of_it_is_accepted(built, tmp_path):
    _, ckpt, images, _ = built
    moved = tmp_path / "model.pt"
    moved.write_bytes(ckpt.read_bytes())
    gallery = tmp_path / "g"
    r = invoke("index", "build", "--checkpoint", moved, "--images", images, "--out", gallery)
    assert r.exit_code == 0, r.output
    moved.rename(tmp_path / "elsewhere.pt")
    query = images / "c2" / "0.png"
    r = invoke("search", "--gallery", gallery, query, "--json")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert str(moved) in r.stderr and "give the model with --checkpoint CKPT" in r.stderr
    r = invoke("search", "--gallery", gallery, query, "--json", "--checkpoint", tmp_path / "elsewhere.pt")
    assert r.exit_code == 0, r.output  # the fingerprint is the model's content, not its file name
    assert json.loads(r.stdout)["label"] == "c2"
