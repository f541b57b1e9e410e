"""The fit loop end to end on a tiny generated data set: run folder contents, exact resume."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from lookalike.config import validate_config
from lookalike.models import load_checkpoint
from lookalike.training import fit


def _config(root, **train):
    return validate_config(
        {
            "data": {"root": str(root), "val": 0.2, "test": 0.2, "seed": 1},
            "model": {"backbone": "convnet4", "embed_dim": 16, "image_size": 24},
            "sampler": {"p": 3, "k": 2},
            "miner": {"name": "semihard", "margin": 0.2},
            "loss": {"name": "triplet", "margin": 0.2},
            "optim": {"lr": 1e-2, "warmup_epochs": 0.5},
            "train": {"epochs": 2, "seed": 3, **train},
            "eval": {"every": 1, "ks": [1, 2, 50]},
        }
    )


def _state(run, name="last.pt"):
    return load_checkpoint(run / "checkpoints" / name).embedder.state_dict()


def test_run_folder_holds_config_metrics_plots_checkpoints(image_folder, tmp_path):
    run = tmp_path / "run"
    result = fit(_config(image_folder), run)
    assert (run / "config.yaml").exists() and (run / "split.csv").exists()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["backbone"] == "convnet4" and saved["loss"] == {"name": "triplet", "margin": 0.2}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["split"] == "val"]
    assert [r["epoch"] for r in val] == [0, 1, 2]
    for key in ("hit_rate@1", "recall@2", "precision@1", "map@2", "map@r", "r_precision"):
        assert 0.0 <= val[-1][key] <= 1.0
    # k=50 is beyond the val gallery: still reported (clamped)
    assert "hit_rate@50" in val[-1] and val[-1]["hit_rate@50"] == pytest.approx(1.0)
    test = [r for r in records if r["split"] == "test"]
    assert test[0]["epoch"] == 0 and test[-1]["weights"] == "best"
    assert {p.name for p in (run / "plots").iterdir()} == {"loss.png", "metrics.png"}
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "best.pt"}
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["extra"]["epoch"] == result.best_epoch
    assert result.epochs_done == 2 and result.images_per_second > 0
    with pytest.raises(FileExistsError, match="already holds a run"):
        fit(_config(image_folder), run)


class _Killed(Exception):
    pass


def _kill_at(step_to_kill):
    def on_step(step):
        if step == step_to_kill:
            raise _Killed

    return on_step


def _steps_per_epoch(run):
    return json.loads((run / "train_log.jsonl").read_text().splitlines()[0])["step"]


def _assert_same_weights(run_a, run_b):
    a, b = _state(run_a), _state(run_b)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_after_an_epoch_matches_uninterrupted(image_folder, tmp_path):
    full = tmp_path / "full"
    fit(_config(image_folder), full)
    part = tmp_path / "part"
    with pytest.raises(_Killed):  # killed during epoch 2: the last checkpoint is the end of epoch 1
        fit(_config(image_folder), part, on_step=_kill_at(_steps_per_epoch(full) + 1))
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=True)["extra"]["epoch"] == 1
    fit(_config(image_folder), part, resume=True)
    _assert_same_weights(full, part)
    epochs = [json.loads(line)["epoch"] for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert epochs.count(1) == 1  # the resumed run did not duplicate records
    assert (part / "train_log.jsonl").read_text().count("\n") == 2


_WITH_STATE = {  # a seeded miner, a learnable loss parameter and a cross-batch memory queue
    "miner": {"name": "distance_weighted", "seed": 11},
    "loss": {"name": "margin", "margin": 0.2},
    "memory": {"size": 12},
}


_RECIPES = {  # the head phase (9 steps) ends between the checkpoint (step 8) and the kill (step 9)
    "optim": {"lr": 1e-2, "warmup_epochs": 0.5, "head_epochs": 1.5, "layer_decay": 0.7, "ema": 0.9},
}


@pytest.mark.parametrize(
    "extra", [{}, _WITH_STATE, _RECIPES], ids=["semihard-triplet", "dw-margin-memory", "head-llrd-ema"]
)
def test_run_killed_mid_epoch_resumes_from_its_last_checkpoint(image_folder, tmp_path, extra):
    def config():
        raw = _config(image_folder, checkpoint_every=2).model_dump(mode="json")
        return validate_config({**raw, **extra})

    full = tmp_path / "full"
    fit(config(), full)
    steps_per_epoch = _steps_per_epoch(full)
    assert steps_per_epoch >= 3, "the test needs a checkpoint strictly inside an epoch"
    part = tmp_path / "part"
    with pytest.raises(_Killed):  # mid-way through epoch 2, one step after a checkpoint
        fit(config(), part, on_step=_kill_at(steps_per_epoch + 3))
    ckpt = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["extra"]["epoch"] == 1 and 0 < ckpt["extra"]["next_batch"] < steps_per_epoch
    fit(config(), part, resume=True)
    _assert_same_weights(full, part)
    crit_full = torch.load(full / "checkpoints" / "last.pt", weights_only=True)["extra"]["criterion"]
    crit_part = torch.load(part / "checkpoints" / "last.pt", weights_only=True)["extra"]["criterion"]
    assert crit_full.keys() == crit_part.keys()
    for key in crit_full:  # learnable beta, memory queue, labels, pointer
        torch.testing.assert_close(crit_full[key], crit_part[key], rtol=0, atol=0, msg=key)
    if "ema" in extra.get("optim", {}):
        assert steps_per_epoch == 6, "the head phase must end after the checkpoint the run resumes from"
        ema_full = torch.load(full / "checkpoints" / "last.pt", weights_only=True)["extra"]["ema"]
        ema_part = torch.load(part / "checkpoints" / "last.pt", weights_only=True)["extra"]["ema"]
        for key in ema_full:
            torch.testing.assert_close(ema_full[key], ema_part[key], rtol=0, atol=0, msg=key)


def test_frozen_backbone_with_cached_features_trains_only_the_head(image_folder, tmp_path):
    cfg = _config(image_folder)
    cfg = validate_config(
        {**cfg.model_dump(mode="json"), "model": {**cfg.model.model_dump(), "freeze": "frozen"}}
    )
    run = tmp_path / "frozen"
    fit(cfg, run)
    from lookalike.models import create_embedder

    torch.manual_seed(cfg.train.seed)  # fit seeds the same way before building the model
    init = create_embedder(cfg.model)
    trained = load_checkpoint(run / "checkpoints" / "last.pt").embedder
    for (name, p0), (_, p1) in zip(
        init.backbone.state_dict().items(), trained.backbone.state_dict().items(), strict=True
    ):
        assert torch.equal(p0, p1), f"frozen backbone changed: {name}"
    head0 = dict(init.head.state_dict())
    assert any(not torch.equal(head0[k], v) for k, v in trained.head.state_dict().items())


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.root .*does not exist"):
        fit(_config(tmp_path / "nowhere"), tmp_path / "run")


def test_early_stopping_after_patience_evaluations_without_improvement(image_folder, tmp_path):
    # a vanishing learning rate cannot improve on the baseline: stop after `patience` evaluations
    cfg = _config(image_folder, epochs=6)
    raw = cfg.model_dump(mode="json")
    cfg = validate_config({**raw, "optim": {"lr": 1e-12}, "eval": {"ks": [1], "patience": 2}})
    run = tmp_path / "run"
    result = fit(cfg, run)
    assert result.epochs_done == 2 and result.best_epoch == 0
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["extra"]["stopped_early"]
    # a resumed early-stopped run stays stopped: no further epoch
    resumed = fit(cfg, run, resume=True)
    assert resumed.epochs_done == 2
    assert (run / "train_log.jsonl").read_text().count("\n") == 2


def test_gradient_accumulation_steps_the_optimizer_every_n_batches(image_folder, tmp_path):
    one = fit(_config(image_folder, epochs=1), tmp_path / "one")
    cfg = _config(image_folder, epochs=1)
    cfg = validate_config({**cfg.model_dump(mode="json"), "optim": {"lr": 1e-2, "accumulate": 2}})
    fit(cfg, tmp_path / "two")
    steps_one = _steps_per_epoch(tmp_path / "one")
    steps_two = _steps_per_epoch(tmp_path / "two")
    assert steps_two == -(-steps_one // 2)  # ceil: the last, partial group still steps
    assert one.epochs_done == 1


def test_zero_epochs_evaluates_the_untrained_model_once_per_split(image_folder, tmp_path):
    result = fit(_config(image_folder, epochs=0), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["split"]) for r in records] == [
        (0, "val"),
        (0, "test"),
        (0, "calibration"),
        (0, "test"),
    ]
    assert result.test == result.test_baseline and result.best_epoch == 0
    assert result.val["hit_rate@1"] == records[0]["hit_rate@1"]


def test_nothing_to_train_is_a_clear_error_unless_only_evaluating(image_folder, tmp_path):
    raw = _config(image_folder).model_dump(mode="json")
    raw["model"] = {**raw["model"], "freeze": "frozen", "head": "identity", "embed_dim": None}
    with pytest.raises(
        ValueError, match=r"nothing to train: model.freeze='frozen' with model.head='identity'"
    ):
        fit(validate_config(raw), tmp_path / "a")
    result = fit(validate_config({**raw, "train": {"epochs": 0}}), tmp_path / "b")
    assert result.epochs_done == 0 and result.test is not None


def test_a_split_without_val_queries_is_refused_before_anything_is_written(image_folder, tmp_path):
    raw = _config(image_folder).model_dump(mode="json")
    raw["data"] = {**raw["data"], "val": 0.0}
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=r"no val queries and gallery \(0 val classes\).*set data.val > 0"):
        fit(validate_config(raw), run)
    assert not run.exists()


def test_the_training_loss_is_read_by_the_host_only_every_log_every_batches(
    image_folder, tmp_path, monkeypatch
):
    """Reading a tensor's value (float(), .item()) waits for the device: the loop sums the loss on
    the device and reads it at log points, not after every batch."""
    import inspect

    reads = []
    training_src = str(Path(fit.__code__.co_filename).parent)

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = inspect.currentframe().f_back.f_code.co_filename
            if caller.startswith(training_src):
                reads.append((name, caller))
            return original(self, *args, **kwargs)

        return read

    for name in ("__float__", "item", "__int__", "__bool__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    cfg = _config(image_folder, epochs=1, log_every=1000)
    fit(cfg, tmp_path / "run")
    batches = _steps_per_epoch(tmp_path / "run")
    assert batches >= 4, "the test needs several batches to tell per-batch reads from per-log reads"
    assert len(reads) == 1, reads  # the epoch's one log point (its last batch)
