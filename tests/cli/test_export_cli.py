"""`lookalike export` and `--onnx FILE` on embed, index build/add, search: a gallery built with a
checkpoint is searched with its ONNX export (and refuses another model's), the same answers as
PyTorch, the file reopened in a new process, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_gallery_helpers import image_folder, snapshot, tiny_checkpoint
from typer.testing import CliRunner

from lookalike.cli import app

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A checkpoint, its ONNX export, another checkpoint's export, images and a gallery built with the
    checkpoint (PyTorch)."""
    root = tmp_path_factory.mktemp("export_cli")
    ckpt = tiny_checkpoint(root / "model.pt")
    other = tiny_checkpoint(root / "other.pt", seed=1)
    images = image_folder(root / "images", classes=5, per_class=3)
    for model, out in ((ckpt, root / "model.onnx"), (other, root / "other.onnx")):
        r = invoke("export", "--checkpoint", model, "--out", out)
        assert r.exit_code == 0, r.output
        assert float(r.stdout.rsplit("least ", 1)[1]) >= 0.9999
    gallery = root / "gallery"
    r = invoke(
        "index", "build", "--checkpoint", ckpt, "--images", images, "--out", gallery, "--threshold", 0.05
    )
    assert r.exit_code == 0, r.output
    return root, ckpt, images, gallery


def _search(gallery, queries, *model):
    r = invoke("search", "--gallery", gallery, *queries, "--json", "--k", 3, *model)
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_a_checkpoint_gallery_is_searched_with_its_onnx_export(exported):
    root, ckpt, images, gallery = exported
    queries = sorted(images.rglob("*.png"))
    torch_results = _search(gallery, queries, "--checkpoint", ckpt)
    onnx_results = _search(gallery, queries, "--onnx", root / "model.onnx")
    assert len(onnx_results) == len(queries)
    for a, b in zip(onnx_results, torch_results, strict=True):
        assert (a["decision"], a["label"]) == (b["decision"], b["label"])
        assert [n["id"] for n in a["neighbours"]] == [n["id"] for n in b["neighbours"]]
        np.testing.assert_allclose(
            [n["distance"] for n in a["neighbours"]], [n["distance"] for n in b["neighbours"]], atol=1e-4
        )
    # each gallery image finds itself first, at distance ~0
    assert all(r["neighbours"][0]["path"] == r["query"] for r in onnx_results)


def test_another_models_export_is_refused_and_the_gallery_is_untouched(exported):
    root, _, images, gallery = exported
    before = snapshot(gallery)
    r = invoke("search", "--gallery", gallery, images / "c0" / "0.png", "--onnx", root / "other.onnx")
    assert r.exit_code == 1
    assert "built with another model" in r.output and "fingerprint" in r.output
    r = invoke("index", "add", gallery, "--images", images, "--onnx", root / "other.onnx")
    assert r.exit_code == 1 and "built with another model" in r.output
    assert snapshot(gallery) == before


def test_embed_with_onnx_equals_the_checkpoint_and_records_its_fingerprint(exported, tmp_path):
    from lookalike.embed import read_embeddings

    root, ckpt, images, _ = exported
    outs = {}
    for name, model in (("torch", ["--checkpoint", ckpt]), ("onnx", ["--onnx", root / "model.onnx"])):
        out = tmp_path / f"{name}.parquet"
        r = invoke("embed", *model, "--images", images, "--out", out, "--batch-size", 4, "--device", "cpu")
        assert r.exit_code == 0, r.output
        outs[name] = read_embeddings(out)
    (t_table, t_emb, t_meta), (o_table, o_emb, o_meta) = outs["torch"], outs["onnx"]
    assert list(o_table["path"]) == list(t_table["path"])
    np.testing.assert_allclose(o_emb, t_emb, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(o_emb, axis=1), 1.0, atol=1e-5)  # normalised once, in the graph
    assert o_meta["model_fingerprint"] == t_meta["model_fingerprint"]
    assert o_meta["preprocessing"] == t_meta["preprocessing"]
    assert o_meta["model_source"] == f"onnx:{(root / 'model.onnx').resolve()}"


def test_a_gallery_built_with_onnx_finds_its_model_again_and_grows_with_it(exported, tmp_path):
    root, ckpt, images, checkpoint_gallery = exported
    gallery = tmp_path / "g"
    onnx_file = root / "model.onnx"
    build = ["index", "build", "--onnx", onnx_file, "--manifest"]
    manifest = tmp_path / "m.csv"
    rows = sorted(images.rglob("*.png"))
    manifest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in rows[:9]))
    r = invoke(*build, manifest, "--out", gallery, "--threshold", 0.05)
    assert r.exit_code == 0, r.output
    rest = tmp_path / "rest.csv"
    rest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in rows[9:]))
    r = invoke("index", "add", gallery, "--manifest", rest)  # the model comes from the header: the ONNX file
    assert r.exit_code == 0, r.output
    assert f"holds {len(rows)}" in r.output
    # the same model as the checkpoint: the checkpoint's gallery and this one answer alike
    queries = rows[::4]
    from_header = _search(gallery, queries)
    with_checkpoint = _search(gallery, queries, "--checkpoint", ckpt)
    reference = _search(checkpoint_gallery, queries)
    for a, b, c in zip(from_header, with_checkpoint, reference, strict=True):
        assert [n["path"] for n in a["neighbours"]] == [n["path"] for n in b["neighbours"]]
        assert [n["path"] for n in a["neighbours"]] == [n["path"] for n in c["neighbours"]]


def test_milvus_lite_gallery_searched_with_onnx(exported, tmp_path):
    pytest.importorskip("milvus_lite")
    root, ckpt, images, folder_gallery = exported
    location = f"milvus-lite:{tmp_path / 'g.db'}"
    r = invoke(
        "index", "build", "--checkpoint", ckpt, "--images", images, "--store", location, "--threshold", 0.05
    )
    assert r.exit_code == 0, r.output
    queries = [images / "c0" / "2.png", images / "c3" / "1.png"]
    milvus = _search(location, queries, "--onnx", root / "model.onnx")
    folder = _search(folder_gallery, queries)
    assert [[n["path"] for n in x["neighbours"]] for x in milvus] == [
        [n["path"] for n in x["neighbours"]] for x in folder
    ]


def test_the_export_reopens_in_a_new_process_with_its_metadata(exported):
    root, ckpt, images, _ = exported
    code = (
        "import json, sys\n"
        "from PIL import Image\n"
        "from lookalike.embed import embed_images\n"
        "from lookalike.models import load_onnx_model\n"
        "m = load_onnx_model(sys.argv[1])\n"
        "e = embed_images(m, [Image.open(sys.argv[2])])\n"
        "print(json.dumps({'fp': m.fingerprint, 'dist': m.distance, 'size': m.preprocessing.image_size,"
        " 'emb': e[0].tolist()}))\n"
    )
    query = images / "c1" / "0.png"
    done = subprocess.run(
        [sys.executable, "-c", code, str(root / "model.onnx"), str(query)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    from PIL import Image

    from lookalike.embed import embed_images
    from lookalike.models import load_inference_model

    model = load_inference_model(checkpoint=ckpt)
    assert (got["fp"], got["dist"], got["size"]) == (model.fingerprint, model.distance, 16)
    np.testing.assert_allclose(got["emb"], embed_images(model, [Image.open(query)])[0].numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "{ckpt}", "--onnx", "{onnx}"], "--checkpoint and --onnx each choose the model"),
        (["--onnx", "{onnx}", "--image-size", "32"], "--image-size go with --backbone; an ONNX export holds"),
        (["--onnx", "{root}/missing.onnx"], "ONNX model not found"),
        (["--onnx", "{ckpt}"], "is not a model onnxruntime can load"),
    ],
)
def test_embed_onnx_errors_are_one_clear_line(exported, tmp_path, args, message):
    root, ckpt, images, _ = exported
    args = [a.format(ckpt=ckpt, onnx=root / "model.onnx", root=root) for a in args]
    r = invoke("embed", *args, "--images", images, "--out", tmp_path / "e.parquet")
    assert r.exit_code == 1
    assert message in r.output
    assert "Traceback" not in r.output and not (tmp_path / "e.parquet").exists()


def test_missing_onnxruntime_says_how_to_install_it(exported, tmp_path, monkeypatch):
    root, _, images, gallery = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    r = invoke("embed", "--onnx", root / "model.onnx", "--images", images, "--out", tmp_path / "e.parquet")
    assert r.exit_code == 1 and "pip install 'lookalike[onnx]'" in r.output
    r = invoke("search", "--gallery", gallery, images / "c0" / "0.png", "--onnx", root / "model.onnx")
    assert r.exit_code == 1 and "needs onnxruntime" in r.output
    monkeypatch.setitem(sys.modules, "onnx", None)
    r = invoke("export", "--checkpoint", root / "model.pt", "--out", tmp_path / "x.onnx")
    assert r.exit_code == 1 and "pip install 'lookalike[onnx]'" in r.output
    assert not (tmp_path / "x.onnx").exists()


def test_export_refuses_to_overwrite_and_checks_its_options(exported, tmp_path):
    root, ckpt, _, _ = exported
    existing = root / "model.onnx"
    before = existing.read_bytes()
    r = invoke("export", "--checkpoint", ckpt, "--out", existing)
    assert r.exit_code == 1 and "already exists; pass --overwrite" in r.output
    assert existing.read_bytes() == before
    r = invoke("export", "--checkpoint", ckpt, "--out", tmp_path / "q.onnx", "--quantize", "int8")
    assert r.exit_code == 1 and "--quantize int8 and --calibration-images DIR go together" in r.output
    r = invoke("export", "--checkpoint", ckpt, "--out", tmp_path / "q.onnx", "--quantize", "int4")
    assert r.exit_code == 1 and "the only quantisation is int8" in r.output
    r = invoke("export", "--checkpoint", ckpt, "--out", tmp_path / "model.pt")
    assert r.exit_code == 1 and "must be a .onnx file" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_int8_export_is_its_own_model(exported, tmp_path):
    """An int8 file has its own fingerprint: the checkpoint's gallery refuses it, a gallery built with
    it accepts it; its metadata names the source model and the quantisation."""
    from lookalike.models import load_inference_model, load_onnx_model

    root, ckpt, images, gallery = exported
    out = tmp_path / "int8.onnx"
    r = invoke(
        "export", "--checkpoint", ckpt, "--out", out, "--quantize", "int8", "--calibration-images", images
    )
    assert r.exit_code == 0, r.output
    assert "quantisation int8" in r.stdout
    source = load_inference_model(checkpoint=ckpt)
    int8 = load_onnx_model(out)
    meta = int8.embedder.metadata
    assert meta.quantization == "int8" and meta.source_fingerprint == source.fingerprint
    assert int8.fingerprint != source.fingerprint
    assert out.stat().st_size < (root / "model.onnx").stat().st_size
    r = invoke("search", "--gallery", gallery, images / "c0" / "0.png", "--onnx", out)
    assert r.exit_code == 1 and "built with another model" in r.output
    own = tmp_path / "g8"
    r = invoke("index", "build", "--onnx", out, "--images", images, "--out", own)
    assert r.exit_code == 0, r.output
    results = _search(own, sorted(images.rglob("*.png")))
    assert all(x["neighbours"][0]["path"] == x["query"] for x in results)


def test_the_service_embeds_with_the_onnx_export(exported):
    """`serve --onnx`: the app (through TestClient) answers as with the checkpoint; the command refuses
    another model's export before it listens."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lookalike.gallery.matcher import Matcher
    from lookalike.service import ServiceSettings, create_app

    root, ckpt, images, gallery = exported
    query = images / "c2" / "1.png"
    settings = ServiceSettings(gallery=str(gallery), onnx=root / "model.onnx")
    with TestClient(create_app(settings)) as client:
        health = client.get("/health").json()
        body = client.post(
            "/search", files={"image": (query.name, query.read_bytes(), "image/png")}, data={"k": "3"}
        )
    assert body.status_code == 200, body.text
    with Matcher.open(gallery, checkpoint=ckpt) as matcher:
        (reference,) = matcher.search([query], k=3)
        assert health["model_fingerprint"] == matcher.model.fingerprint
    assert [n["id"] for n in body.json()["neighbours"]] == [n.id for n in reference.neighbours]
    r = invoke("serve", "--gallery", gallery, "--onnx", root / "other.onnx", "--port", 1)
    assert r.exit_code == 1 and "built with another model" in r.output
    with pytest.raises(ValueError, match="give either onnx or checkpoint/backbone"):
        ServiceSettings(gallery=str(gallery), onnx=root / "model.onnx", checkpoint=ckpt)


def test_evaluate_with_onnx_gives_the_checkpoints_figures(exported, tmp_path):
    from lookalike.data import manifest_from_folder, split_manifest, write_manifest

    root, ckpt, images, _ = exported
    frame = split_manifest(manifest_from_folder(images), val=0.2, test=0.6, seed=0).frame
    manifest = write_manifest(frame, tmp_path / "split.csv")
    figures = {}
    for name, model in (("torch", ["--checkpoint", ckpt]), ("onnx", ["--onnx", root / "model.onnx"])):
        out = tmp_path / f"{name}.json"
        r = invoke("evaluate", *model, "--manifest", manifest, "--out", out, "--device", "cpu")
        assert r.exit_code == 0, r.output
        figures[name] = json.loads(out.read_text())
    torch_metrics, onnx_metrics = figures["torch"]["metrics"], figures["onnx"]["metrics"]
    assert onnx_metrics.keys() == torch_metrics.keys() and "hit_rate@1" in onnx_metrics
    for key, value in torch_metrics.items():
        assert onnx_metrics[key] == pytest.approx(value, abs=1e-6), key


def test_an_onnx_gallery_is_calibrated_while_it_is_built(exported, tmp_path):
    from lookalike.calibration import read_calibration
    from lookalike.data import manifest_from_folder, split_manifest, write_manifest
    from lookalike.gallery import open_gallery

    root, _, images, _ = exported
    frame = split_manifest(manifest_from_folder(images), val=0.8, test=0.0, seed=0).frame
    manifest = write_manifest(frame, tmp_path / "split.csv")
    r = invoke("index", "build", "--onnx", root / "model.onnx", "--images", images, "--out", tmp_path / "g",
               "--target-fpir", 0.1, "--calibrate-on", manifest, "--calibrate-split", "val")  # fmt: skip
    assert r.exit_code == 0, r.output
    with open_gallery(tmp_path / "g") as store:
        record = read_calibration(store.header.calibration)
        assert record.method == "object-profiles" and record.target_fpir == 0.1
        assert record.figures["calibration_objects"] == 4 and store.header.threshold is not None
