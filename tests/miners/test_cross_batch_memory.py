"""CrossBatchMemory against pytorch-metric-learning's CrossBatchMemory, step by step."""

from __future__ import annotations

import copy

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers

from lookalike.losses import ContrastiveLoss, MultiSimilarityLoss, TripletLoss
from lookalike.miners import BatchHardMiner, CrossBatchMemory, SemiHardMiner


class Spy(torch.nn.Module):
    """Records what the wrapped loss is called with."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss
        self.calls = []

    def forward(self, embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None):
        self.calls.append((indices_tuple, None if ref_emb is None else ref_emb.clone(), ref_labels))
        return self.loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)


def batches(n_steps, b=8, d=6, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_steps):
        yield torch.randn(b, d, generator=g), torch.randint(0, classes, (b,), generator=g)


def pml_values(out):
    return torch.cat([torch.as_tensor(v["losses"]).reshape(-1) for v in out.values()])


CASES = {
    "contrastive_all_pairs": (
        lambda: (ContrastiveLoss(reduction="none"), None),
        lambda: (pml_losses.ContrastiveLoss(reducer=pml_reducers.DoNothingReducer()), None),
    ),
    "triplet_batch_hard": (
        lambda: (TripletLoss(margin=0.2, reduction="none"), BatchHardMiner()),
        lambda: (
            pml_losses.TripletMarginLoss(margin=0.2, reducer=pml_reducers.DoNothingReducer()),
            pml_miners.BatchHardMiner(),
        ),
    ),
    "triplet_semihard": (
        lambda: (TripletLoss(margin=0.5, reduction="none"), SemiHardMiner(margin=0.5)),
        lambda: (
            pml_losses.TripletMarginLoss(margin=0.5, reducer=pml_reducers.DoNothingReducer()),
            pml_miners.TripletMarginMiner(margin=0.5, type_of_triplets="semihard"),
        ),
    ),
    "multi_similarity_all_pairs": (
        lambda: (MultiSimilarityLoss(), None),
        lambda: (pml_losses.MultiSimilarityLoss(), None),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_pml_over_steps_with_wraparound(case):
    ours_fn, theirs_fn = CASES[case]
    loss, miner = ours_fn()
    spy = Spy(loss)
    ours = CrossBatchMemory(spy, embedding_size=6, memory_size=20, miner=miner)
    pml_loss, pml_miner = theirs_fn()
    theirs = pml_losses.CrossBatchMemory(pml_loss, embedding_size=6, memory_size=20, miner=pml_miner)
    for step, (emb, labels) in enumerate(batches(6)):  # 6 x 8 > 20: wraps twice
        got = ours(emb, labels)
        want = theirs(emb, labels)
        want = pml_values(want) if isinstance(want, dict) else want
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=f"step {step}")
        torch.testing.assert_close(ours.embedding_memory, theirs.embedding_memory)
        assert torch.equal(ours.label_memory, theirs.label_memory)
        assert (
            int(ours.queue_idx) == theirs.queue_idx and bool(ours.has_been_filled) == theirs.has_been_filled
        )
        if case == "contrastive_all_pairs":  # same tuples, not only same values
            from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

            ref_labels = spy.calls[-1][2]
            want_idx = lmu.remove_self_comparisons(
                lmu.get_all_pairs_indices(labels, ref_labels), theirs.curr_batch_idx, theirs.memory_size
            )
            for a, b in zip(spy.calls[-1][0], want_idx, strict=True):
                assert torch.equal(a, b)


def test_enqueue_mask_matches_pml():
    ours = CrossBatchMemory(ContrastiveLoss(reduction="none"), embedding_size=6, memory_size=16)
    theirs = pml_losses.CrossBatchMemory(
        pml_losses.ContrastiveLoss(reducer=pml_reducers.DoNothingReducer()), embedding_size=6, memory_size=16
    )
    mask = torch.tensor([True, False] * 4)
    for emb, labels in batches(4, seed=1):
        torch.testing.assert_close(
            ours(emb, labels, enqueue_mask=mask), pml_values(theirs(emb, labels, enqueue_mask=mask))
        )


def test_memory_is_detached_and_gradients_reach_the_batch():
    mem = CrossBatchMemory(TripletLoss(margin=1.0), embedding_size=6, memory_size=32)
    for emb, labels in batches(3, seed=2):
        emb.requires_grad_(True)
        mem(emb, labels).backward()
        assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert not mem.embedding_memory.requires_grad


def test_gradcheck_double():
    # The memory holds detached copies, so gradcheck only makes sense when the stored rows do not
    # depend on the input: queries and stored rows are separated with enqueue_mask.
    mem = CrossBatchMemory(
        ContrastiveLoss(pos_margin=0.1, neg_margin=1.5), embedding_size=4, memory_size=12
    ).double()  # a float64 queue: the queue's dtype is the one the loss is computed in
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        mem(torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g))
    queries = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    stored = torch.randn(3, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (9,), generator=g)
    mask = torch.tensor([False] * 6 + [True] * 3)

    def f(q):
        return copy.deepcopy(mem)(torch.cat([q, stored]), labels, enqueue_mask=mask)  # fresh queue each call

    assert torch.autograd.gradcheck(f, (queries,), eps=1e-6, atol=1e-5)


def test_warmup_uses_the_batch_only_and_keeps_memory_empty():
    loss = TripletLoss(margin=0.3)
    mem = CrossBatchMemory(
        loss, embedding_size=6, memory_size=32, miner=SemiHardMiner(margin=0.3), warmup_steps=2
    )
    data = list(batches(3, seed=4))
    for emb, labels in data[:2]:
        want = loss(emb, labels, SemiHardMiner(margin=0.3)(emb, labels))
        torch.testing.assert_close(mem(emb, labels), want)
        assert mem.num_stored() == 0
    mem(*data[2])
    assert mem.num_stored() == 8 and int(mem.step) == 3


def test_state_dict_resumes_exactly():
    def mk():
        return CrossBatchMemory(
            TripletLoss(margin=0.5), 6, 20, miner=SemiHardMiner(margin=0.5), warmup_steps=1
        )

    a = mk()
    data = list(batches(5, seed=5))
    for emb, labels in data[:3]:
        a(emb, labels)
    b = mk()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert set(a.state_dict()) >= {"embedding_memory", "label_memory", "queue_idx", "has_been_filled", "step"}
    for emb, labels in data[3:]:
        torch.testing.assert_close(a(emb, labels), b(emb, labels))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_errors_name_the_problem():
    mem = CrossBatchMemory(TripletLoss(), embedding_size=6, memory_size=4)
    emb, labels = next(batches(1))
    with pytest.raises(ValueError, match="memory_size must be at least the batch size"):
        mem(emb, labels)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        mem(torch.randn(3, 5), labels[:3])
    with pytest.raises(ValueError, match="miner="):
        mem(emb[:2], labels[:2], (labels[:1], labels[:1], labels[:1]))


def test_all_pairs_mask_path_equals_the_index_path_for_every_reduction():
    """The memory hands ContrastiveLoss masks; a loss without that fast path gets index tuples."""

    class IndexOnly(torch.nn.Module):  # same maths, no loss_from_pair_masks
        def __init__(self, reduction):
            super().__init__()
            self.inner = ContrastiveLoss(pos_margin=0.1, neg_margin=0.9, reduction=reduction)

        def forward(self, *args):
            return self.inner(*args)

    g = torch.Generator().manual_seed(3)
    for reduction in ("mean", "sum", "none", "mean_nonzero", "per_anchor"):
        loss = ContrastiveLoss(pos_margin=0.1, neg_margin=0.9, reduction=reduction)
        fast = CrossBatchMemory(loss, 5, 20).double()
        slow = CrossBatchMemory(IndexOnly(reduction), 5, 20).double()
        for _ in range(4):  # wraps around the memory
            emb = torch.randn(8, 5, generator=g, dtype=torch.float64)
            labels = torch.randint(0, 3, (8,), generator=g)
            a, b = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
            out_fast, out_slow = fast(a, labels), slow(b, labels)
            torch.testing.assert_close(out_fast, out_slow)
            out_fast.sum().backward()
            out_slow.sum().backward()
            torch.testing.assert_close(a.grad, b.grad)


def test_queue_keeps_its_dtype_whatever_the_callers_dtype():
    """A bf16 (autocast) or float64 call, or int32 labels, must not change the buffers."""
    mem = CrossBatchMemory(TripletLoss(margin=0.5), embedding_size=6, memory_size=20, miner=BatchHardMiner())
    reference = CrossBatchMemory(
        TripletLoss(margin=0.5), embedding_size=6, memory_size=20, miner=BatchHardMiner()
    )
    dtypes = [torch.bfloat16, torch.float64, torch.float32, torch.bfloat16]
    for dtype, (emb, labels) in zip(dtypes, batches(4, seed=6), strict=True):
        x = emb.to(dtype).requires_grad_(True)
        out = mem(x, labels.to(torch.int32))
        assert out.dtype == torch.float32 and torch.isfinite(out)
        out.backward()
        assert x.grad is not None and x.grad.dtype == dtype
        # the same as a float32 call on the float32-cast inputs, and the buffers stay as they were
        torch.testing.assert_close(out, reference(emb.to(dtype).float(), labels))
        assert mem.embedding_memory.dtype == torch.float32 and mem.label_memory.dtype == torch.long
        torch.testing.assert_close(mem.embedding_memory, reference.embedding_memory, atol=0, rtol=0)
        assert torch.equal(mem.label_memory, reference.label_memory)
    assert {k: v.dtype for k, v in mem.state_dict().items()} == {
        k: v.dtype for k, v in reference.state_dict().items()
    }


def test_embeddings_on_another_device_are_refused():
    mem = CrossBatchMemory(TripletLoss(), embedding_size=6, memory_size=20)
    emb, labels = next(batches(1))
    with pytest.raises(ValueError, match=r"on meta but the memory's queue is on cpu.*memory\.to\('meta'\)"):
        mem(emb.to("meta"), labels)
    assert mem.num_stored() == 0 and int(mem.step) == 0
