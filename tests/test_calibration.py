"""Threshold calibration: the comparisons against a brute-force loop, FAR <= target, the seeded open-set
hold-out, storing into a checkpoint, and the errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lookalike.calibration import (
    CalibrationError,
    calibrate_embeddings,
    calibrate_split,
    held_out_classes,
    store_calibration,
)
from lookalike.models import create_embedder_from, load_checkpoint, save_checkpoint
from lookalike.models.inference import load_inference_model


def _clusters(n_classes=12, per_class=6, dim=8, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    x = np.repeat(centres, per_class, axis=0) + spread * rng.normal(size=(n_classes * per_class, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat([f"c{i:02d}" for i in range(n_classes)], per_class)
    return x.astype(np.float32), labels


def _brute_force(x, labels, held):
    """Leave-one-out: each item's nearest other item among the kept classes; genuine if same label."""
    values, genuine = [], []
    for i in range(len(x)):
        best, best_j = np.inf, -1
        for j in range(len(x)):
            if j == i or labels[j] in held:
                continue
            d = float(np.linalg.norm(x[i] - x[j]))
            if d < best:
                best, best_j = d, j
        values.append(best)
        genuine.append(labels[best_j] == labels[i])
    return np.array(values), np.array(genuine)


@pytest.mark.parametrize("target_far", [0.05, 0.2])
def test_matches_brute_force_and_keeps_far_below_target(target_far):
    x, labels = _clusters()
    ids = np.arange(len(x))
    cal = calibrate_embeddings(
        x,
        labels,
        x,
        labels,
        target_far=target_far,
        open_set_share=0.5,
        seed=3,
        query_ids=ids,
        gallery_ids=ids,
    )
    held = held_out_classes(labels, 0.5, 3)
    values, genuine = _brute_force(x, labels, held)
    assert (cal.n_genuine, cal.n_impostor) == (int(genuine.sum()), int((~genuine).sum()))
    assert cal.n_open_set == int(np.isin(labels, held).sum()) == 6 * 6
    accepted = values <= cal.threshold.value + 1e-5  # float32 search vs float64 loop
    far = (accepted & ~genuine).sum() / (~genuine).sum()
    tar = (accepted & genuine).sum() / genuine.sum()
    assert far <= target_far
    assert far == pytest.approx(cal.far) and tar == pytest.approx(cal.tar) == pytest.approx(cal.tar_at_far)
    # the loosest such threshold: accepting the next impostor would break the target
    next_impostor = np.sort(values[~genuine & ~accepted])[0]
    assert ((values <= next_impostor) & ~genuine).sum() / (~genuine).sum() > target_far
    assert 0.5 < cal.roc_auc <= 1.0 and 0.0 <= cal.eer < 0.5
    assert cal.n_classes == 12 and cal.n_held_out_classes == 6


def test_held_out_classes_are_seeded_and_order_independent():
    classes = [f"k{i}" for i in range(20)]
    a = held_out_classes(classes, 0.5, seed=0)
    assert a == held_out_classes(list(reversed(classes)) * 2, 0.5, seed=0)
    assert len(a) == 10 and set(a) <= set(classes)
    assert a != held_out_classes(classes, 0.5, seed=1)
    assert held_out_classes(classes, 0.0, seed=0) == []
    assert len(held_out_classes(["a", "b"], 0.9, seed=0)) == 1  # at least one class stays known
    assert len(held_out_classes(["a", "b", "c"], 0.01, seed=0)) == 1  # at least one held out when > 0
    with pytest.raises(CalibrationError, match=r"open_set_share must be in \[0, 1\)"):
        held_out_classes(classes, 1.0, seed=0)


def test_same_seed_same_calibration_different_seed_other_classes():
    x, labels = _clusters(n_classes=16)
    ids = np.arange(len(x))
    kw = {"query_ids": ids, "gallery_ids": ids, "target_far": 0.1}
    a = calibrate_embeddings(x, labels, x, labels, seed=5, **kw)
    assert a == calibrate_embeddings(x, labels, x, labels, seed=5, **kw)
    b = calibrate_embeddings(x, labels, x, labels, seed=6, **kw)
    assert held_out_classes(labels, 0.5, 5) != held_out_classes(labels, 0.5, 6)
    assert (a.n_genuine, a.n_impostor, a.threshold) != (b.n_genuine, b.n_impostor, b.threshold)


def test_cosine_is_one_minus_similarity_like_the_gallery():
    x, labels = _clusters()
    ids = np.arange(len(x))
    kw = {"query_ids": ids, "gallery_ids": ids, "target_far": 0.1}
    cos = calibrate_embeddings(x, labels, x, labels, distance="cosine", **kw)
    euc = calibrate_embeddings(x, labels, x, labels, distance="euclidean", **kw)
    assert not cos.threshold.higher_is_closer and cos.distance == "cosine"
    # unit vectors: |a - b|^2 = 2 (1 - cos), the same ranking and the same comparisons
    assert cos.threshold.value == pytest.approx(euc.threshold.value**2 / 2, abs=1e-5)
    assert (cos.n_genuine, cos.far, cos.tar) == (euc.n_genuine, euc.far, euc.tar)
    with pytest.raises(CalibrationError, match=r"distance must be one of \['euclidean', 'cosine'\]"):
        calibrate_embeddings(x, labels, x, labels, distance="dot", **kw)


def test_errors_name_the_problem():
    x, labels = _clusters(n_classes=3)
    with pytest.raises(CalibrationError, match=r"at least 2 classes.*found 1"):
        calibrate_embeddings(x[:6], labels[:6], x[:6], labels[:6])
    with pytest.raises(CalibrationError, match=r"target_far must be a rate in \(0, 1\)"):
        calibrate_embeddings(x, labels, x, labels, target_far=1.5)
    far_apart = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]]  # two tight classes, no open set
    two = np.array(["a", "a", "b", "b"])
    with pytest.raises(CalibrationError, match="no impostor comparison"):
        calibrate_embeddings(
            far_apart,
            two,
            far_apart,
            two,
            open_set_share=0.0,
            query_ids=np.arange(4),
            gallery_ids=np.arange(4),
        )


def _split_frame(tmp_path, n_classes=6, per_class=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_classes):
        for i in range(per_class):
            path = tmp_path / f"c{c}_{i}.png"
            base = np.full((16, 16, 3), c * 40, dtype=np.uint8)
            Image.fromarray(base + rng.integers(0, 30, base.shape, dtype=np.uint8)).save(path)
            rows.append(
                {
                    "path": str(path),
                    "label": f"c{c}",
                    "split": "val",
                    "role": "query" if i == 0 else "gallery",
                }
            )
    return pd.DataFrame(rows)


def _model(tmp_path):
    torch.manual_seed(0)
    emb = create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})
    return save_checkpoint(
        tmp_path / "m.pt", emb, config={"eval": {"distance": "euclidean"}}, extra={"epoch": 3}
    )


def test_store_round_trips_through_load_inference_model(tmp_path):
    frame = _split_frame(tmp_path)
    path = _model(tmp_path)
    model = load_inference_model(checkpoint=path)
    cal = calibrate_split(model, frame, split="val", target_far=0.1)
    assert cal.split == "val" and cal.n_queries == len(frame)
    out = store_calibration(path, cal, out=tmp_path / "cal.pt")
    again = load_inference_model(checkpoint=out)
    assert again.threshold == cal.threshold
    assert again.calibration == cal.to_dict()
    assert again.fingerprint == model.fingerprint
    before, after = load_checkpoint(path), load_checkpoint(out)
    assert after.extra["epoch"] == 3 and after.config == before.config
    for k, v in before.embedder.state_dict().items():
        assert torch.equal(v, after.embedder.state_dict()[k])
    assert load_inference_model(checkpoint=path).threshold is None  # the original is untouched


def test_calibrate_split_errors(tmp_path):
    frame = _split_frame(tmp_path)
    model = load_inference_model(checkpoint=_model(tmp_path))
    with pytest.raises(CalibrationError, match=r"no rows of split 'val'; splits present: \['test'\]"):
        calibrate_split(model, frame.assign(split="test"), split="val")
    with pytest.raises(CalibrationError, match="no 'split' column"):
        calibrate_split(model, frame.drop(columns=["split"]))
    with pytest.raises(CalibrationError, match="at least 2 classes"):
        calibrate_split(model, frame[frame["label"] == "c0"])
    with pytest.raises(CalibrationError, match="queries must be 'all' or 'roles'"):
        calibrate_split(model, frame, queries="some")


def test_calibrate_checkpoint_stores_in_place_and_summarises(tmp_path):
    from lookalike.calibration import calibrate_checkpoint, summary

    frame = _split_frame(tmp_path)
    path = _model(tmp_path)
    cal = calibrate_checkpoint(path, frame, target_far=0.2, seed=2)
    model = load_inference_model(checkpoint=path)
    assert model.threshold == cal.threshold and model.calibration["seed"] == 2
    assert load_checkpoint(path).extra["epoch"] == 3  # the rest of extra is kept
    record = summary(cal)
    assert record["threshold"] == cal.threshold.value and record["far"] <= 0.2
    assert all(isinstance(v, int | float | str) for v in record.values())
