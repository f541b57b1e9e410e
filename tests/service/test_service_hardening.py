"""What no upload may do to the server (memory budgets), the shared id and metadata rules over HTTP,
orphaned uploads, a gallery written by another process while a server reads it, and the routes'
dependencies overridden in a test."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_helpers import API_KEY
from torchvision.transforms import v2

import lookalike
from lookalike.data import eval_transform
from lookalike.gallery import open_gallery
from lookalike.models.backbones import Preprocessing
from lookalike.service import ServiceSettings, create_app
from lookalike.service.budget import PixelBudget
from lookalike.service.dependencies import get_state
from lookalike.service.images import resized_pixels

KEY = {"X-API-Key": API_KEY}


def _client(gallery_dir: Path, **settings) -> TestClient:
    return TestClient(create_app(ServiceSettings(gallery=str(gallery_dir), **settings)))


def _strip_png(width: int, height: int, mode: str = "1") -> bytes:
    """A tiny PNG (a few hundred bytes) of a blank ``width`` x ``height`` picture."""
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
@pytest.mark.parametrize("size", [(3, 40), (40, 3), (17, 17), (1, 9)])
def test_resized_pixels_is_what_the_eval_transform_resizes_to(crop_mode, size):
    """Against the transform itself: the resize step's output, before the crop."""
    prep = Preprocessing(
        image_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.8, crop_mode=crop_mode
    )
    steps = eval_transform(prep).transforms
    image = Image.new("RGB", size)
    if crop_mode != "border":
        resize = next(t for t in steps if isinstance(t, v2.Resize))
        resized = resize(image)
        assert resized_pixels(prep, *size) == resized.size[0] * resized.size[1]
    else:  # border resizes the long side to the scale: at most a square of it
        scale = int(8 / 0.8)
        assert resized_pixels(prep, *size) == scale * scale


def test_a_thin_strip_is_refused_from_its_header_in_no_time(gallery_dir):
    strip = _strip_png(200_000, 1)  # the model's resize would scale it up to 28 x 5,600,000
    assert len(strip) < 1000
    with _client(gallery_dir, api_key=API_KEY, max_resized_pixels=1_000_000) as client:
        for url, data in (("/search", {}), ("/items", {"label": "x"})):
            response = client.post(
                url, files={"image": ("strip.png", strip, "image/png")}, data=data, headers=KEY
            )
            assert response.status_code == 413, response.text
            detail = response.json()["detail"]
            assert "200000 x 1" in detail and "max_resized_pixels" in detail
        batch = client.post("/search/batch", files=[("images", ("strip.png", strip, "image/png"))]).json()
        assert (
            batch["results"][0]["decision"] == "error"
            and "max_resized_pixels" in batch["results"][0]["error"]
        )
        assert client.get("/health").json()["gallery_size"] == 18


def test_a_batch_of_decoded_pixels_is_bounded(gallery_dir, gallery_case):
    big = _strip_png(1000, 1000)  # 1 M pixels each, a few hundred bytes
    files = [("images", (f"b{i}.png", big, "image/png")) for i in range(3)]
    with _client(gallery_dir, max_image_pixels=1_000_000, max_request_pixels=2_500_000) as client:
        response = client.post("/search/batch", files=files)
        assert response.status_code == 413
        assert (
            "3000000 pixels" in response.json()["detail"]
            and "max_request_pixels" in response.json()["detail"]
        )
        ok = client.post("/search/batch", files=files[:2])  # 2 M pixels fit
        assert ok.status_code == 200 and [r["error"] for r in ok.json()["results"]] == [None, None]


def test_the_server_budget_makes_requests_wait_never_overlap():
    async def scenario() -> tuple[list[str], int]:
        budget = PixelBudget(100)
        order: list[str] = []

        async def use(name: str, pixels: int, seconds: float) -> None:
            async with budget.hold(pixels):
                order.append(f"+{name}")
                await asyncio.sleep(seconds)
                order.append(f"-{name}")

        with pytest.raises(ValueError, match="can never fit"):
            async with budget.hold(101):
                pass
        await asyncio.gather(use("a", 60, 0.05), use("b", 60, 0.0), use("c", 40, 0.0))
        return order, budget.peak

    order, peak = asyncio.run(scenario())
    assert peak <= 100 and order.index("+b") > order.index("-a")  # b waited for a's pixels
    assert order.index("+c") < order.index("-a")  # c fitted next to a


def test_pixel_settings_must_nest():
    with pytest.raises(ValueError, match=r"max_image_pixels .* <= max_request_pixels"):
        ServiceSettings(gallery="g", max_image_pixels=10, max_request_pixels=5)


@pytest.mark.parametrize("bad", ["a\n", "x\x00y", " a", "../x"])
def test_ids_follow_the_one_rule_and_lookups_of_bad_ids_are_clean_misses(client_with_key, gallery_case, bad):
    client = client_with_key
    _, path = gallery_case.other_images[0]
    response = client.post(
        "/items",
        files={"image": (path.name, path.read_bytes(), "image/png")},
        data={"label": "x", "id": bad},
        headers=KEY,
    )
    assert (
        response.status_code == 422
        and "is not valid: an id is 1 to 256 characters" in response.json()["detail"]
    )
    quoted = bad.replace("\n", "%0A").replace("\x00", "%00")
    assert client.delete(f"/items/{quoted}", headers=KEY).status_code == 404
    assert client.get(f"/items/{quoted}/thumbnail").status_code == 404


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ('{"n": 123456789012345678901234567890}', "outside the 64-bit integer range"),
        (json.dumps({f"k{i}": i for i in range(3000)}), "3000 metadata keys; at most 64"),
        ('{"x": Infinity}', "must be finite"),
        ('{"x": {"nested": 1}}', "values must be strings, numbers"),
        ("[" * 100_000 + "]" * 100_000, "metadata is not valid JSON"),
    ],
)
def test_metadata_follows_the_one_rule(client_with_key, gallery_case, gallery_dir, metadata, message):
    _, path = gallery_case.other_images[0]
    response = client_with_key.post(
        "/items",
        files={"image": (path.name, path.read_bytes(), "image/png")},
        data={"label": "x", "metadata": metadata},
        headers=KEY,
    )
    assert response.status_code == 422 and message in response.json()["detail"]
    assert client_with_key.get("/health").json()["gallery_size"] == 18


def test_orphaned_uploads_are_cleaned_at_the_next_start(gallery_dir, gallery_case):
    _, path = gallery_case.other_images[0]
    with _client(gallery_dir, api_key=API_KEY) as client:
        kept = client.post(
            "/items",
            files={"image": (path.name, path.read_bytes(), "image/png")},
            data={"label": "x"},
            headers=KEY,
        )
        assert kept.status_code == 201
    uploads = gallery_dir / "uploads"
    stored = sorted(p.name for p in uploads.iterdir())
    assert len(stored) == 1
    # what an add killed between writing the file and committing the item leaves behind
    orphan, temp = uploads / ("ab" * 16 + ".png"), uploads / (".cd" + "cd" * 15 + ".png.x1y2.png")
    mine = uploads / "notes.txt"  # not a name the service gives: never touched
    for f in (orphan, temp, mine):
        f.write_bytes(b"x")
    with _client(gallery_dir, api_key=API_KEY) as client:
        assert client.get("/health").status_code == 200
    assert sorted(p.name for p in uploads.iterdir()) == sorted([*stored, "notes.txt"])


def _env() -> dict[str, str]:
    src = str(Path(lookalike.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": src}


def test_a_reading_server_picks_up_a_cli_index_add(gallery_dir, gallery_case, tmp_path):
    new = tmp_path / "new" / "newclass"
    new.mkdir(parents=True)
    for i, (_, path) in enumerate(gallery_case.other_images[:3]):
        (new / f"n{i}.png").write_bytes(path.read_bytes())
    with _client(gallery_dir, refresh_interval_s=0) as client:  # no API key: it reads, others write
        assert client.get("/health").json()["gallery_size"] == 18
        cli = [sys.executable, "-m", "lookalike", "index"]
        added = subprocess.run(
            [*cli, "add", str(gallery_dir), "--images", str(new.parent), "--device", "cpu"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert added.returncode == 0, added.stderr[-2000:]
        info = subprocess.run(
            [*cli, "info", str(gallery_dir), "--json"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert info.returncode == 0, info.stderr[-2000:]
        assert client.get("/health").json()["gallery_size"] == json.loads(info.stdout)["items"] == 21
        _, path = gallery_case.other_images[1]
        found = client.post("/search", files={"image": (path.name, path.read_bytes(), "image/png")}).json()
        assert found["label"] == "newclass" and found["distance"] < 1e-3  # the new item is searched too


def test_a_writing_server_refuses_a_cli_writer_clearly(gallery_dir):
    with _client(gallery_dir, api_key=API_KEY) as client:
        assert client.get("/health").status_code == 200
        added = subprocess.run(
            [sys.executable, "-m", "lookalike", "index", "remove", str(gallery_dir), "--ids", "c0i0"],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert added.returncode != 0 and "being written by another process" in added.stderr
        assert client.get("/health").json()["gallery_size"] == 18
    with open_gallery(gallery_dir) as store:
        assert len(store) == 18


def test_the_state_dependency_can_be_overridden(gallery_dir):
    app = create_app(ServiceSettings(gallery=str(gallery_dir)))
    with TestClient(app) as client:
        real = app.state.service
        sizes = iter([5, 6])

        class Fake:
            settings, matcher = real.settings, real.matcher

            def gallery_size(self) -> int:
                return next(sizes)

        app.dependency_overrides[get_state] = Fake
        assert [client.get("/health").json()["gallery_size"] for _ in range(2)] == [5, 6]
        app.dependency_overrides.clear()
        assert client.get("/health").json()["gallery_size"] == 18


@pytest.fixture
def client_with_key(gallery_dir):
    with _client(gallery_dir, api_key=API_KEY) as c:
        yield c
