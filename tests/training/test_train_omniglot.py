"""Done-when of the training issue: a small CNN trained for a couple of CPU minutes on the real
Omniglot subset (class-disjoint split) retrieves test-split characters far better than untrained."""

import json
from pathlib import Path

import pytest

from lookalike.config import load_config
from lookalike.training import fit

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_omniglot_cnn_beats_untrained_on_test_split(omniglot, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the shipped config uses ../shared/data relative to the project root
    cfg = load_config(
        REPO / "configs" / "omniglot_cnn.yaml", ["train.epochs=4", "eval.every=4", "data.num_workers=0"]
    )
    result = fit(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    test = [r for r in records if r["split"] == "test"]
    before, after = test[0]["hit_rate@1"], test[-1]["hit_rate@1"]
    # class-disjoint: no test class was seen in training
    assert result.test_baseline["hit_rate@1"] == before
    assert after >= before + 0.25, (before, after)
    assert test[-1]["map@r"] > test[0]["map@r"] + 0.1
