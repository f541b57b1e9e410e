import json

from PIL import Image

from lookalike.training.history import RunHistory


def test_history_records_truncates_and_plots(tmp_path):
    h = RunHistory(tmp_path)
    for epoch in range(4):
        h.log_epoch({"epoch": epoch + 1, "loss": 1.0 / (epoch + 1)})
        h.log_eval(
            {
                "epoch": epoch,
                "split": "val",
                "hit_rate@1": 0.1 * epoch,
                "hit_rate@10": 0.2 * epoch,
                "recall@1": 0.1,
                "precision@1": 0.1,
                "map@1": 0.1,
                "map@r": 0.05,
                "r_precision": 0.07,
            }
        )
    assert [r["epoch"] for r in h.evals()] == [0, 1, 2, 3]
    files = h.plot()
    assert {f.name for f in files} == {"loss.png", "metrics.png"}
    for f in files:
        with Image.open(f) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    h.truncate_after(2)
    assert [r["epoch"] for r in h.evals()] == [0, 1, 2]
    assert [r["epoch"] for r in h.epochs()] == [1, 2]
    # every line is one JSON object
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line), dict)


def test_history_ignores_a_line_cut_by_a_kill(tmp_path):
    h = RunHistory(tmp_path)
    h.log_eval({"epoch": 0, "split": "val", "hit_rate@1": 0.5})
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"epoch": 1, "spl')
    assert len(h.evals()) == 1
