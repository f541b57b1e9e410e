"""``lookalike serve``: a real uvicorn server on 127.0.0.1, and one-line errors before listening."""

from __future__ import annotations

import httpx
from service_helpers import API_KEY
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.gallery import open_gallery


def test_serve_answers_search_and_edits_over_real_http(live_server, gallery_case):
    base, gallery = live_server
    item_id, label, path = gallery_case.gallery_images[7]
    size = httpx.get(f"{base}/health", timeout=30).json()["gallery_size"]  # other tests share the server
    files = {"image": (path.name, path.read_bytes(), "image/png")}
    body = httpx.post(f"{base}/search", files=files, timeout=30).json()
    assert body["decision"] == "match" and body["label"] == label and body["k"] == 3  # --k 3
    assert body["neighbours"][0]["id"] == item_id
    assert httpx.get(f"{base}{body['neighbours'][0]['thumbnail']}", timeout=30).status_code == 200
    wrong = httpx.delete(f"{base}/items/{item_id}", headers={"X-API-Key": "nope"}, timeout=30)
    assert wrong.status_code == 401
    right = httpx.delete(f"{base}/items/{item_id}", headers={"X-API-Key": API_KEY}, timeout=30)
    assert right.status_code == 200 and right.json()["gallery_size"] == size - 1
    with open_gallery(gallery) as store:  # persisted: the folder no longer holds it
        assert item_id not in set(store.items()["id"])
    assert "lookalike_http_requests_total" in httpx.get(f"{base}/metrics", timeout=30).text


def test_serve_reports_a_missing_gallery_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--gallery", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "missing" in result.output and "Traceback" not in result.output


def test_serve_refuses_bad_options_in_one_line(gallery_dir):
    result = CliRunner().invoke(app, ["serve", "--gallery", str(gallery_dir), "--k", "0"])
    assert result.exit_code == 2 and "k: Input should be greater than or equal to 1" in result.output
