"""`lookalike evaluate-embeddings` over saved npy / npz / parquet / csv files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.cli.evaluate import metrics_table, write_json_atomic
from lookalike.metrics import retrieval_metrics

runner = CliRunner()


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, 200)
    centres = rng.standard_normal((12, 8)) * 2
    emb = (centres[labels] + rng.standard_normal((200, 8))).astype(np.float32)
    roles = np.where(np.arange(200) < 60, "query", "gallery")
    return emb, labels, roles


def test_npy_leave_one_out(tmp_path: Path) -> None:
    emb, labels, _ = make_data()
    np.save(tmp_path / "emb.npy", emb)
    np.save(tmp_path / "labels.npy", labels)
    result = runner.invoke(
        app,
        [
            "evaluate-embeddings",
            str(tmp_path / "emb.npy"),
            "--labels",
            str(tmp_path / "labels.npy"),
            "--ks",
            "1,5,500",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "hit_rate" in result.output and "map@r" in result.output
    payload = json.loads((tmp_path / "emb.metrics.json").read_text())
    expected = retrieval_metrics(emb, labels, ks=(1, 5, 500), leave_one_out=True).metrics
    assert payload["metrics"] == pytest.approx(expected)
    assert payload["ks"] == [1, 5, 500] and payload["effective_ks"] == [1, 5, 199]
    assert payload["mode"] == "leave-one-out"


def test_parquet_with_roles(tmp_path: Path) -> None:
    emb, labels, roles = make_data(1)
    df = pd.DataFrame({"embedding": list(emb), "label": labels, "role": roles})
    path = tmp_path / "val.parquet"
    df.to_parquet(path)
    out = tmp_path / "out" / "m.json"
    result = runner.invoke(
        app, ["evaluate-embeddings", str(path), "--ks", "1,10", "--distance", "cosine", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    q = roles == "query"
    expected = retrieval_metrics(
        emb[q], labels[q], emb[~q], labels[~q], ks=(1, 10), distance="cosine"
    ).metrics
    assert json.loads(out.read_text())["metrics"] == pytest.approx(expected)


def test_csv_and_npz_with_both_role(tmp_path: Path) -> None:
    emb, labels, roles = make_data(2)
    roles = roles.copy()
    roles[60:80] = "both"  # these are queries and gallery items: never their own match
    df = pd.DataFrame(emb, columns=[f"embedding_{i}" for i in range(8)])
    df["label"] = labels
    df["role"] = roles
    df.to_csv(tmp_path / "e.csv", index=False)
    np.savez(tmp_path / "e.npz", embeddings=emb, labels=labels, roles=roles)
    outs = []
    for name in ("e.csv", "e.npz"):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(
            app, ["evaluate-embeddings", str(tmp_path / name), "--ks", "1,3", "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        outs.append(json.loads(out.read_text())["metrics"])
    assert outs[0] == pytest.approx(outs[1])
    is_q = np.isin(roles, ["query", "both"])
    is_g = np.isin(roles, ["gallery", "both"])
    ids = np.arange(200)
    expected = retrieval_metrics(
        emb[is_q],
        labels[is_q],
        emb[is_g],
        labels[is_g],
        ks=(1, 3),
        query_ids=ids[is_q],
        gallery_ids=ids[is_g],
    ).metrics
    assert outs[0] == pytest.approx(expected)


def test_errors_are_reported(tmp_path: Path) -> None:
    emb, labels, _ = make_data()
    np.save(tmp_path / "emb.npy", emb)
    result = runner.invoke(app, ["evaluate-embeddings", str(tmp_path / "emb.npy")])
    assert result.exit_code == 2
    assert "--labels" in result.output
    np.save(tmp_path / "labels.npy", labels)
    result = runner.invoke(
        app,
        [
            "evaluate-embeddings",
            str(tmp_path / "emb.npy"),
            "--labels",
            str(tmp_path / "labels.npy"),
            "--ks",
            "1,x",
        ],
    )
    assert result.exit_code == 2 and "--ks" in result.output
    result = runner.invoke(app, ["evaluate-embeddings", str(tmp_path / "nope.parquet")])
    assert result.exit_code == 2 and "no such embeddings file" in result.output


def test_table_and_atomic_json(tmp_path: Path) -> None:
    emb, labels, _ = make_data()
    report = retrieval_metrics(emb[:50], labels[:50], emb[50:60], labels[50:60], ks=(1, 100))
    console = Console(record=True, width=120)
    console.print(metrics_table(report, title="t"))
    text = console.export_text()
    assert "100 (→10)" in text and "without any gallery item" in text
    path = write_json_atomic(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]
