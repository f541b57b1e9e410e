"""A gallery whose header carries a calibration of an older lookalike (one threshold for a false
accept rate) still opens in a new process, on every backend, with that threshold for every size:
adding items keeps it (there is no per-size table to re-derive it from)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

import lookalike
from lookalike.gallery import GalleryHeader, create_gallery

D = 8

#: A header's ``calibration`` as galleries built from a FAR-calibrated checkpoint stored it.
FAR_ERA = {
    "threshold": {
        "value": 0.31, "far": 0.0073, "tar": 0.161, "frr": 0.839, "precision": 0.93, "f1": 0.27,
        "higher_is_closer": False, "method": "far", "target_far": 0.01,
    },
    "roc_auc": 0.822, "far": 0.0073, "tar": 0.161, "target_far": 0.01, "split": "val",
    "distance": "euclidean",
}  # fmt: skip

SECOND_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd
    from lookalike.calibration import read_calibration
    from lookalike.gallery import open_gallery
    from lookalike.gallery.calibration import gallery_objects, rederive_gallery_threshold

    location, x = sys.argv[1], np.array(json.loads(sys.argv[2]), dtype="float32")
    with open_gallery(location, writable=True) as store:
        record = read_calibration(store.header.calibration, threshold=store.header.threshold)
        new = [f"n{i}" for i in range(len(x))]
        store.add(x, pd.DataFrame({"id": new, "label": new}))
        rederived = rederive_gallery_threshold(store)
        seen = {"method": record.method, "target": record.target_fpir, "rederived": rederived,
                "threshold_for_100": record.threshold_for(100), "objects": gallery_objects(store)}
    with open_gallery(location) as store:
        seen["header_threshold"] = store.header.threshold
        seen["header_calibration"] = store.header.calibration
    print(json.dumps(seen))
    """
)


def test_a_far_era_header_keeps_its_threshold_in_a_new_process(location, unit):
    loc = location("g")
    items = pd.DataFrame({"id": [f"i{i}" for i in range(6)], "label": [f"c{i % 3}" for i in range(6)]})
    header = GalleryHeader(embed_dim=D, threshold=0.31, calibration=FAR_ERA)
    with create_gallery(loc, header, embeddings=unit(6, D, seed=0), items=items):
        pass  # closed here (Milvus Lite: one process at a time per file)
    src = str(Path(lookalike.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    child = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, loc, json.dumps(unit(4, D, seed=1).tolist())],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout.strip().splitlines()[-1])
    assert seen["method"] == "fixed" and seen["target"] == 0.01 and seen["threshold_for_100"] == 0.31
    assert seen["rederived"] is None and seen["objects"] == 7  # grown from 3 to 7 objects, threshold kept
    assert seen["header_threshold"] == 0.31 and seen["header_calibration"] == FAR_ERA
