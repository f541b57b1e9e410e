"""`lookalike index build | add | remove | info | set-threshold` on a tiny model and image folder."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from cli_gallery_helpers import image_folder, snapshot, tiny_checkpoint
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.data import manifest_from_folder, read_manifest, split_manifest, write_manifest
from lookalike.gallery import open_gallery
from lookalike.metrics.verification import Threshold
from lookalike.models.inference import load_inference_model

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *needles: str) -> str:
    assert result.exit_code != 0, result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("index_cli")
    return root, tiny_checkpoint(root / "model.pt"), image_folder(root / "images")


@pytest.fixture
def gallery(data, tmp_path):
    _, ckpt, images = data
    out = tmp_path / "gallery"
    result = invoke(
        "index", "build", "--checkpoint", ckpt, "--images", images, "--out", out, "--threshold", 0.2
    )
    assert result.exit_code == 0, result.output
    return out


def test_build_from_images_then_info(gallery, data):
    _, ckpt, images = data
    with open_gallery(gallery) as store:
        assert len(store) == 24
        header = store.header
        items = store.items()
    model = load_inference_model(checkpoint=ckpt)
    assert header.embed_dim == 8 and header.distance == "euclidean" and header.threshold == 0.2
    assert header.model_fingerprint == model.fingerprint
    assert header.model_source == f"checkpoint:{ckpt.resolve()}"
    assert sorted(items["label"].unique()) == [f"c{c}" for c in range(6)]
    assert set(items["path"]) == {str(p) for p in images.rglob("*.png")}
    result = invoke("index", "info", gallery)
    assert result.exit_code == 0, result.output
    for needle in (
        "items",
        "24",
        "labels",
        "embedding size",
        "euclidean",
        str(ckpt.resolve()),
        "0.2000",
        "Flat",
    ):
        assert needle in result.stdout, (needle, result.stdout)


def test_build_from_a_split_manifest_takes_the_gallery_rows(data, tmp_path):
    _, ckpt, images = data
    split = split_manifest(manifest_from_folder(images), val=0.0, test=0.5, seed=0).frame
    manifest = write_manifest(split, tmp_path / "split.csv")
    out = tmp_path / "g"
    result = invoke(
        "index", "build", "--checkpoint", ckpt, "--manifest", manifest, "--split", "test", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert "no match threshold" in result.stderr
    frame = read_manifest(manifest)
    expected = frame[(frame["split"] == "test") & (frame["role"] == "gallery")]
    with open_gallery(out) as store:
        items = store.items()
        assert store.header.threshold is None
    assert sorted(items["path"]) == sorted(expected["path"])
    assert "split" not in items.columns and "role" not in items.columns


def test_threshold_defaults_to_the_checkpoints_calibrated_one(data, tmp_path):
    _, _, images = data
    t = Threshold(0.37, far=0.01, tar=0.9, frr=0.1, precision=0.95, f1=0.9, higher_is_closer=False,
                  method="far", target_far=0.01)  # fmt: skip
    calibration = {"threshold": dataclasses.asdict(t), "roc_auc": 0.97, "split": "val"}
    ckpt = tiny_checkpoint(tmp_path / "cal.pt", extra={"calibration": calibration})
    result = invoke("index", "build", "--checkpoint", ckpt, "--images", images, "--out", tmp_path / "g")
    assert result.exit_code == 0, result.output
    with open_gallery(tmp_path / "g") as store:
        assert store.header.threshold == pytest.approx(0.37)
        assert store.header.calibration["roc_auc"] == 0.97
    info = invoke("index", "info", tmp_path / "g")
    assert "0.3700" in info.stdout and "roc_auc" in info.stdout


def test_build_from_saved_embeddings(data, tmp_path):
    """`lookalike embed` of a split manifest, then `index build --embeddings --split test`: the test
    split's gallery rows with the very vectors the file holds; another model is refused."""
    from lookalike.embed import read_embeddings

    _, ckpt, images = data
    split = split_manifest(manifest_from_folder(images), val=0.0, test=0.5, seed=0).frame
    manifest = write_manifest(split.assign(id=[f"x{i}" for i in range(len(split))]), tmp_path / "split.csv")
    r = invoke("embed", "--checkpoint", ckpt, "--manifest", manifest, "--out", tmp_path / "emb.parquet")
    assert r.exit_code == 0, r.output
    table, emb, _ = read_embeddings(tmp_path / "emb.parquet")
    wanted = (table["split"] == "test") & (table["role"] == "gallery")
    out = tmp_path / "g"
    r = invoke(
        "index", "build", "--checkpoint", ckpt, "--embeddings", tmp_path / "emb.parquet", "--split", "test",
        "--out", out,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    with open_gallery(out) as store:
        items = store.items()
        assert items["id"].tolist() == table.loc[wanted, "id"].tolist()
        np.testing.assert_allclose(store.vectors(items["id"].tolist()), emb[wanted.to_numpy()], atol=1e-6)
    assert "row" not in items.columns and "split" not in items.columns
    other = tiny_checkpoint(tmp_path / "other.pt", seed=4)
    r = invoke(
        "index",
        "build",
        "--checkpoint",
        other,
        "--embeddings",
        tmp_path / "emb.parquet",
        "--out",
        tmp_path / "g2",
    )
    one_error_line(r, "embedded with another model")
    assert not (tmp_path / "g2").exists()


def test_build_errors_leave_nothing(data, tmp_path):
    _, ckpt, images = data
    frame = manifest_from_folder(images)
    frame["embedding"] = list(np.ones((len(frame), 5), dtype=np.float32))
    frame.to_parquet(tmp_path / "emb5.parquet")
    out = tmp_path / "g"
    r = invoke(
        "index", "build", "--checkpoint", ckpt, "--embeddings", tmp_path / "emb5.parquet", "--out", out
    )
    one_error_line(r, "dimension mismatch", "8-d", "(24, 5)")
    dup = frame.drop(columns="embedding").assign(id=["same"] * len(frame))
    write_manifest(dup, tmp_path / "dup.csv")
    r = invoke("index", "build", "--checkpoint", ckpt, "--manifest", tmp_path / "dup.csv", "--out", out)
    one_error_line(r, "duplicate id 'same'")
    r = invoke("index", "build", "--checkpoint", ckpt, "--images", tmp_path / "nowhere", "--out", out)
    one_error_line(r, "nowhere")
    r = invoke("index", "build", "--checkpoint", ckpt, "--out", out)
    one_error_line(r, "exactly one of --manifest FILE, --images DIR or --embeddings")
    assert not out.exists()


def test_build_refuses_an_existing_gallery(gallery, data):
    _, ckpt, images = data
    before = snapshot(gallery)
    r = invoke("index", "build", "--checkpoint", ckpt, "--images", images, "--out", gallery)
    one_error_line(r, "already exists", "--overwrite")
    assert snapshot(gallery) == before


def test_add_then_duplicate_ids_and_foreign_model_change_nothing(gallery, data, tmp_path):
    _ = data
    extra = image_folder(tmp_path / "more", classes=2, per_class=2, seed=5)
    frame = manifest_from_folder(extra)
    frame["id"] = ["n0", "n1", "n2", "n3"]
    frame["sku"] = ["a", "b", "c", "d"]
    write_manifest(frame, tmp_path / "more.csv")
    r = invoke("index", "add", gallery, "--manifest", tmp_path / "more.csv")
    assert r.exit_code == 0, r.output
    assert "added 4 items" in r.stderr and "it holds 28" in r.stderr
    with open_gallery(gallery) as store:
        assert store.items(["n2"])["sku"].tolist() == ["c"]
    before = snapshot(gallery)
    r = invoke("index", "add", gallery, "--manifest", tmp_path / "more.csv")
    one_error_line(r, "n0")
    assert snapshot(gallery) == before
    other = tiny_checkpoint(tmp_path / "other.pt", seed=3)
    r = invoke("index", "add", gallery, "--images", extra, "--checkpoint", other)
    one_error_line(r, "another model")
    assert snapshot(gallery) == before
    frame = frame.drop(columns=["id", "sku"]).assign(embedding=list(np.ones((4, 5), dtype=np.float32)))
    frame.to_parquet(tmp_path / "emb5.parquet")
    r = invoke("index", "add", gallery, "--embeddings", tmp_path / "emb5.parquet")
    one_error_line(r, "dimension mismatch", "8-d")
    assert snapshot(gallery) == before


def test_remove_by_id_and_by_label(gallery):
    with open_gallery(gallery) as store:
        items = store.items()
    ids = items["id"].tolist()
    before = snapshot(gallery)
    r = invoke("index", "remove", gallery, "--ids", f"{ids[0]},no-such-id")
    one_error_line(r, "no-such-id")
    assert snapshot(gallery) == before
    r = invoke("index", "remove", gallery, "--label", "c9")
    one_error_line(r, "no item has label 'c9'")
    assert snapshot(gallery) == before
    r = invoke("index", "remove", gallery, "--ids", ids[0], "--ids", ids[1])
    assert r.exit_code == 0, r.output
    assert "removed 2 items" in r.stderr
    r = invoke("index", "remove", gallery, "--label", "c3")
    assert r.exit_code == 0, r.output
    with open_gallery(gallery) as store:
        left = store.items()
    assert len(left) == 24 - 2 - 4
    assert "c3" not in set(left["label"]) and ids[0] not in set(left["id"])


def test_missing_or_foreign_gallery_is_one_clear_line(tmp_path):
    for command in (["info"], ["remove", "--ids", "x"], ["add", "--images", tmp_path]):
        r = invoke("index", command[0], tmp_path / "nope", *command[1:])
        one_error_line(r, "nope")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    before = snapshot(tmp_path / "plain")
    r = invoke("index", "remove", tmp_path / "plain", "--ids", "x")
    one_error_line(r, "plain")
    assert snapshot(tmp_path / "plain") == before


def test_set_threshold_value_and_clear(gallery):
    r = invoke("index", "set-threshold", gallery, "--threshold", 0.55)
    assert r.exit_code == 0, r.output
    with open_gallery(gallery) as store:
        assert store.header.threshold == pytest.approx(0.55)
    r = invoke("index", "set-threshold", gallery, "--clear")
    assert r.exit_code == 0, r.output
    with open_gallery(gallery) as store:
        assert store.header.threshold is None
    before = snapshot(gallery)
    one_error_line(invoke("index", "set-threshold", gallery), "give one of --threshold")
    assert snapshot(gallery) == before


def test_approximate_index_info_reports_recall(data, tmp_path):
    _, ckpt, images = data
    out = tmp_path / "hnsw"
    r = invoke(
        "index", "build", "--checkpoint", ckpt, "--images", images, "--out", out, "--index-factory", "HNSW8"
    )
    assert r.exit_code == 0, r.output
    info = invoke("index", "info", out)
    assert info.exit_code == 0, info.output
    assert "HNSW8 (approximate)" in info.stdout and "recall@10 vs exact" in info.stdout
    line = next(x for x in info.stdout.splitlines() if x.startswith("recall@10 vs exact"))
    assert line.split()[-1] == f"{float(line.split()[-1]):.4f}"
    payload = json.loads(invoke("index", "info", out, "--json").stdout)
    assert payload["index_factory"] == "HNSW8" and payload["items"] == 24
    assert 0.9 <= payload["recall@10_vs_exact"] <= 1.0
    assert float(line.split()[-1]) == pytest.approx(payload["recall@10_vs_exact"], abs=5e-5)
