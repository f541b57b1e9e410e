"""The HTTP API over a real small gallery (omniglot-small, tiny random-init model), through TestClient."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_helpers import API_KEY, THRESHOLD, png_bytes

from lookalike.gallery import open_gallery
from lookalike.gallery.matcher import Matcher
from lookalike.service import ServiceSettings, create_app


def _client(gallery_dir: Path, **settings) -> TestClient:
    return TestClient(create_app(ServiceSettings(gallery=str(gallery_dir), **settings)))


@pytest.fixture
def client(gallery_dir):
    with _client(gallery_dir, api_key=API_KEY) as c:
        yield c


def _upload(path: Path, field: str = "image"):
    return {field: (path.name, path.read_bytes(), "image/png")}


def _reference(gallery_dir: Path, paths: list[Path], k: int):
    """The same searches through the Matcher directly: the reference the API must agree with."""
    with Matcher.open(gallery_dir) as matcher:
        return matcher.search(paths, k=k)


def _gallery_ids(gallery_dir: Path) -> set[str]:
    with open_gallery(gallery_dir) as store:
        return set(store.items()["id"])


def test_health_reports_the_model_the_gallery_and_the_threshold(client, gallery_case):
    from lookalike.models.inference import load_inference_model

    body = client.get("/health").json()
    assert body["model_fingerprint"] == load_inference_model(checkpoint=gallery_case.checkpoint).fingerprint
    assert body["gallery_size"] == len(gallery_case.gallery_images) == 18
    assert body["threshold"] == pytest.approx(THRESHOLD)
    assert body["writes_enabled"] is True and body["distance"] == "euclidean" and body["embed_dim"] == 16


def test_search_a_gallery_image_matches_itself_and_agrees_with_the_matcher(client, gallery_case, gallery_dir):
    item_id, label, path = gallery_case.gallery_images[4]
    response = client.post("/search", files=_upload(path), data={"k": "5"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == path.name and body["k"] == 5
    assert body["decision"] == "match" and body["label"] == label
    assert body["threshold"] == pytest.approx(THRESHOLD) and body["margin"] == pytest.approx(
        THRESHOLD - body["distance"]
    )
    first = body["neighbours"][0]
    assert first["id"] == item_id and first["distance"] == pytest.approx(0.0, abs=1e-3)
    assert first["thumbnail"] == f"/items/{item_id}/thumbnail"
    assert first["metadata"] == {"source": "omniglot"} and "path" not in first  # no server paths leak
    (ref,) = _reference(gallery_dir, [path], k=5)
    assert [n["id"] for n in body["neighbours"]] == [n.id for n in ref.neighbours]
    assert [n["rank"] for n in body["neighbours"]] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(
        [n["distance"] for n in body["neighbours"]], [n.distance for n in ref.neighbours], atol=1e-5
    )


def test_search_an_unknown_image_is_no_match(client, gallery_case, gallery_dir):
    _, path = gallery_case.other_images[2]
    body = client.post("/search", files=_upload(path)).json()
    assert body["decision"] == "no match" and body["label"] is None
    assert body["k"] == 5 and len(body["neighbours"]) == 5  # the server's default k
    assert body["distance"] > THRESHOLD and body["margin"] < 0
    (ref,) = _reference(gallery_dir, [path], k=5)
    assert [n["id"] for n in body["neighbours"]] == [n.id for n in ref.neighbours]


def test_k_is_checked_and_clamped_to_the_gallery(client, gallery_case):
    _, path = gallery_case.other_images[0]
    assert len(client.post("/search", files=_upload(path), data={"k": "100"}).json()["neighbours"]) == 18
    for bad in ("0", "101"):
        response = client.post("/search", files=_upload(path), data={"k": bad})
        assert response.status_code == 422 and "expected 1 to 100" in response.json()["detail"]


def test_batch_search_answers_each_image_and_reports_a_bad_one(client, gallery_case):
    _, _, inside = gallery_case.gallery_images[0]
    _, outside = gallery_case.other_images[1]
    files = [
        ("images", (inside.name, inside.read_bytes(), "image/png")),
        ("images", ("notes.txt", b"not an image at all", "text/plain")),
        ("images", (outside.name, outside.read_bytes(), "image/png")),
    ]
    response = client.post("/search/batch", files=files, data={"k": "3"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["query"] for r in results] == [inside.name, "notes.txt", outside.name]
    assert [r["decision"] for r in results] == ["match", "error", "no match"]
    assert "notes.txt: not an image" in results[1]["error"] and results[1]["neighbours"] == []
    for result, path in ((results[0], inside), (results[2], outside)):
        single = client.post("/search", files=_upload(path), data={"k": "3"}).json()
        assert [n["id"] for n in result["neighbours"]] == [n["id"] for n in single["neighbours"]]
        np.testing.assert_allclose(
            [n["distance"] for n in result["neighbours"]],
            [n["distance"] for n in single["neighbours"]],
            atol=1e-5,
        )


def test_batch_search_refuses_too_many_images(gallery_dir, gallery_case):
    _, path = gallery_case.other_images[0]
    with _client(gallery_dir, max_batch_images=2) as client:
        files = [("images", (path.name, path.read_bytes(), "image/png"))] * 3
        response = client.post("/search/batch", files=files)
    assert response.status_code == 413 and "at most 2" in response.json()["detail"]


def test_writes_are_disabled_without_a_configured_key(gallery_dir, gallery_case):
    _, path = gallery_case.other_images[0]
    before = _gallery_ids(gallery_dir)
    with _client(gallery_dir) as client:
        assert client.get("/health").json()["writes_enabled"] is False
        added = client.post("/items", files=_upload(path), data={"label": "x"}, headers={"X-API-Key": "any"})
        removed = client.delete("/items/c0i0", headers={"X-API-Key": "any"})
    for response in (added, removed):
        assert response.status_code == 403 and "no API key is configured" in response.json()["detail"]
    assert _gallery_ids(gallery_dir) == before
    assert not (gallery_dir / "uploads").exists()


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}], ids=["missing key", "wrong key"])
def test_writes_without_the_right_key_are_401_and_change_nothing(client, gallery_dir, gallery_case, headers):
    _, path = gallery_case.other_images[0]
    before = _gallery_ids(gallery_dir)
    added = client.post("/items", files=_upload(path), data={"label": "x"}, headers=headers)
    removed = client.delete("/items/c0i0", headers=headers)
    for response in (added, removed):
        assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]
    assert client.get("/health").json()["gallery_size"] == 18
    assert _gallery_ids(gallery_dir) == before


def test_add_then_search_then_remove_persists(client, gallery_dir, gallery_case):
    _, path = gallery_case.other_images[3]
    key = {"X-API-Key": API_KEY}
    assert client.post("/search", files=_upload(path)).json()["decision"] == "no match"

    response = client.post(
        "/items",
        files=_upload(path),
        data={"label": "new one", "metadata": '{"sku": "A12", "n": 3}'},
        headers=key,
    )
    assert response.status_code == 201, response.text
    item = response.json()
    assert (
        item["label"] == "new one"
        and item["metadata"] == {"sku": "A12", "n": 3}
        and item["gallery_size"] == 19
    )
    body = client.post("/search", files=_upload(path)).json()
    assert body["decision"] == "match" and body["label"] == "new one"
    assert body["neighbours"][0]["id"] == item["id"] and body["neighbours"][0]["metadata"] == {
        "sku": "A12",
        "n": 3,
    }
    thumb = client.get(item["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumb.content)).size == Image.open(path).size  # 105 px: under 256, kept

    # persisted through the store: a fresh open sees it, and its image lives in GALLERY/uploads
    with open_gallery(gallery_dir) as store:
        row = store.items([item["id"]]).iloc[0]
    stored = Path(row["path"])
    assert (
        row["label"] == "new one"
        and stored.parent == (gallery_dir / "uploads").resolve()
        and stored.is_file()
    )
    assert item["id"] not in stored.name  # files are named by the server, never by the id

    assert (
        client.post(
            "/items", files=_upload(path), data={"label": "again", "id": item["id"]}, headers=key
        ).status_code
        == 409
    )
    removed = client.delete(f"/items/{item['id']}", headers=key)
    assert removed.status_code == 200 and removed.json() == {"removed": item["id"], "gallery_size": 18}
    assert not stored.exists()
    assert item["id"] not in _gallery_ids(gallery_dir)
    assert client.post("/search", files=_upload(path)).json()["decision"] == "no match"
    missing = client.delete(f"/items/{item['id']}", headers=key)
    assert missing.status_code == 404 and item["id"] in missing.json()["detail"]


def test_remove_a_built_item_keeps_its_source_file(client, gallery_dir, gallery_case):
    item_id, _, path = gallery_case.gallery_images[0]
    assert client.delete(f"/items/{item_id}", headers={"X-API-Key": API_KEY}).status_code == 200
    assert path.is_file() and item_id not in _gallery_ids(gallery_dir)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"label": "  "}, "label must be 1 to 200 characters"),
        ({"label": "x", "metadata": "{nope"}, "metadata is not valid JSON"),
        ({"label": "x", "metadata": "[1, 2]"}, "metadata must be a JSON object"),
        ({"label": "x", "metadata": '{"path": "/etc/passwd"}'}, "reserved"),
        ({"label": "x", "id": "../../etc/passwd"}, "is not valid"),
    ],
)
def test_add_refuses_bad_fields_and_changes_nothing(client, gallery_dir, gallery_case, data, message):
    _, path = gallery_case.other_images[0]
    response = client.post("/items", files=_upload(path), data=data, headers={"X-API-Key": API_KEY})
    assert response.status_code == 422 and message in response.json()["detail"]
    assert len(_gallery_ids(gallery_dir)) == 18 and not any((gallery_dir / "uploads").glob("*"))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with a tiny (broken) body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"", 422, "the file is empty"),
        (b"hello, this is plain text", 415, "not an image"),
        (b"%PDF-1.4 not really", 415, "not an image"),
        ("truncated", 422, "damaged"),
        (_png_header_only(30_000, 30_000), 413, "decompression"),
    ],
    ids=["empty", "text", "pdf", "truncated png", "decompression bomb"],
)
def test_bad_uploads_get_clear_errors_and_the_server_stays_up(client, gallery_case, content, status, message):
    if content == "truncated":
        content = gallery_case.other_images[0][1].read_bytes()[:200]
    for route, data in (("/search", {}), ("/items", {"label": "x"})):
        response = client.post(
            route,
            files={"image": ("upload.png", content, "image/png")},
            data=data,
            headers={"X-API-Key": API_KEY},
        )
        assert response.status_code == status, response.text
        assert message in response.json()["detail"] and "upload.png" in response.json()["detail"]
    assert client.get("/health").json()["gallery_size"] == 18


_MULTIPART = "multipart/form-data; boundary=BOUNDARY"


def _multipart_chunks(payload: bytes):
    yield b'--BOUNDARY\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    for start in range(0, len(payload), 65536):
        yield payload[start : start + 65536]
    yield b"\r\n--BOUNDARY--\r\n"


def test_uploads_over_the_limits_are_413(gallery_dir, gallery_case):
    _, path = gallery_case.other_images[0]
    big = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)))
    assert len(big) > 200_000
    with _client(gallery_dir, max_upload_mb=0.1, max_request_mb=1.0, max_image_pixels=100 * 100) as client:
        too_big = client.post("/search", files={"image": ("big.png", big, "image/png")})
        assert too_big.status_code == 413 and "over the upload limit of 0.1 MB" in too_big.json()["detail"]
        pixels = client.post("/search", files=_upload(path))  # 105 x 105 > 100 x 100
        assert pixels.status_code == 413 and "105 x 105 = 11025 pixels" in pixels.json()["detail"]
        body = client.post("/search", files={"image": ("huge.png", big * 6, "image/png")})
        assert body.status_code == 413 and "request body is over the limit" in body.json()["detail"]
        chunked = client.post(  # no Content-Length: counted while reading, refused past the limit
            "/search", content=_multipart_chunks(b"\0" * 1_500_000), headers={"content-type": _MULTIPART}
        )
        assert chunked.request.headers.get("transfer-encoding") == "chunked"
        assert chunked.status_code == 413 and "request body is over the limit" in chunked.json()["detail"]
        assert client.get("/health").status_code == 200


def test_thumbnails_of_gallery_items(client, gallery_case):
    item_id, _, path = gallery_case.gallery_images[0]
    response = client.get(f"/items/{item_id}/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    thumb = Image.open(io.BytesIO(response.content)).convert("RGB")
    assert thumb.size == (105, 105)
    np.testing.assert_array_equal(np.asarray(thumb), np.asarray(Image.open(path).convert("RGB")))


@pytest.mark.parametrize(
    "url",
    [
        "/items/..%2F..%2F..%2Fetc%2Fpasswd/thumbnail",
        "/items/%2E%2E/thumbnail",
        "/items/..%2Fgallery%2Fheader.json/thumbnail",
        "/items/%2Fetc%2Fpasswd/thumbnail",
        "/items/c0i0%2F..%2F..%2Fetc%2Fpasswd/thumbnail",
        "/items/nonexistent/thumbnail",
    ],
)
def test_thumbnail_ids_are_looked_up_never_used_as_paths(client, url):
    response = client.get(url)
    assert response.status_code == 404 and "no item with id" in response.json()["detail"]
    assert b"root:" not in response.content


def test_thumbnails_never_send_a_file_that_is_not_an_image(gallery_dir, gallery_case, tmp_path):
    """Even an item whose recorded path points at a secret text file yields 404, never its bytes."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    _, _, image = gallery_case.gallery_images[0]
    with Matcher.open(gallery_dir, writable=True) as matcher:
        matcher.add([image], ["odd"], ids=["odd"], paths=[str(secret)])
    with _client(gallery_dir) as c:
        response = c.get("/items/odd/thumbnail")
    assert response.status_code == 404 and b"TOP SECRET" not in response.content


def test_image_roots_confine_thumbnails(gallery_dir, gallery_case, tmp_path):
    item_id, _, path = gallery_case.gallery_images[0]
    with _client(gallery_dir, image_roots=[tmp_path / "elsewhere"]) as c:
        response = c.get(f"/items/{item_id}/thumbnail")
        assert response.status_code == 404 and "outside the folders" in response.json()["detail"]
    with _client(gallery_dir, image_roots=[path.parent.parent]) as c:
        assert c.get(f"/items/{item_id}/thumbnail").status_code == 200


def test_metrics_are_prometheus_text_with_counts_and_latencies(client, gallery_case):
    _, path = gallery_case.other_images[0]
    for _ in range(3):
        client.post("/search", files=_upload(path))
    client.get("/items/nonexistent/thumbnail")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'lookalike_http_requests_total{method="POST",route="/search",status="200"} 3.0' in text
    assert (
        'lookalike_http_requests_total{method="GET",route="/items/{item_id:path}/thumbnail",status="404"} 1.0'
        in text
    )
    assert 'lookalike_http_request_duration_seconds_count{method="POST",route="/search"} 3.0' in text
    assert "lookalike_embed_forward_passes_total 3.0" in text
    assert "lookalike_gallery_items 18.0" in text


def test_openapi_docs_and_the_page_are_served(client):
    spec = client.get("/openapi.json").json()
    assert {"/search", "/search/batch", "/items", "/items/{item_id}", "/health", "/metrics"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'accept="image/*" capture' in page.text and "/static/app.js" in page.text
    assert "function" in client.get("/static/app.js").text
    assert client.get("/static/app.css").status_code == 200


def test_settings_read_the_api_key_from_the_environment_and_refuse_unknown_keys(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_API_KEY", "from-env")
    settings = ServiceSettings(gallery="g")
    assert settings.api_key.get_secret_value() == "from-env" and "from-env" not in repr(settings)
    with pytest.raises(ValueError, match="max_uplod_mb"):
        ServiceSettings(gallery="g", max_uplod_mb=3)
    with pytest.raises(ValueError, match="either checkpoint or backbone"):
        ServiceSettings(gallery="g", checkpoint="a.pt", backbone="resnet18")
    monkeypatch.setenv("LOOKALIKE_API_KEY", " ")
    with pytest.raises(ValueError, match="api_key is empty"):
        ServiceSettings(gallery="g")


def test_a_missing_gallery_fails_at_start_with_a_clear_error(tmp_path):
    app = create_app(ServiceSettings(gallery=str(tmp_path / "nope")))
    with pytest.raises(Exception, match="nope"), TestClient(app):
        pass


def test_metadata_json_round_trips(client, gallery_case):
    _, path = gallery_case.other_images[5]
    meta = {"shop": "Ünïcode store", "price": 9.5, "in_stock": True}
    item = client.post(
        "/items",
        files=_upload(path),
        data={"label": "x", "metadata": json.dumps(meta)},
        headers={"X-API-Key": API_KEY},
    ).json()
    found = client.post("/search", files=_upload(path), data={"k": "1"}).json()["neighbours"][0]
    assert found["id"] == item["id"] and found["metadata"] == meta


def test_a_threshold_setting_overrides_the_gallerys(gallery_dir, gallery_case):
    _, path = gallery_case.other_images[2]
    with _client(gallery_dir, threshold=1.5) as client:  # euclidean distances of unit vectors are <= 2
        assert client.get("/health").json()["threshold"] == 1.5
        body = client.post("/search", files=_upload(path)).json()
    assert body["decision"] == "match" and body["threshold"] == 1.5
    assert body["label"] == body["neighbours"][0]["label"] and body["margin"] == pytest.approx(
        1.5 - body["distance"]
    )


def test_without_a_threshold_the_nearest_label_comes_without_a_verdict(gallery_dir, gallery_case):
    with open_gallery(gallery_dir, writable=True) as store:
        store.set_threshold(None)
    _, path = gallery_case.other_images[2]
    with _client(gallery_dir) as client:
        assert client.get("/health").json()["threshold"] is None
        body = client.post("/search", files=_upload(path)).json()
    assert body["decision"] == "no threshold" and body["threshold"] is None and body["margin"] is None
    assert body["label"] == body["neighbours"][0]["label"]
