"""Helpers for multi-process runs under ``torchrun``: gloo on CPU, nccl on GPU.

Both training (the DDP fit loop) and inference (``lookalike embed`` sharding a manifest over
processes) use them, so they live at the bottom of the package and import nothing from it. Every
collective of a run goes through this module, and every tensor handed to one lives on the run's
device (``DistInfo.device``): an NCCL group accepts only CUDA tensors.

Embeddings and labels are gathered across ranks before mining, so tuples span the global batch and
every rank computes the same global-batch loss. Gradients then flow back only into the local slice
of the embeddings, so each rank's model gradient is its own samples' share of the global gradient;
DDP *averages* gradients over ranks, so :func:`scale_grad` multiplies that share by the world size
(the average becomes the sum). The loss's own parameters (ArcFace proxies, a learnable margin beta)
see the whole global batch on every rank: they start equal (:func:`broadcast_state`) and their
gradients are averaged (:func:`average_gradients`), unscaled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_gather_embeddings",
    "average_gradients",
    "barrier",
    "broadcast_state",
    "cleanup",
    "gather_to_main",
    "init_distributed",
    "on_main",
    "scale_grad",
    "shared_seed",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run; ``device`` is where its tensors (and collectives) live.

    ``backend`` names the process group ("nccl", "gloo") when there is one: under ``torchrun``, also
    with a single process (so one GPU runs the same code as many).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.backend is not None


def init_distributed(device: torch.device) -> DistInfo:
    """Start the process group when launched by ``torchrun`` (its RANK, WORLD_SIZE and MASTER_ADDR
    are set; a single process too); otherwise one plain process.

    On CUDA each process takes the GPU ``cuda:LOCAL_RANK`` and the group is NCCL; on CPU, gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not {"RANK", "WORLD_SIZE", "MASTER_ADDR"} <= os.environ.keys():
        return DistInfo(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` unchanged in the forward pass; its gradient multiplied by ``factor`` in the backward."""
    return _ScaleGrad.apply(x, factor)


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


def broadcast_state(module: torch.nn.Module, info: DistInfo) -> None:
    """Make ``module``'s parameters and buffers (already on ``info.device``) equal to rank 0's."""
    if not info.enabled:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of ``params`` over ranks, in place, with one all-reduce.

    A parameter without a gradient takes part as zeros (every rank must call with the same list).
    """
    params = list(params)
    if not info.enabled or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)  # gloo has no AVG: sum, then divide
    flat /= info.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def on_main(fn: Callable[[], T], info: DistInfo) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank.

    An exception on rank 0 is raised on every rank (the others would otherwise wait at the next
    collective forever). The result must be picklable and small (flags, metrics).
    """
    result: Any = None
    error: BaseException | None = None
    if info.is_main:
        try:
            result = fn()
        except Exception as err:  # shared with the other ranks, then raised here too
            error = err
    if info.enabled:
        box: list[Any] = [(result, None if error is None else (type(error), str(error)))]
        dist.broadcast_object_list(box, src=0, device=info.device)
        result, shared = box[0]
        if not info.is_main and shared is not None:
            error = _rebuild_error(*shared)
    if error is not None:
        raise error
    return result


def _rebuild_error(kind: type[BaseException], message: str) -> BaseException:
    """Rank 0's exception on another rank: the same type and message where the type allows it."""
    try:
        return kind(message)
    except Exception:
        return RuntimeError(f"rank 0 failed with {kind.__name__}: {message}")


def shared_seed(info: DistInfo) -> int:
    """A seed drawn from rank 0's torch generator, the same on every rank."""
    seed = torch.randint(0, 2**62, (1,), dtype=torch.int64).to(info.device)
    if info.enabled:
        dist.broadcast(seed, src=0)
    return int(seed.item())


def gather_to_main(obj: T, info: DistInfo) -> list[T] | None:
    """Every rank's ``obj`` (picklable, e.g. a CPU tensor) in rank order on rank 0, None on the
    others; ``[obj]`` in one plain process. (``lookalike embed`` gathers its shards with it.)"""
    if not info.enabled:
        return [obj]
    parts: list[Any] | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, parts, dst=0)
    return parts


def barrier(info: DistInfo) -> None:
    if not info.enabled:
        return
    if info.device.type == "cuda":
        dist.barrier(device_ids=[info.device.index])
    else:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
