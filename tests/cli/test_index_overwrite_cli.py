"""`lookalike index build --overwrite` that fails leaves the gallery it was to replace as it was, on
the folder store and on Milvus Lite; each check runs the commands in a new process, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_gallery_helpers import image_folder, snapshot, tiny_checkpoint

import lookalike


def _lookalike(*args: object) -> subprocess.CompletedProcess:
    src = str(Path(lookalike.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    cmd = [sys.executable, "-m", "lookalike", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("store", ["folder", "milvus-lite"])
def test_a_failed_overwrite_keeps_the_old_gallery(tmp_path, store):
    if store == "milvus-lite":
        pytest.importorskip("milvus_lite", reason="Milvus Lite is not installed here")
    ckpt, images = tiny_checkpoint(tmp_path / "model.pt"), image_folder(tmp_path / "images")
    location = str(tmp_path / "gallery") if store == "folder" else f"milvus-lite:{tmp_path / 'g.db'}"
    built = _lookalike("index", "build", "--checkpoint", ckpt, "--images", images, "--store", location)
    assert built.returncode == 0, built.stderr
    info_before = json.loads(_lookalike("index", "info", location, "--json").stdout)
    files_before = snapshot(Path(location)) if store == "folder" else None
    if store == "folder":  # FAISS: an IVF index cannot be trained on 24 vectors
        source, error = ["--images", images, "--index-factory", "IVF1024,Flat"], "at least 1024 vectors"
    else:  # Milvus: a label over the 1,024 bytes a Milvus gallery stores, found while inserting
        rows = [
            f"{p},{'x' * 1100 if i == 5 else p.parent.name}"
            for i, p in enumerate(sorted(images.rglob("*.png")))
        ]
        (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
        source, error = ["--manifest", tmp_path / "m.csv"], "longer than 1024 bytes"
    failed = _lookalike("index", "build", "--checkpoint", ckpt, *source, "--store", location, "--overwrite")
    assert failed.returncode != 0 and error in failed.stderr and "Traceback" not in failed.stderr
    if store == "folder":
        assert snapshot(Path(location)) == files_before
    after = json.loads(_lookalike("index", "info", location, "--json").stdout)
    assert after == info_before and after["items"] == 24
