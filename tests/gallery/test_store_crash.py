"""Crash safety of the FAISS folder store: a writer SIGKILLed anywhere leaves the old or the new gallery.

Each case runs a writer in a subprocess and kills it with SIGKILL (no cleanup, no finally blocks):
either exactly at a named point of the write (the store's ``_crash_point`` hook, replaced in the
child), or after a random delay while it adds batch after batch. Then the gallery must open with
exactly the old items or exactly the new ones, and take further writes. Subprocesses run in parallel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lookalike
from lookalike.gallery import GalleryHeader, create_gallery, open_gallery

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals (SIGKILL)")

D = 16
OLD = [f"old{i}" for i in range(20)]
NEW = [f"new{i}" for i in range(30)]
REMOVED = OLD[::2]

CHILD_AT_POINT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np, pandas as pd
    from lookalike.gallery import faiss_store, open_gallery

    folder, op, point = sys.argv[1:4]

    def crash(name):
        if name == point:
            os.kill(os.getpid(), signal.SIGKILL)

    faiss_store._crash_point = crash
    store = open_gallery(folder, writable=True)
    if op == "add":
        x = np.random.default_rng(1).normal(size=(30, 16)).astype("float32")
        store.add(x, pd.DataFrame({"id": [f"new{i}" for i in range(30)], "label": "n"}))
    else:
        store.remove([f"old{i}" for i in range(0, 20, 2)])
    store.close()
    sys.exit(3)  # the kill point was never reached
    """
)

CHILD_LOOP = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from lookalike.gallery import open_gallery

    store = open_gallery(sys.argv[1], writable=True)
    rng = np.random.default_rng(2)
    print("ready", flush=True)
    for b in range(10_000):
        x = rng.normal(size=(500, 16)).astype("float32")
        store.add(x, pd.DataFrame({"id": [f"b{b}_{i}" for i in range(500)], "label": str(b)}))
        print(b, flush=True)
    """
)

# (operation, kill point, which item set must survive)
POINTS = [
    ("add", "add:start", "old"),
    ("add", "write:index", "old"),
    ("add", "write:items", "old"),
    ("add", "write:vectors", "old"),
    ("add", "publish:before", "old"),
    ("add", "publish:after", "new"),
    ("add", "cleanup:after", "new"),
    ("remove", "write:items", "old"),
    ("remove", "publish:before", "old"),
    ("remove", "publish:after", "new"),
]


def _env() -> dict[str, str]:
    src = str(Path(lookalike.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}


def _old_gallery(folder: Path) -> None:
    x = np.random.default_rng(0).normal(size=(len(OLD), D)).astype(np.float32)
    with create_gallery(folder, GalleryHeader(embed_dim=D, index_factory="HNSW16")) as store:
        store.add(x, pd.DataFrame({"id": OLD, "label": "o"}))


def _check_opens_and_writes(folder: Path, expected: list[str]) -> None:
    with open_gallery(folder) as store:
        assert sorted(store.items()["id"]) == sorted(expected)
        _, ids = store.search(np.ones((1, D), dtype=np.float32), len(expected) + 5)
        assert sorted(ids[0]) == sorted(expected)  # the index and the item table agree
    with open_gallery(folder, writable=True) as store:  # the dead writer's lock is gone
        store.add(np.ones((1, D), dtype=np.float32), pd.DataFrame({"id": ["after"], "label": "a"}))
        assert len(store) == len(expected) + 1


def test_sigkill_at_every_point_of_add_and_remove(tmp_path):
    children = []
    for n, (op, point, _) in enumerate(POINTS):
        folder = tmp_path / f"g{n}"
        _old_gallery(folder)
        args = [sys.executable, "-c", CHILD_AT_POINT, str(folder), op, point]
        children.append((folder, subprocess.Popen(args, env=_env(), stderr=subprocess.PIPE, text=True)))
    for (folder, child), (op, point, survivor) in zip(children, POINTS, strict=True):
        _, err = child.communicate(timeout=120)
        assert child.returncode == -signal.SIGKILL, f"{op} at {point}: exit {child.returncode}\n{err}"
        new = (OLD + NEW) if op == "add" else [i for i in OLD if i not in REMOVED]
        _check_opens_and_writes(folder, OLD if survivor == "old" else new)


def test_sigkill_at_random_moments_of_repeated_adds(tmp_path):
    rng = np.random.default_rng(0)
    runs = []
    for n in range(3):
        folder = tmp_path / f"g{n}"
        with create_gallery(folder, GalleryHeader(embed_dim=D)):
            pass
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_LOOP, str(folder)], env=_env(), stdout=subprocess.PIPE, text=True
        )
        runs.append((folder, child))
    for _, child in runs:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    for _, child in runs:
        time.sleep(float(rng.uniform(0.05, 0.6)))  # somewhere inside some add: before/during/after the switch
        child.send_signal(signal.SIGKILL)
    for folder, child in runs:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        done = [int(line) for line in out.split()]  # batches whose add returned
        last = done[-1] if done else -1
        with open_gallery(folder) as store:
            ids = set(store.items()["id"])
        batches = {i.split("_")[0] for i in ids}
        committed = len(batches)
        # whole batches only, in order: everything acknowledged, plus at most the one in flight
        assert batches == {f"b{b}" for b in range(committed)}
        assert len(ids) == 500 * committed
        assert committed in (last + 1, last + 2)
        _check_opens_and_writes(folder, sorted(ids))
