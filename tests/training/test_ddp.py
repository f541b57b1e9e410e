"""DDP correctness that CPU-only CI can check: every collective on the run's device (NCCL takes only
CUDA tensors), the loss's own parameters equal to a single process on the same global batch,
no all-reduce on the inner steps of gradient accumulation, and every rank failing alike."""

import os
import re
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from lookalike import distributed as D
from lookalike.config import validate_config
from lookalike.distributed import DistInfo
from lookalike.losses import create_loss
from lookalike.training.components import build_learner
from torchrun_helpers import free_port

SRC = Path(__file__).resolve().parents[2] / "src" / "lookalike"


# ---- every collective gets tensors on the run's device -------------------------------------------


class _Checked(Exception):
    """Raised by the fake collectives once they have checked their arguments."""


def _fake_collectives(monkeypatch, device, seen):
    """Replace torch.distributed's collectives by checks that every tensor is on ``device``."""

    def check(name, *tensors, **kwargs):
        for t in tensors:
            for x in t if isinstance(t, list | tuple) else [t]:
                if isinstance(x, torch.Tensor):
                    assert x.device == device, f"{name} got a tensor on {x.device}; the run is on {device}"
        seen.append(name)
        raise _Checked

    monkeypatch.setattr(tdist, "broadcast", lambda t, src, **kw: check("broadcast", t))
    monkeypatch.setattr(tdist, "all_reduce", lambda t, **kw: check("all_reduce", t))
    monkeypatch.setattr(tdist, "all_gather", lambda out, t, **kw: check("all_gather", out, t))

    def broadcast_object_list(objs, src=0, group=None, device=None):
        assert device is not None and torch.device(device) == torch.device(device.type, device.index), device
        assert torch.device(device) == device_, f"broadcast_object_list on {device}; the run is on {device_}"
        check("broadcast_object_list")

    device_ = device
    monkeypatch.setattr(tdist, "broadcast_object_list", broadcast_object_list)

    def barrier(group=None, async_op=False, device_ids=None):
        if device.type == "cuda":
            assert device_ids == [device.index], f"barrier on {device_ids}; the run is on {device}"
        check("barrier")

    monkeypatch.setattr(tdist, "barrier", barrier)


def _helpers(info):
    module = torch.nn.Linear(3, 2).to(info.device)
    params = list(module.parameters())
    emb = torch.zeros(4, 2, device=info.device)
    labels = torch.zeros(4, dtype=torch.long, device=info.device)
    return {
        "broadcast_state": lambda: D.broadcast_state(module, info),
        "average_gradients": lambda: D.average_gradients(params, info),
        "all_gather_embeddings": lambda: D.all_gather_embeddings(emb, labels, info),
        "on_main": lambda: D.on_main(lambda: True, info),
        "shared_seed": lambda: D.shared_seed(info),
        "barrier": lambda: D.barrier(info),
    }


@pytest.mark.parametrize("helper", list(_helpers(DistInfo())))
def test_every_collective_helper_hands_the_run_device_to_torch_distributed(monkeypatch, helper):
    """The run's device is not the CPU here ("meta" stands in for a GPU on a CPU-only machine): a
    CPU tensor handed to a collective, which an NCCL group refuses, fails the check."""
    device = torch.device("meta")
    seen = []
    _fake_collectives(monkeypatch, device, seen)
    info = DistInfo(rank=0, world_size=2, device=device)
    with pytest.raises(_Checked):
        _helpers(info)[helper]()
    assert seen  # a collective was reached and checked


def test_only_the_distributed_module_talks_to_torch_distributed():
    """Every collective of a run goes through the helpers checked above (DDP itself aside)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "distributed.py":
            continue
        text = path.read_text()
        if re.search(r"torch\.distributed|from torch import distributed", text):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_init_distributed_puts_each_rank_on_its_gpu_with_nccl(monkeypatch):
    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(tdist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        tdist, "init_process_group", lambda backend, **kw: calls.setdefault("backend", backend)
    )
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("device", d))
    info = D.init_distributed(torch.device("cuda"))
    assert info.device == torch.device("cuda", 1) and calls == {"backend": "nccl", "device": info.device}
    assert (info.rank, info.world_size, info.local_rank, info.backend) == (1, 2, 1, "nccl")
    # torchrun with one process (one GPU) still runs the distributed code path
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    calls.clear()
    one = D.init_distributed(torch.device("cuda"))
    assert one.enabled and one.world_size == 1 and one.device == torch.device("cuda", 0)
    # no torchrun: one plain process, no group
    monkeypatch.delenv("MASTER_ADDR")
    assert D.init_distributed(torch.device("cpu")) == DistInfo(device=torch.device("cpu"))
    assert not DistInfo().enabled


# ---- the loss's parameters under DDP, and no_sync ------------------------------------------------

WORLD = 2
BATCHES = 4
CASES = {
    # ArcFace proxies; a margin loss with a learnable beta per class, with gradient accumulation
    "arcface": ({"name": "arcface", "margin": 0.3, "scale": 8.0}, 1),
    "margin": ({"name": "margin", "margin": 0.2, "num_classes": 4}, 2),
}


def _global_batches():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(4)
    return [
        (torch.randn(16, 6, generator=g), labels[torch.randperm(16, generator=g)]) for _ in range(BATCHES)
    ]


def _learner(case, dist, seed):
    loss_cfg, accumulate = CASES[case]
    config = validate_config(
        {
            "data": {"root": "unused"},
            "miner": {"name": None},
            "loss": loss_cfg,
            "optim": {"lr": 0.5, "warmup_epochs": 0, "accumulate": accumulate, "grad_clip": 0.5},
            "train": {"epochs": 1, "device": "cpu", "amp": "off"},
        }
    )
    torch.manual_seed(seed)  # each rank starts from different weights: DDP and the loop must agree them
    model = torch.nn.Linear(6, 4)
    kwargs = {k: v for k, v in loss_cfg.items() if k != "name"}
    if case == "arcface":
        kwargs |= {"num_classes": 4, "embedding_size": 4}
    criterion = create_loss(loss_cfg["name"], **kwargs)
    groups = [{"params": list(model.parameters())}]
    steps = BATCHES // accumulate
    return build_learner(config, model, groups, criterion, None, dist=dist, steps_per_epoch=steps)


def _train(learner, batches, rank=0, world=1):
    for b, (x, y) in enumerate(batches):
        sync = (b + 1) % learner.accumulate == 0
        learner.forward_backward(x.chunk(world)[rank], y.chunk(world)[rank], sync=sync)
        if sync:
            learner.step()
    model = learner.model.module if hasattr(learner.model, "module") else learner.model
    return {"model": model.state_dict(), "criterion": learner.criterion.state_dict()}


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        dist = DistInfo(rank=rank, world_size=world, device=torch.device("cpu"))
        out = {}
        for case in CASES:
            learner = _learner(case, dist, seed=100 + rank)
            calls = []

            def counting_hook(state, bucket, calls=calls):
                calls.append(1)
                return allreduce_hook(state, bucket)

            learner.model.register_comm_hook(None, counting_hook)
            out[case] = _train(learner, _global_batches(), rank, world) | {"allreduce_calls": len(calls)}
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


def test_loss_parameters_and_accumulation_under_ddp_match_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(WORLD, free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for case, (_, accumulate) in CASES.items():
        ref = _train(_learner(case, DistInfo(), seed=100), _global_batches())
        init = _learner(case, DistInfo(), seed=100)
        for rank in range(WORLD):
            got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)[case]
            for part in ("model", "criterion"):
                for key, value in ref[part].items():
                    torch.testing.assert_close(
                        got[part][key], value, rtol=1e-5, atol=1e-6, msg=f"{case} {key}"
                    )
            # DDP's all-reduce ran once per optimizer step, not once per batch (no_sync inside)
            assert got["allreduce_calls"] == BATCHES // accumulate, case
        moved = [k for k, v in ref["criterion"].items() if not torch.equal(v, init.criterion.state_dict()[k])]
        assert moved, f"{case}: the loss's parameters did not train, so the comparison proves nothing"


# ---- every rank fails alike; an unseeded random miner draws alike on every rank -----------------


def _fit_worker(rank, world, port, image_folder, run, out_dir):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    from lookalike.data import resolve_split
    from lookalike.training import build_components, fit
    from lookalike.training.rng import seed_everything

    raw = {
        "data": {"root": image_folder, "val": 0.2, "test": 0.2},
        "model": {"backbone": "convnet4", "embed_dim": 8, "image_size": 24},
        "sampler": {"p": 2, "k": 2},
        "miner": {"name": "distance_weighted", "seed": None},
        "loss": {"name": "margin"},
        "train": {"epochs": 1, "device": "cpu"},
    }
    result = {}
    try:
        fit(validate_config(raw), run)
        result["error"] = None
    except FileExistsError as err:
        result["error"] = str(err)

    dist = D.init_distributed(torch.device("cpu"))
    try:
        seed_everything(rank)  # as fit does: a different global random state on each rank
        frame = resolve_split(validate_config(raw).data, Path(out_dir), write=False)
        c = build_components(validate_config(raw), frame, run_dir=Path(out_dir), dist=dist)
        g = torch.Generator().manual_seed(5)
        emb = torch.nn.functional.normalize(torch.randn(32, 8, generator=g), dim=1)
        labels = torch.arange(8).repeat_interleave(4)
        result["tuples"] = [t.tolist() for t in c.learner.miner(emb, labels)]
    finally:
        D.cleanup(dist)
    torch.save(result, f"{out_dir}/rank{rank}.pt")


def test_every_rank_fails_alike_and_an_unseeded_miner_draws_alike(image_folder, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")  # a run is already there
    ctx = mp.spawn(
        _fit_worker,
        args=(WORLD, free_port(), str(image_folder), str(run), str(tmp_path)),
        nprocs=WORLD,
        join=False,
    )
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank hung: rank 0 found the run folder taken and the others waited for it")
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for result in results:
        assert result["error"] is not None and "already holds a run" in result["error"]
    assert results[0]["tuples"] == results[1]["tuples"]
    assert sum(len(t) for t in results[0]["tuples"]) > 0


class _TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} {b}")


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (FileExistsError("run folder taken"), FileExistsError, "run folder taken"),
        (_TwoArgError("x", "y"), RuntimeError, "rank 0 failed with _TwoArgError: x y"),
    ],
)
def test_on_main_raises_rank0s_error_on_every_rank(monkeypatch, error, kind, message):
    sent = []

    def broadcast_object_list(objs, src=0, group=None, device=None):
        if sent:  # rank 1 receives what rank 0 sent
            objs[0] = sent[0]
        else:
            sent.append(objs[0])

    monkeypatch.setattr(tdist, "broadcast_object_list", broadcast_object_list)

    def fail():
        raise error

    with pytest.raises(type(error)):
        D.on_main(fail, DistInfo(rank=0, world_size=2))
    ran_on_rank1 = []
    with pytest.raises(kind, match=message):
        D.on_main(lambda: ran_on_rank1.append(1), DistInfo(rank=1, world_size=2))
    assert ran_on_rank1 == []  # fn runs on rank 0 only
