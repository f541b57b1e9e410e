"""``lookalike serve``: a real uvicorn server on 127.0.0.1, and one-line errors before listening."""

from __future__ import annotations

import httpx
from service_helpers import API_KEY, running_server
from typer.testing import CliRunner

from lookalike.cli import app


def test_serve_answers_search_and_edits_over_real_http(gallery_dir, gallery_case):
    item_id, label, path = gallery_case.gallery_images[7]
    with running_server(
        ["--gallery", str(gallery_dir), "--k", "3"], env={"LOOKALIKE_API_KEY": API_KEY}
    ) as base:
        files = {"image": (path.name, path.read_bytes(), "image/png")}
        body = httpx.post(f"{base}/search", files=files, timeout=30).json()
        assert body["decision"] == "match" and body["label"] == label and body["k"] == 3
        assert body["neighbours"][0]["id"] == item_id
        assert httpx.get(f"{base}{body['neighbours'][0]['thumbnail']}", timeout=30).status_code == 200
        wrong = httpx.delete(f"{base}/items/{item_id}", headers={"X-API-Key": "nope"}, timeout=30)
        assert wrong.status_code == 401
        right = httpx.delete(f"{base}/items/{item_id}", headers={"X-API-Key": API_KEY}, timeout=30)
        assert right.status_code == 200 and right.json()["gallery_size"] == 17
        assert "lookalike_http_requests_total" in httpx.get(f"{base}/metrics", timeout=30).text


def test_serve_reports_a_missing_gallery_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--gallery", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "missing" in result.output and "Traceback" not in result.output


def test_serve_refuses_bad_options_in_one_line(gallery_dir):
    result = CliRunner().invoke(app, ["serve", "--gallery", str(gallery_dir), "--k", "0"])
    assert result.exit_code == 2 and "k: Input should be greater than or equal to 1" in result.output
