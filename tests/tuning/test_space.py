"""The default search space: what it holds for scratch and pretrained backbones, and that every
config it draws validates."""

import optuna
import pytest
import torch
import yaml

from lookalike.config import OptimConfig, load_config, validate_config
from lookalike.models.backbones import create_timm_backbone
from lookalike.tuning.space import SpaceContext, default_space, sample_config, space_context


def _draw(config, space, context, n=40):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    base = config.model_dump(mode="json")
    drawn = []
    for _ in range(n):
        trial = study.ask()
        raw = sample_config(trial, base, space, context)
        drawn.append(validate_config(raw, source=f"trial {trial.number}"))
        study.tell(trial, 0.0)
    return drawn


def test_scratch_backbone_space_skips_backbone_dimensions(base_config):
    config = load_config(base_config)
    context = space_context(config, train_classes=5, epochs=1)
    assert context == SpaceContext(pretrained=False, n_blocks=0, train_classes=5, epochs=1)
    space = default_space(config, context)
    assert "optim.lr" in space.params and "model.freeze" not in space.params
    assert "optim.backbone_lr" not in space.params and "optim.head_epochs" not in space.params
    lr = space.params["optim.lr"]
    assert lr.log and lr.low == pytest.approx(1e-4) and lr.high == pytest.approx(1e-2)
    assert set(space.losses) == {"triplet", "multi_similarity", "contrastive", "margin"}
    for cfg in _draw(config, space, context):
        assert cfg.sampler.p * cfg.sampler.k in (4, 6, 8) and 2 <= cfg.sampler.p <= 5
        if cfg.miner.name == "semihard":
            assert cfg.miner.kwargs()["margin"] == cfg.loss.kwargs()["margin"]  # tied to the loss


def test_pretrained_backbone_space_bounds_frozen_blocks_and_draws_valid_configs(base_config, tmp_path):
    weights = tmp_path / "convnet4.pt"
    torch.save(create_timm_backbone("convnet4").state_dict(), weights)
    raw = yaml.safe_load(base_config.read_text())
    raw["model"]["weights"] = str(weights)
    config = validate_config(raw)
    context = space_context(config, train_classes=5, epochs=2)
    assert context.pretrained and context.n_blocks == 4  # convnet4: four conv blocks
    space = default_space(config, context)
    assert space.params["model.freeze"].choices == ["full", "frozen", "last_n_blocks"]
    assert (space.params["model.last_n_blocks"].low, space.params["model.last_n_blocks"].high) == (1, 4)
    assert "optim.backbone_lr" in space.params
    # options another branch adds join the space by name once the config has them
    for key in ("head_epochs", "layer_decay", "ema"):
        assert (f"optim.{key}" in space.params) == (key in OptimConfig.model_fields)
    drawn = _draw(config, space, context)
    assert {c.model.freeze for c in drawn} == {"full", "frozen", "last_n_blocks"}
    for cfg in drawn:
        assert (cfg.model.last_n_blocks > 0) == (cfg.model.freeze == "last_n_blocks")
        if cfg.model.freeze == "frozen":  # the backbone's own rate is not drawn for a frozen backbone
            assert cfg.optim.backbone_lr == config.optim.backbone_lr


def test_identity_head_space_draws_only_configs_that_train(base_config, tmp_path):
    # CUB's shipped recipe: pretrained backbone, identity head, a loss without parameters; a head
    # phase or a frozen backbone would leave nothing to train (every such draw used to fail)
    weights = tmp_path / "convnet4.pt"
    torch.save(create_timm_backbone("convnet4").state_dict(), weights)
    raw = yaml.safe_load(base_config.read_text())
    raw["model"].update(weights=str(weights), head="identity", embed_dim=None)
    config = validate_config(raw)
    context = space_context(config, train_classes=5, epochs=2)
    space = default_space(config, context)
    assert "frozen" not in space.params["model.freeze"].choices
    assert "optim.head_epochs" not in space.params
    drawn = _draw(config, space, context)  # validate_config raises on any draw that cannot train
    assert {c.model.freeze for c in drawn} == {"full", "last_n_blocks"}
