"""Two CPU processes (gloo) gather their local embeddings before mining: the loss equals the
single-process loss on the same global batch, and each rank's gradient is its slice of the
single-process gradient."""

import torch
import torch.multiprocessing as mp

from lookalike.distributed import DistInfo, all_gather_embeddings
from lookalike.losses import TripletLoss
from lookalike.miners import BatchHardMiner
from torchrun_helpers import free_port, run_torchrun


def _global_batch():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(16, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(4).repeat_interleave(4)
    perm = torch.randperm(16, generator=g)  # classes spread over both ranks
    return emb[perm], labels[perm]


def _loss(emb, labels):
    return TripletLoss(margin=0.2)(emb, labels, BatchHardMiner()(emb, labels))


def _worker(rank, world, port, out_dir):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        emb, labels = _global_batch()
        local = emb.chunk(world)[rank].clone().requires_grad_(True)
        local_labels = labels.chunk(world)[rank]
        all_emb, all_labels = all_gather_embeddings(
            local, local_labels, DistInfo(rank=rank, world_size=world)
        )
        loss = _loss(all_emb, all_labels)
        loss.backward()
        torch.save(
            {"loss": loss.detach(), "grad": local.grad, "labels": all_labels}, f"{out_dir}/rank{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


def test_gathered_loss_matches_single_process(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True)
    emb, labels = _global_batch()
    full = emb.clone().requires_grad_(True)
    ref = _loss(full, labels)
    ref.backward()
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(got["labels"], labels)
        torch.testing.assert_close(got["loss"], ref.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got["grad"], full.grad.chunk(world)[rank], rtol=1e-10, atol=1e-12)
    assert float(ref.detach()) > 0  # the batch has active triplets, so the comparison is not trivially 0 == 0


def test_single_process_gather_is_identity():
    emb, labels = _global_batch()
    out_emb, out_labels = all_gather_embeddings(emb, labels, DistInfo())
    assert out_emb is emb and out_labels is labels


def test_train_command_under_torchrun_with_two_processes(image_folder, tmp_path):
    """The same `lookalike train` under torchrun (gloo, 2 CPU processes): one run folder, written once."""
    import json

    import yaml

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(image_folder), "val": 0.2, "test": 0.2},
                "model": {"backbone": "convnet4", "embed_dim": 8, "image_size": 24},
                "sampler": {"p": 2, "k": 2},
                "train": {"epochs": 2, "device": "cpu"},
                "eval": {"ks": [1, 5]},
            }
        )
    )
    run = tmp_path / "run"
    proc = run_torchrun(["train", "--config", str(cfg), "--out", str(run)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "distributed: 2 process(es), gloo on cpu" in proc.stdout  # benchmarks/gpu_check.py looks for it
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["split"]) for r in records if r["split"] == "val"] == [
        (0, "val"),
        (1, "val"),
        (2, "val"),
    ]
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # rank 1 wrote nothing
    assert (run / "checkpoints" / "last.pt").exists()
