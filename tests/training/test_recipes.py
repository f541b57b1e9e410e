"""The recipes that protect pretrained features: the head-first phase, the EMA of the weights, the
per-group schedule, and the warning when training ends below its epoch-0 baseline."""

from __future__ import annotations

import io
import math
import os

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from rich.console import Console

from lookalike.config import ConfigError, validate_config
from lookalike.data import resolve_split
from lookalike.distributed import DistInfo
from lookalike.losses import create_loss
from lookalike.models import create_embedder, load_checkpoint
from lookalike.training import TrainState, build_components, fit, train_epoch, validate
from lookalike.training.components import build_learner
from lookalike.training.head_phase import HeadFirst
from lookalike.training.schedule import warmup_cosine
from lookalike.training.validation import worse_than_baseline_warning
from torchrun_helpers import free_port


def _raw(root, *, optim=None, model=None, **train):
    return {
        "data": {"root": str(root), "val": 0.2, "test": 0.2, "seed": 1},
        "model": {"backbone": "convnet4", "embed_dim": 16, "image_size": 24, **(model or {})},
        "sampler": {"p": 3, "k": 2},
        "miner": {"name": "semihard", "margin": 0.2},
        "loss": {"name": "triplet", "margin": 0.2},
        "optim": {"lr": 1e-2, "warmup_epochs": 0.5, **(optim or {})},
        "train": {"epochs": 2, "seed": 3, **train},
        "eval": {"every": 1, "ks": [1, 2]},
    }


def _components(raw, run_dir):
    config = validate_config(raw)
    torch.manual_seed(config.train.seed)
    frame = resolve_split(config.data, run_dir, write=False)
    return build_components(config, frame, run_dir=run_dir, dist=DistInfo())


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("key", "value"),
    [("head_epochs", -1), ("layer_decay", 0), ("layer_decay", 1.5), ("ema", 1.0), ("ema", 0)],
)
def test_out_of_range_recipe_options_are_refused_by_name(key, value):
    with pytest.raises(ConfigError, match=rf"optim.{key}: "):
        validate_config({"data": {"root": "x"}, "optim": {key: value}})


def test_the_recipes_are_off_by_default():
    optim = validate_config({"data": {"root": "x"}}).optim
    assert (optim.head_epochs, optim.layer_decay, optim.ema) == (0, None, None)


# ---- the schedule of each param group ----------------------------------------------------------


def test_a_delayed_group_is_zero_then_runs_its_own_warmup_and_cosine():
    head, backbone = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [head], "lr": 1.0}, {"params": [backbone], "lr": 0.1}])
    total, warmup, start, floor = 20, 2, 6, 0.1
    sched = warmup_cosine(
        opt, total_steps=total, warmup_steps=warmup, min_lr_ratio=floor, group_starts=[0, start]
    )

    def reference(step, offset, base):  # warm-up then cosine, over the steps from `offset` to `total`
        s = step - offset
        if s < 0:
            return 0.0
        if s < warmup:
            return base * (s + 1) / warmup
        progress = (s - warmup) / (total - offset - warmup)
        return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    for step in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(reference(step, 0, 1.0)), step
        assert opt.param_groups[1]["lr"] == pytest.approx(reference(step, start, 0.1)), step
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="group_starts has 1 entries but the optimizer has 2"):
        warmup_cosine(opt, total_steps=5, warmup_steps=0, group_starts=[0])


# ---- head-first phase ------------------------------------------------------------------------------


def test_head_phase_freezes_the_backbone_then_restores_its_trainable_set(image_folder, tmp_path):
    raw = _raw(
        image_folder,
        optim={"head_epochs": 1, "backbone_lr": 1e-3},
        model={"freeze": "last_n_blocks", "last_n_blocks": 2},
    )
    c = _components(raw, tmp_path)
    spe = c.steps_per_epoch
    assert c.head_first is not None and c.head_first.head_steps == spe
    backbone, head = _snapshot(c.embedder.backbone), _snapshot(c.embedder.head)
    seen = []

    lrs = []

    def during_step(step):  # after each optimizer step: the phase, and the lr of the next step
        blocks = c.embedder.backbone.blocks
        seen.append(step)
        lrs.append({g["name"]: g["lr"] for g in c.learner.optimizer.param_groups})
        if step <= spe:
            assert not any(p.requires_grad for p in c.embedder.backbone.parameters())
            assert all(p.grad is None for p in c.embedder.backbone.parameters())
            assert not c.embedder.backbone.training  # BatchNorm statistics frozen too
        else:
            trains = [any(p.requires_grad for p in b.parameters()) for b in blocks]
            assert trains == [False, False, True, True]
            assert blocks[3].bn.training and not blocks[0].bn.training  # frozen BatchNorms stay in eval

    state = TrainState()
    record = train_epoch(c, state, on_step=during_step)
    assert state.global_step == spe
    # the epoch's log carries the head's lr and the backbone's (both as the next step will use them:
    # the backbone's warm-up starts right at the switch), not whichever group comes first
    assert record["lr"] == pytest.approx(lrs[-1]["head"]) and record["lr"] > 0
    assert record["backbone_lr"] == pytest.approx(lrs[-1]["backbone"]) and record["backbone_lr"] > 0
    assert [s["backbone"] for s in lrs[: spe - 1]] == [0.0] * (spe - 1)
    after_probe = _snapshot(c.embedder.backbone)
    for key, value in backbone.items():  # weights and BatchNorm running statistics untouched
        torch.testing.assert_close(after_probe[key], value, rtol=0, atol=0, msg=key)
    assert any(not torch.equal(head[k], v) for k, v in c.embedder.head.state_dict().items())
    record = train_epoch(c, state, on_step=during_step)
    assert seen == list(range(1, 2 * spe + 1))
    assert record["backbone_lr"] == pytest.approx(lrs[-1]["backbone"]) and record["backbone_lr"] > 0
    trained = c.embedder.backbone.state_dict()
    for key, value in backbone.items():  # blocks 0 and 1 stay frozen (model.freeze), 2 and 3 trained
        if key.startswith(("blocks.0.", "blocks.1.")):
            torch.testing.assert_close(trained[key], value, rtol=0, atol=0, msg=key)
    assert not torch.equal(trained["blocks.3.conv.weight"], backbone["blocks.3.conv.weight"])

    def reference(step, start, total, base, warm=round(0.5 * spe)):
        s = step - start
        if s < 0:
            return 0.0
        if s < warm:
            return base * (s + 1) / warm
        progress = min(1.0, (s - warm) / (total - start - warm))
        return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))

    # the head's warm-up + cosine spans the run; the backbone's starts at the switch
    for step, lr in enumerate(lrs, start=1):
        assert lr["head"] == pytest.approx(reference(step, 0, 2 * spe, 1e-2)), step
        assert lr["backbone"] == pytest.approx(reference(step, spe, 2 * spe, 1e-3)), step
    assert lrs[spe - 2]["backbone"] == 0.0 and lrs[spe - 1]["backbone"] > 0.0


HEAD_STEPS, STEPS = 2, 4


def _head_phase_ddp_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        dist = DistInfo(rank=rank, world_size=world, device=torch.device("cpu"))
        config = validate_config(
            {
                "data": {"root": "unused"},
                "model": {"backbone": "convnet4", "embed_dim": 4, "image_size": 8},
                "miner": {"name": None},
                "loss": {"name": "contrastive"},
                "optim": {"lr": 0.05, "warmup_epochs": 0, "head_epochs": 0.5},
                "train": {"epochs": 1, "device": "cpu", "amp": "off"},
            }
        )
        torch.manual_seed(100 + rank)  # each rank starts from different weights: DDP agrees them
        embedder = create_embedder(
            config.model.model_copy(update={"backbone_kwargs": {"width": 4, "depth": 2}})
        )
        groups = embedder.param_groups(lr=0.05)
        learner = build_learner(
            config,
            embedder,
            groups,
            create_loss("contrastive"),
            None,
            dist=dist,
            steps_per_epoch=STEPS,
            head_steps=HEAD_STEPS,
        )
        phase, g = HeadFirst(embedder, HEAD_STEPS), torch.Generator().manual_seed(0)
        embedder.train()
        states = []
        for step in range(STEPS):
            phase.apply(step, learner)  # the switch rebuilds DDP over the new trainable set
            x, y = torch.randn(8, 3, 8, 8, generator=g), torch.arange(4).repeat(2)
            learner.forward_backward(x.chunk(world)[rank], y.chunk(world)[rank])
            learner.step()
            states.append({k: v.clone() for k, v in embedder.named_parameters()})
        torch.save(states, f"{out_dir}/rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


def test_head_phase_switch_under_ddp_keeps_every_rank_equal(tmp_path):
    mp.spawn(_head_phase_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for step in range(STEPS):
        for key, value in ranks[0][step].items():
            torch.testing.assert_close(ranks[1][step][key], value, rtol=0, atol=0, msg=f"step {step} {key}")
    states = ranks[0]
    backbone = [k for k in states[0] if k.startswith("backbone.")]
    assert all(torch.equal(states[HEAD_STEPS - 1][k], states[0][k]) for k in backbone)  # frozen
    assert any(not torch.equal(states[-1][k], states[HEAD_STEPS - 1][k]) for k in backbone)  # then trains
    assert not torch.equal(states[1]["head.0.weight"], states[0]["head.0.weight"])


def test_head_epochs_at_least_epochs_is_a_linear_probe(image_folder, tmp_path):
    c = _components(_raw(image_folder, optim={"head_epochs": 5}, epochs=1), tmp_path)
    before = _snapshot(c.embedder.backbone)
    train_epoch(c, TrainState())
    for key, value in c.embedder.backbone.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


def test_head_phase_with_nothing_to_train_is_refused(image_folder, tmp_path):
    raw = _raw(image_folder, optim={"head_epochs": 1}, model={"head": "identity", "embed_dim": None})
    with pytest.raises(
        ConfigError, match=r"optim.head_epochs=1.0 .*model.head='identity' and loss.name='triplet'"
    ):
        validate_config(raw)  # refused with the config, before a run folder is written
    # with a loss that has parameters of its own (ArcFace's proxies) the phase trains those
    arc = {**raw, "miner": {"name": None}, "loss": {"name": "arcface"}}
    assert _components(arc, tmp_path).head_first is not None
    # with model.freeze=frozen the whole run is a head phase: head_epochs is ignored
    for cache in (True, False):
        frozen = _raw(
            image_folder, optim={"head_epochs": 1}, model={"freeze": "frozen"}, cache_features=cache
        )
        assert _components(frozen, tmp_path).head_first is None


# ---- EMA ---------------------------------------------------------------------------------------------


def test_ema_follows_the_weights_after_each_step_and_is_what_gets_evaluated_and_kept(image_folder, tmp_path):
    decay = 0.8
    c = _components(_raw(image_folder, optim={"ema": decay}, epochs=1), tmp_path)
    weights = []
    train_epoch(c, TrainState(), on_step=lambda step: weights.append(_snapshot(c.embedder)))
    # reference: e_1 = w_1, then e_t = d_t e_(t-1) + (1 - d_t) w_t, d_t = min(decay, 1 - t ** (-2/3))
    ema = {k: v.clone() for k, v in weights[0].items()}
    for t, w in enumerate(weights[1:], start=2):
        d = min(decay, 1 - t ** (-2 / 3))
        for k, v in w.items():
            ema[k] = v.clone() if not v.is_floating_point() else d * ema[k] + (1 - d) * v
    got = c.ema.module.state_dict()
    for k, v in ema.items():
        if v.is_floating_point():
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert any(not torch.equal(got[k], weights[-1][k]) for k in got if got[k].is_floating_point())
    assert c.eval_embedder is c.ema.module
    console = Console(file=io.StringIO())
    state = TrainState()
    validate(c, state, epoch=1, console=console)  # the first evaluation is the best so far
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt").embedder.state_dict()
    for k, v in got.items():
        torch.testing.assert_close(best[k], v.cpu(), rtol=0, atol=0, msg=k)


# ---- the warning ------------------------------------------------------------------------------------


def test_warning_text_names_the_kept_checkpoint():
    untrained = worse_than_baseline_warning(
        metric="map@r",
        baseline=0.219,
        last=0.156,
        best_epoch=0,
        best_value=0.219,
        config_path="run/config.yaml",
    )
    assert untrained == (
        "warning: val map@r after training (0.156) is below the epoch-0 baseline (0.219): training made the "
        "model worse on val. Kept checkpoints/best.pt from epoch 0 (the untrained weights). "
        "Try `lookalike tune --config run/config.yaml --trials 20 --out DIR` to search learning rates, "
        "frozen blocks, head phase and loss on this split, or lower optim.backbone_lr / set "
        "optim.head_epochs / optim.layer_decay."
    )
    later = worse_than_baseline_warning(
        metric="map@r", baseline=0.2, last=0.15, best_epoch=2, best_value=0.25, config_path="c.yaml"
    )
    assert "Kept checkpoints/best.pt from epoch 2 (map@r 0.250), but the last evaluation fell below" in later
    assert (
        worse_than_baseline_warning(
            metric="map@r", baseline=0.2, last=0.2, best_epoch=0, best_value=0.2, config_path="c.yaml"
        )
        is None
    )


def _fit_output(raw, run):
    out = io.StringIO()
    result = fit(validate_config(raw), run, console=Console(file=out, width=400, color_system=None))
    return result, out.getvalue()


def test_a_run_that_gets_worse_warns_and_one_that_does_not_stays_quiet(image_folder, tmp_path):
    def raw(**optim):
        out = _raw(image_folder, optim={"warmup_epochs": 0, **optim}, epochs=1, steps_per_epoch=3)
        out["data"] |= {"val": 0.5, "test": 0.0}  # 5 val classes, no test split (faster)
        out["eval"] |= {"metric": "map@r", "target_fpir": None}
        return out

    # a learning rate of 50 without clipping wrecks the untrained features
    result, text = _fit_output(raw(lr=50.0, grad_clip=None), tmp_path / "worse")
    last, baseline = result.val["map@r"], result.baseline["map@r"]
    assert last < baseline and result.best_epoch == 0 and result.worse_than_baseline
    text = " ".join(text.split())  # rich wraps long lines
    assert (
        f"warning: val map@r after training ({last:.3f}) is below the epoch-0 baseline ({baseline:.3f}): "
        "training made the model worse on val. Kept checkpoints/best.pt from epoch 0 "
        "(the untrained weights). "
        f"Try `lookalike tune --config {tmp_path / 'worse' / 'config.yaml'} --trials 20 --out DIR`"
    ) in text
    result, text = _fit_output(raw(lr=1e-2), tmp_path / "fine")
    assert result.val["map@r"] >= result.baseline["map@r"]
    assert not result.worse_than_baseline and "warning: val" not in text
