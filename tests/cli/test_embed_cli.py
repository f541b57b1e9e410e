"""`lookalike embed`: the Parquet it writes, what reads it, folders, errors, and torchrun sharding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.embed import embed_frame, read_embeddings, shard_rows
from lookalike.models import create_embedder_from, save_checkpoint
from lookalike.models.inference import load_inference_model
from torchrun_helpers import run_torchrun

runner = CliRunner()


def _split_manifest(root: Path, n_classes: int = 6, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_classes):
        folder = root / "images" / f"c{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((18, 18, 3), c * 40, dtype=np.uint8) + rng.integers(
                0, 30, (18, 18, 3), dtype=np.uint8
            )
            Image.fromarray(arr).save(folder / f"{i}.png")
            split = "train" if c < 2 else ("val" if c < 4 else "test")
            role = "train" if split == "train" else ("query" if i == 0 else "gallery")
            rows.append({"path": f"images/c{c}/{i}.png", "label": f"c{c}", "split": split, "role": role})
    path = root / "split.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _checkpoint(root: Path) -> Path:
    torch.manual_seed(0)
    emb = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    return save_checkpoint(root / "m.pt", emb)


def test_embed_manifest_split_writes_the_documented_table(tmp_path):
    manifest, ckpt = _split_manifest(tmp_path), _checkpoint(tmp_path)
    out = tmp_path / "val.parquet"
    args = ["embed", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--split", "val"]
    res = runner.invoke(app, [*args, "--out", str(out), "--device", "cpu", "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    table, emb, meta = read_embeddings(out)
    assert list(table.columns) == ["path", "label", "split", "role", "row"]
    frame = pd.read_csv(manifest)
    expected_rows = frame.index[frame["split"] == "val"].to_list()
    assert table["row"].to_list() == expected_rows
    assert table["label"].to_list() == frame.loc[expected_rows, "label"].to_list()
    assert set(table["role"]) == {"query", "gallery"}
    model = load_inference_model(checkpoint=ckpt)
    assert meta["model_fingerprint"] == model.fingerprint and meta["embed_dim"] == 8
    assert meta["model_source"] == f"checkpoint:{ckpt}" and meta["preprocessing"]["image_size"] == 16
    from lookalike.data import read_manifest

    reference = embed_frame(model.embedder, read_manifest(manifest).loc[expected_rows])
    np.testing.assert_allclose(emb, reference.numpy(), rtol=1e-5, atol=1e-6)
    # pandas readers see one float32 array per row, which evaluate-embeddings reads
    assert pd.read_parquet(out)["embedding"].iloc[0].shape == (8,)


def test_evaluate_embeddings_of_embed_equals_evaluate(tmp_path):
    manifest, ckpt = _split_manifest(tmp_path), _checkpoint(tmp_path)
    out = tmp_path / "all.parquet"
    res = runner.invoke(
        app, ["embed", "--checkpoint", str(ckpt), "--manifest", str(manifest), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    # the whole manifest holds three splits: evaluate-embeddings asks for one
    res = runner.invoke(app, ["evaluate-embeddings", str(out), "--ks", "1,3"])
    assert res.exit_code != 0 and "evaluate one of them with --split" in res.output
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    res = runner.invoke(
        app, ["evaluate-embeddings", str(out), "--split", "test", "--ks", "1,3", "--out", str(a)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            "--manifest",
            str(manifest),
            "--split",
            "test",
            "--ks",
            "1,3",
            "--out",
            str(b),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    ma, mb = json.loads(a.read_text())["metrics"], json.loads(b.read_text())["metrics"]
    assert ma.keys() == mb.keys()
    for key in ma:
        assert ma[key] == pytest.approx(mb[key], abs=1e-6), key


def test_embed_image_folder_with_a_backbone(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.new("L", (20, 30), 100).save(folder / "b.png")
    Image.new("RGBA", (25, 25), (0, 0, 0, 0)).save(folder / "sub" / "a.png")
    Image.new("RGB", (25, 25)).save(folder / ".hidden.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "f.parquet"
    args = [
        "embed",
        "--backbone",
        "convnet4",
        "--image-size",
        "16",
        "--images",
        str(folder),
        "--out",
        str(out),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    table, emb, meta = read_embeddings(out)
    assert [Path(p).name for p in table["path"]] == [
        "b.png",
        "a.png",
    ]  # sorted by full path: b.png < sub/a.png
    assert "label" not in table.columns and emb.shape == (2, 64)
    assert meta["model_source"] == "backbone:convnet4"
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "exactly one of --manifest FILE or --images DIR"),
        (["--manifest", "M", "--out", "x.csv"], "--out must be a .parquet file"),
        (
            ["--manifest", "M", "--split", "nope"],
            "no rows of split 'nope'; splits present: ['test', 'train', 'val']",
        ),
        (["--manifest", "M", "--weights", "w.safetensors"], "--weights go with --backbone"),
        (["--images", "/no/such/dir"], "no such folder"),
    ],
)
def test_errors_are_one_line_and_write_nothing(tmp_path, extra, message):
    manifest, ckpt = _split_manifest(tmp_path), _checkpoint(tmp_path)
    extra = [str(manifest) if a == "M" else a for a in extra]
    out = tmp_path / "o.parquet"
    if "--out" not in extra:
        extra += ["--out", str(out)]
    res = runner.invoke(app, ["embed", "--checkpoint", str(ckpt), *extra])
    assert res.exit_code == 1
    assert message in res.output
    assert not out.exists() and not (tmp_path / "x.csv").exists()


def test_no_model_chosen(tmp_path):
    res = runner.invoke(app, ["embed", "--images", str(tmp_path), "--out", str(tmp_path / "o.parquet")])
    assert res.exit_code == 1 and "choose a model: --checkpoint CKPT" in res.output


def test_shard_rows_cover_everything_once():
    for n in (0, 1, 5, 10, 11):
        for world in (1, 2, 3, 4):
            rows = [list(shard_rows(n, r, world)) for r in range(world)]
            assert [i for r in rows for i in r] == list(range(n))
            assert max(map(len, rows)) - min(map(len, rows)) <= 1


def test_torchrun_two_processes_write_the_single_process_file(tmp_path):
    manifest = _split_manifest(tmp_path, n_classes=5, per_class=3)  # 15 rows: shards of 8 and 7
    ckpt = _checkpoint(tmp_path)
    single, double = tmp_path / "one.parquet", tmp_path / "two.parquet"
    common = [
        "embed",
        "--checkpoint",
        str(ckpt),
        "--manifest",
        str(manifest),
        "--device",
        "cpu",
        "--batch-size",
        "4",
    ]
    res = runner.invoke(app, [*common, "--out", str(single)])
    assert res.exit_code == 0, res.output
    proc = run_torchrun([*common, "--out", str(double)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "by 2 processes" in proc.stdout and proc.stdout.count("written to") == 1  # rank 0 alone writes
    t1, e1, m1 = read_embeddings(single)
    t2, e2, m2 = read_embeddings(double)
    pd.testing.assert_frame_equal(t1, t2)
    np.testing.assert_allclose(e2, e1, rtol=1e-5, atol=1e-6)
    assert m1 == m2
    assert len(t2) == 15 and t2["row"].to_list() == list(range(15))


def test_torchrun_a_bad_image_in_one_shard_fails_every_process_without_writing(tmp_path):
    manifest = _split_manifest(tmp_path, n_classes=2, per_class=3)  # 6 rows: rank 1 embeds rows 3-5
    ckpt = _checkpoint(tmp_path)
    (tmp_path / "images" / "c1" / "2.png").write_bytes(b"not a png")  # row 5
    out = tmp_path / "o.parquet"
    args = [
        "embed",
        "--checkpoint",
        str(ckpt),
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    proc = run_torchrun(args)
    assert proc.returncode != 0
    assert "process 1 of 2: row 5: cannot read image" in proc.stderr and "2.png" in proc.stderr
    assert not out.exists()
