import itertools
import math
import random

import numpy as np
import pytest
import torch

from lookalike.training.rng import get_rng_state, set_rng_state
from lookalike.training.schedule import warmup_cosine


def _lrs(total, warmup, min_ratio=0.1, base=1.0):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = warmup_cosine(opt, total_steps=total, warmup_steps=warmup, min_lr_ratio=min_ratio)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, opt.param_groups[0]["lr"]


def test_warmup_is_linear_then_cosine_reaches_min():
    lrs, final = _lrs(total=20, warmup=5, min_ratio=0.1)
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    # cosine after warm-up: independent formula
    for step in range(5, 20):
        progress = (step - 5) / 15
        assert lrs[step] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    assert final == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[5:]))


def test_no_warmup_starts_at_base_lr():
    lrs, _ = _lrs(total=4, warmup=0, min_ratio=0.0)
    assert lrs[0] == pytest.approx(1.0)


def test_rng_state_round_trip_covers_python_numpy_torch():
    state = get_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b


def test_rng_state_survives_weights_only_save(tmp_path):
    state = get_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)
    x = torch.rand(3)
    set_rng_state(loaded)
    assert torch.equal(torch.rand(3), x)
