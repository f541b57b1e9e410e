"""Every miner is one level below BaseMiner, which checks the inputs once and mines without a graph."""

import pytest
import torch

from lookalike.distances import EuclideanDistance
from lookalike.miners import BaseMiner, BatchHardMiner, SemiHardMiner, create_miner, list_miners, miner_class
from lookalike.tuples import TripletIndices


@pytest.mark.parametrize("name", list_miners())
def test_every_registered_miner_derives_from_base_miner_one_level_deep(name):
    assert miner_class(name).__bases__ == (BaseMiner,)


@pytest.mark.parametrize("name", list_miners())
def test_every_miner_checks_its_inputs_and_builds_no_graph(name):
    miner = create_miner(name)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\)"):
        miner(torch.randn(6, 8), torch.zeros(5, dtype=torch.long))
    emb = torch.randn(8, 4, requires_grad=True)
    out = miner(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert not any(t.requires_grad for t in out)


def test_mine_runs_without_autograd_and_repr_lists_the_fields():
    seen = {}

    class Probe(BaseMiner):
        def mine(self, embeddings, labels, ref_emb, ref_labels):
            seen["grad"] = torch.is_grad_enabled()
            seen["ref"] = ref_emb
            return TripletIndices(labels[:0], labels[:0], labels[:0])

    emb = torch.randn(4, 3, requires_grad=True)
    Probe()(emb, torch.tensor([0, 0, 1, 1]))
    assert seen == {"grad": False, "ref": None}
    assert repr(Probe()) == "Probe(distance=EuclideanDistance(squared=False, normalize_embeddings=True))"
    assert repr(BatchHardMiner(distance="cosine")) == "BatchHardMiner(distance=CosineSimilarity())"
    assert repr(SemiHardMiner(margin=0.1, distance=EuclideanDistance(squared=True))) == (
        "SemiHardMiner(margin=0.1, per_anchor='all', "
        "distance=EuclideanDistance(squared=True, normalize_embeddings=True))"
    )
