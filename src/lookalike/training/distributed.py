"""Helpers for multi-process training under ``torchrun`` (DDP): gloo on CPU, nccl on GPU.

Embeddings and labels are gathered across ranks before mining, so tuples span the global batch.
Gradients flow back only into the local part; since DDP averages gradients over ranks, the
loss is multiplied by the world size to give every rank the gradient of the global-batch loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_gather_embeddings", "barrier", "cleanup", "init_distributed"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Start the process group when launched by ``torchrun`` (WORLD_SIZE > 1); otherwise one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def all_gather_embeddings(
    embeddings: torch.Tensor, labels: torch.Tensor, info: DistInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D), (B,) on each rank -> (world*B, D), (world*B,) in rank order, same on every rank.

    Only this rank's slice carries gradient (the others are detached copies).
    Every rank must pass the same batch size.
    """
    if not info.enabled:
        return embeddings, labels
    emb_parts = [torch.empty_like(embeddings) for _ in range(info.world_size)]
    lab_parts = [torch.empty_like(labels) for _ in range(info.world_size)]
    dist.all_gather(emb_parts, embeddings.detach().contiguous())
    dist.all_gather(lab_parts, labels.contiguous())
    emb_parts[info.rank] = embeddings
    return torch.cat(emb_parts), torch.cat(lab_parts)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
