"""Cross-batch memory (Wang, Zhang, Huang and Scott, 2020): mine against past batches too."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lookalike.tuples import (
    IndicesTuple,
    PairIndices,
    TripletIndices,
    all_pairs,
    as_indices_tuple,
    label_masks,
)

__all__ = ["CrossBatchMemory"]


def drop_self_comparisons(indices: IndicesTuple, slots: torch.Tensor) -> IndicesTuple:
    """Remove the positive tuples that pair a query with its own copy in the memory.

    ``slots`` (N,) is where each query was written; positives index the memory.
    """
    if isinstance(indices, TripletIndices):
        keep = indices.positive != slots[indices.anchor]
        return TripletIndices(*(t[keep] for t in indices))
    keep = indices.p != slots[indices.a1]
    return PairIndices(indices.a1[keep], indices.p[keep], indices.a2, indices.n)


class CrossBatchMemory(nn.Module):
    """Wraps a loss so that the batch is compared with a queue of past (detached) embeddings.

    Called like a loss: ``memory(embeddings, labels)``. The batch is the query side; the reference
    side is the memory as it is once the batch has been written into it (oldest entries
    overwritten), which is what pytorch-metric-learning's ``CrossBatchMemory`` and the XBM
    reference code use; a query is never paired with its own copy. Tuples come from ``miner``
    (called as ``miner(embeddings, labels, memory_emb, memory_labels)``) or, without one, every
    pair. The memory itself is updated only after the loss has been computed.

    Args:
        loss: any loss taking ``(embeddings, labels, indices_tuple, ref_emb, ref_labels)``.
        embedding_size: D.
        memory_size: how many past embeddings are kept (at least the batch size).
        miner: optional miner; None means all pairs (as PML).
        warmup_steps: the first ``warmup_steps`` calls compute the loss on the batch alone
            (mined within the batch) and leave the memory empty, as XBM does while early
            embeddings still drift fast.

    The queue, its labels, the write position, whether it has wrapped and the step count are
    buffers, so ``state_dict()`` / ``load_state_dict()`` resume exactly. The queue keeps its own
    dtype (float32; ``.to(dtype)`` changes it) and the labels stay int64: embeddings of another
    dtype (bf16 under autocast, float64) are cast to the queue's dtype, so the loss is computed
    in it and gradients flow back in the caller's dtype. Embeddings must be on the queue's
    device (move the memory with ``.to(device)``).
    """

    def __init__(
        self,
        loss: nn.Module,
        embedding_size: int,
        memory_size: int = 1024,
        miner: Callable[..., tuple[torch.Tensor, ...]] | None = None,
        *,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if embedding_size < 1 or memory_size < 1:
            raise ValueError(
                f"embedding_size and memory_size must be positive, got {embedding_size!r} and {memory_size!r}"
            )
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        self.loss = loss
        self.miner = miner
        self.embedding_size = int(embedding_size)
        self.memory_size = int(memory_size)
        self.warmup_steps = int(warmup_steps)
        self.register_buffer("embedding_memory", torch.zeros(self.memory_size, self.embedding_size))
        self.register_buffer("label_memory", torch.zeros(self.memory_size, dtype=torch.long))
        self.register_buffer("queue_idx", torch.zeros((), dtype=torch.long))
        self.register_buffer("has_been_filled", torch.zeros((), dtype=torch.bool))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def reset_queue(self) -> None:
        """Empty the memory (the step count is kept)."""
        self.embedding_memory.zero_()
        self.label_memory.zero_()
        self.queue_idx.zero_()
        self.has_been_filled.fill_(False)

    def num_stored(self) -> int:
        """How many embeddings the memory holds."""
        return self.memory_size if bool(self.has_been_filled) else int(self.queue_idx)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
        enqueue_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """embeddings (N, D), labels (N,) -> the loss.

        ``enqueue_mask`` (N,) bool (as PML): the rows where it is True are only written to the
        memory, the others are only queries (e.g. two views: one queries, the other is stored).
        """
        if indices_tuple is not None:
            raise ValueError(
                "CrossBatchMemory mines against its memory itself: pass the miner as "
                "CrossBatchMemory(..., miner=...) instead of an indices_tuple"
            )
        embeddings, labels = self._cast_inputs(embeddings, labels)
        queries, query_labels, to_store, store_labels = self._split_batch(embeddings, labels, enqueue_mask)
        if int(self.step) < self.warmup_steps:
            indices = None if self.miner is None else self.miner(queries, query_labels)
            loss = self.loss(queries, query_labels, indices)
            self.step += 1
            return loss

        # The memory with this batch written in, without touching the buffers yet.
        start = int(self.queue_idx)
        slots = (start + torch.arange(len(to_store), device=labels.device)) % self.memory_size
        to_store = to_store.detach()
        memory = self.embedding_memory.index_copy(0, slots, to_store)
        memory_labels = self.label_memory.index_copy(0, slots, store_labels)
        end = start + len(to_store)
        filled = bool(self.has_been_filled) or end >= self.memory_size
        stored = self.memory_size if filled else end
        # a query meets its own copy in the memory unless queries and stored rows are apart
        own_slots = slots if enqueue_mask is None else None
        loss = self._loss_against_memory(
            queries, query_labels, memory[:stored], memory_labels[:stored], own_slots
        )

        with torch.no_grad():  # in place: the buffers keep their dtype, device and identity
            self.embedding_memory.index_copy_(0, slots, to_store)
            self.label_memory.index_copy_(0, slots, store_labels)
            self.queue_idx.fill_(end % self.memory_size)
            self.has_been_filled.fill_(filled)
            self.step += 1
        return loss

    def _cast_inputs(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked (N, D) embeddings and (N,) labels in the queue's dtypes, on its device."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"embeddings must be (N, {self.embedding_size}), got shape {tuple(embeddings.shape)}"
            )
        if labels.shape != (embeddings.shape[0],):
            raise ValueError(f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")
        device = self.embedding_memory.device
        if embeddings.device != device:
            raise ValueError(
                f"embeddings are on {embeddings.device} but the memory's queue is on {device}: move the "
                f"memory first (memory.to({str(embeddings.device)!r}))"
            )
        # The queue keeps its own dtype (float32 unless the module was cast): the inputs are cast to
        # it, so a bf16 or float64 call neither changes the buffers nor mixes dtypes in the loss.
        embeddings = embeddings.to(self.embedding_memory.dtype)
        return embeddings, labels.to(device=device, dtype=self.label_memory.dtype)

    def _split_batch(
        self, embeddings: torch.Tensor, labels: torch.Tensor, enqueue_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(queries, their labels, rows to store, their labels): every row is both without a mask."""
        if enqueue_mask is not None:
            enqueue_mask = enqueue_mask.to(device=embeddings.device, dtype=torch.bool)
            if enqueue_mask.shape != labels.shape:
                raise ValueError(
                    f"enqueue_mask must have shape {tuple(labels.shape)}, got {tuple(enqueue_mask.shape)}"
                )
            queries, query_labels = embeddings[~enqueue_mask], labels[~enqueue_mask]
            to_store, store_labels = embeddings[enqueue_mask], labels[enqueue_mask]
        else:
            queries, query_labels, to_store, store_labels = embeddings, labels, embeddings, labels
        if len(to_store) > self.memory_size:
            raise ValueError(
                f"cannot store {len(to_store)} embeddings in a memory of size {self.memory_size}; "
                "memory_size must be at least the batch size"
            )
        return queries, query_labels, to_store, store_labels

    def _loss_against_memory(
        self,
        queries: torch.Tensor,
        query_labels: torch.Tensor,
        ref_emb: torch.Tensor,
        ref_labels: torch.Tensor,
        own_slots: torch.Tensor | None,
    ) -> torch.Tensor:
        """The loss of the queries against the memory, mined by the miner or over all pairs; a
        query is never paired with its own copy at ``own_slots`` (None: no query is stored)."""
        if self.miner is None and hasattr(self.loss, "loss_from_pair_masks"):
            # all pairs as masks: no index tensors (half a million of them at B = 512)
            same, diff = label_masks(query_labels, ref_labels)
            if own_slots is not None:
                same[torch.arange(len(own_slots), device=same.device), own_slots] = False
            return self.loss.loss_from_pair_masks(queries, ref_emb, same, diff)
        if self.miner is not None:
            indices = as_indices_tuple(self.miner(queries, query_labels, ref_emb, ref_labels))
        else:
            indices = all_pairs(query_labels, ref_labels)
        if own_slots is not None:
            indices = drop_self_comparisons(indices, own_slots)
        return self.loss(queries, query_labels, indices, ref_emb, ref_labels)

    def extra_repr(self) -> str:
        return (
            f"embedding_size={self.embedding_size}, memory_size={self.memory_size}, "
            f"warmup_steps={self.warmup_steps}, miner={self.miner!r}"
        )
