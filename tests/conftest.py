"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def _swap_faiss_torch_patch() -> None:
    """Swap faiss' methods with the ones ``faiss.contrib.torch_utils`` set aside (``<name>_numpy``).

    pytorch-metric-learning (our test-only reference) imports ``faiss.contrib.torch_utils``, which
    replaces faiss' methods in the whole process with versions taking torch tensors. Milvus Lite
    runs in this process and calls faiss' ``search(..., params=...)``, which the replacement does
    not accept. Called twice, the swap restores the patched state that PML relies on.
    """
    import faiss

    for cls in vars(faiss).values():
        if not isinstance(cls, type):
            continue
        for name, original in list(vars(cls).items()):
            if name.endswith("_numpy") and name[: -len("_numpy")] in vars(cls):
                method = name[: -len("_numpy")]
                replacement = vars(cls)[method]
                setattr(cls, method, original)
                setattr(cls, name, replacement)


@pytest.fixture(autouse=True)
def _faiss_as_milvus_lite_expects_it(request: pytest.FixtureRequest) -> Iterator[None]:
    """Milvus Lite tests see faiss unpatched by PML's torch_utils, whichever tests ran before."""
    import sys

    patched = "faiss.contrib.torch_utils" in sys.modules and "milvus" in request.node.nodeid.lower()
    if patched:
        _swap_faiss_torch_patch()
    try:
        yield
    finally:
        if patched:
            _swap_faiss_torch_patch()
