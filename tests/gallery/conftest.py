"""Fixtures for the gallery store tests: every store test runs on the FAISS folder and on Milvus Lite."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _milvus_lite_missing() -> str | None:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        return f"Milvus Lite is not importable here ({e}); pip install 'lookalike[milvus]' to run these"
    return None


MILVUS_MISSING = _milvus_lite_missing()
BACKENDS = [
    "faiss",
    pytest.param(
        "milvus-lite", marks=pytest.mark.skipif(MILVUS_MISSING is not None, reason=MILVUS_MISSING or "")
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def location(backend: str, tmp_path) -> Callable[[str], str]:
    """``location(name)``: a fresh gallery location of the backend under test."""

    def make(name: str = "gallery") -> str:
        if backend == "faiss":
            return str(tmp_path / name)
        return f"milvus-lite:{tmp_path / 'milvus.db'}#{name}"

    return make


def unit_vectors(n: int, d: int, seed: int) -> np.ndarray:
    """(n, d) seeded random L2-normalised float32 vectors."""
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_vectors(n: int, d: int, seed: int, *, clusters: int = 50, spread: float = 0.35) -> np.ndarray:
    """Seeded vectors around ``clusters`` centres (more like real embeddings than uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, size=n)] + spread * rng.normal(size=(n, d))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def unit() -> Callable[..., np.ndarray]:
    return unit_vectors


@pytest.fixture
def clustered() -> Callable[..., np.ndarray]:
    return clustered_vectors
