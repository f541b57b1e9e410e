"""The match decision and the result records, on plain values (no model, no store)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from lookalike.gallery.matcher import (
    DECISIONS,
    Neighbour,
    SearchResult,
    decide,
    error_result,
    query_name,
    read_query_image,
)


def _neighbours(distances, labels=None):
    labels = labels or [f"c{i}" for i in range(len(distances))]
    return [
        Neighbour(rank=i + 1, id=f"id{i}", label=labels[i], distance=d, path=f"/g/{i}.png", metadata={})
        for i, d in enumerate(distances)
    ]


@pytest.mark.parametrize(
    ("nearest", "threshold", "decision"),
    [(0.3, 0.5, "match"), (0.5, 0.5, "match"), (0.5000001, 0.5, "no match"), (1.2, 0.5, "no match")],
)
def test_decision_is_nearest_distance_within_threshold(nearest, threshold, decision):
    result = decide("q.png", _neighbours([nearest, 1.9], ["cat", "dog"]), threshold)
    assert result.decision == decision
    assert result.distance == pytest.approx(nearest)
    assert result.threshold == threshold
    assert result.margin == pytest.approx(threshold - nearest)
    assert (result.margin >= 0) == (decision == "match")
    assert result.label == ("cat" if decision == "match" else None)
    assert [n.rank for n in result.neighbours] == [1, 2]


def test_decision_matches_a_loop_over_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(200):
        dists = np.sort(rng.uniform(0, 2, size=rng.integers(1, 6)))
        t = float(rng.uniform(0, 2))
        labels = [f"L{int(x)}" for x in rng.integers(0, 4, size=len(dists))]
        r = decide("q", _neighbours(dists.tolist(), labels), t)
        expected = "match" if dists[0] <= t else "no match"
        assert r.decision == expected
        assert r.label == (labels[0] if expected == "match" else None)
        assert r.margin == pytest.approx(t - dists[0])


def test_without_threshold_the_nearest_label_is_given_with_no_margin():
    r = decide("q", _neighbours([0.9, 1.0], ["a", "b"]), None)
    assert (r.decision, r.label, r.distance, r.threshold, r.margin) == ("no threshold", "a", 0.9, None, None)


def test_empty_gallery_is_no_match_or_no_threshold():
    r = decide("q", [], 0.4)
    assert (r.decision, r.label, r.distance, r.threshold, r.margin) == ("no match", None, None, 0.4, None)
    assert decide("q", [], None).decision == "no threshold"


def test_non_finite_threshold_is_refused():
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        decide("q", _neighbours([0.1]), float("nan"))


def test_to_dict_is_json_ready_with_numpy_values_and_nan():
    n = Neighbour(
        rank=1,
        id="x",
        label="cat",
        distance=np.float32(0.25),
        path=None,
        metadata={"count": np.int64(3), "score": float("nan"), "tags": np.array([1, 2])},
    )
    r = SearchResult("q.png", [n], "match", "cat", 0.25, 0.5, 0.25)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["decision"] == "match" and d["label"] == "cat" and d["margin"] == 0.25
    assert d["neighbours"] == [
        {
            "rank": 1,
            "id": "x",
            "label": "cat",
            "distance": 0.25,
            "path": None,
            "metadata": {"count": 3, "score": None, "tags": [1, 2]},
        }
    ]
    assert d["error"] is None


def test_error_result_names_the_problem():
    r = error_result("bad.txt", "cannot read it", 0.5)
    assert r.decision == "error" and r.decision in DECISIONS
    assert (r.neighbours, r.label, r.distance, r.margin, r.error) == ([], None, None, None, "cannot read it")
    assert r.to_dict()["error"] == "cannot read it"


def test_query_names(tmp_path):
    assert query_name(tmp_path / "a" / "cat.png", 0) == "cat.png"
    assert query_name("dog.jpg", 3) == "dog.jpg"
    assert query_name(b"\x89PNG", 2) == "query 2"
    path = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(path)
    with Image.open(path) as im:
        assert query_name(im, 5) == "x.png"
    assert query_name(Image.new("RGB", (4, 4)), 1) == "query 1"


def test_read_query_image_from_path_bytes_and_pil(tmp_path):
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L")
    path = tmp_path / "g.png"
    gray.save(path)
    from_path = read_query_image(path)
    buf = io.BytesIO()
    gray.save(buf, format="PNG")
    from_bytes = read_query_image(buf.getvalue())
    assert from_path.mode == from_bytes.mode == "RGB"
    assert np.array_equal(np.asarray(from_path), np.asarray(from_bytes))
    assert np.array_equal(np.asarray(from_path)[..., 0], np.asarray(gray))
    rgb = Image.new("RGB", (3, 3))
    assert read_query_image(rgb) is rgb


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"", "empty data"),
        (b"not an image at all", "not a readable image"),
        (12, "must be a PIL image, a file path or image bytes"),
    ],
)
def test_read_query_image_errors(source, message):
    with pytest.raises(ValueError, match=message):
        read_query_image(source)


def test_a_truncated_pil_image_fails_by_name(tmp_path):
    path = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    lazy = Image.open(path)  # opening reads only the header
    with pytest.raises(ValueError, match="not a readable image"):
        read_query_image(lazy)


def test_read_query_image_file_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_query_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="is not a file"):
        read_query_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"cannot read .*notes\.png.* as an image"):
        read_query_image(text)


def test_margin_sign_convention():
    inside = decide("q", _neighbours([0.2]), 0.5)
    outside = decide("q", _neighbours([0.8]), 0.5)
    assert inside.margin > 0 > outside.margin
    assert math.isclose(inside.margin + outside.margin, 0.0, abs_tol=1e-12)
