"""Every loss is one level below BaseLoss, which checks the inputs once before any loss's maths."""

import pytest
import torch

from lookalike.losses import BaseLoss, create_loss, list_losses, loss_class
from lookalike.tuples import TripletIndices


class _Recorder(BaseLoss):
    refuses_tuples = "is for this test"

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        self.calls = 0

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        self.calls += 1
        return embeddings.sum()


@pytest.mark.parametrize("name", list_losses())
def test_every_registered_loss_derives_from_base_loss_one_level_deep(name):
    assert loss_class(name).__bases__ == (BaseLoss,)


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_checks_its_inputs_before_computing(name):
    kw = {"num_classes": 4, "embedding_size": 8} if name == "arcface" else {}
    loss = create_loss(name, **kw)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        loss(torch.randn(6, 8), torch.zeros(5, dtype=torch.long))


def test_base_checks_run_before_compute_loss_and_refuse_tuples_where_asked():
    loss = _Recorder()
    emb, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        loss(emb, labels[:3])
    with pytest.raises(ValueError, match="_Recorder is for this test: it takes no indices_tuple"):
        loss(emb, labels, TripletIndices(labels[:1], labels[:1], labels[:1]))
    with pytest.raises(ValueError, match="and no ref_emb"):
        loss(emb, labels, None, emb, labels)
    assert loss.calls == 0
    assert torch.equal(loss(emb, labels), emb.sum()) and loss.calls == 1


def test_base_validates_reduction_and_gives_a_connected_zero():
    with pytest.raises(ValueError, match="'avg'; valid: mean, mean_nonzero, per_anchor, sum, none"):
        _Recorder(reduction="avg")
    emb = torch.randn(4, 3, requires_grad=True)
    zero = _Recorder(reduction="sum").zero_loss(emb)
    zero.backward()
    assert zero.item() == 0 and torch.equal(emb.grad, torch.zeros(4, 3))
    assert _Recorder(reduction="none").zero_loss(emb).shape == (0,)
