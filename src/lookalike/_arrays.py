"""The array-like inputs of the numeric API (top-k, metrics, distances) and their shape checks, in one
place so that every function accepts the same things and says the same thing when they are wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ArrayLike", "as_embeddings", "as_vector", "check_embeddings", "to_numpy"]

#: What the numeric API takes: a torch tensor (any device), a numpy array, or a (nested) sequence.
ArrayLike = torch.Tensor | np.ndarray | Sequence[Any]


def to_numpy(x: ArrayLike) -> np.ndarray:
    """A numpy view or copy of ``x`` (tensors are detached and moved to the CPU)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def check_embeddings(x: ArrayLike, what: str) -> int:
    """Check that ``x`` is (N, D) without copying it; return N."""
    shape = tuple(x.shape) if isinstance(x, torch.Tensor | np.ndarray) else np.shape(x)
    if len(shape) != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) array of embeddings, got shape {shape}")
    return shape[0]


def as_embeddings(x: ArrayLike, what: str) -> torch.Tensor:
    """``x`` as a detached (N, D) floating-point tensor, on the device it was on (numpy and sequences:
    the CPU, sharing memory where possible; integers become float32)."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray | Sequence) and not isinstance(x, str | bytes):
        t = torch.from_numpy(np.asarray(x))
    else:
        raise TypeError(f"{what} must be a torch.Tensor, numpy array or sequence, got {type(x).__name__}")
    check_embeddings(t, what)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t.detach()


def as_vector(x: ArrayLike, what: str, *, n: int | None = None, like: str | None = None) -> np.ndarray:
    """``x`` as a 1-D numpy array, of length ``n`` when given (``like`` names what it must match)."""
    arr = to_numpy(x)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        need = f"({n},)" if n is not None else "(N,)"
        match = f" to match {like}" if like else ""
        raise ValueError(f"{what} must have shape {need}{match}, got {arr.shape}")
    return arr
