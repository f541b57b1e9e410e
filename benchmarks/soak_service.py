"""Soak test of ``lookalike serve``: a bounded run of concurrent searches, batch searches, adds and
deletes with hostile uploads mixed in, on one store; then a check that the gallery holds exactly what
the server acknowledged.

A gallery is built from omniglot-small with a small random-init model (the weights do not change what
is measured: memory, errors, consistency), on the folder store or Milvus Lite (``--store``). A real
server (a ``lookalike serve`` subprocess with an API key, 127.0.0.1 only) then gets ``--clients``
concurrent clients for ``--seconds`` seconds. Each request is one of (by weight): search, batch
search, add (with metadata), delete of an item this run added, or a hostile upload that must get a
4xx: a 1-pixel-high strip the resize would blow up, a header claiming 60,000 x 60,000 pixels, a
truncated PNG, a decompression bomb (a 1-bit PNG of 70 M pixels, ~10 KB), an upload over the byte
limit, a batch over the request's pixel budget, metadata with a 30-digit integer or 3,000 keys, an id
with a newline. Large but legal images (a 6,000 x 6,000 1-bit PNG, 36 M pixels) are mixed into
searches to load the pixel budget.

Printed: requests and p50/p99 latency per endpoint, status counts, 5xx count, hostile uploads that
were not refused, the server's idle and peak RSS (VmRSS after warm-up, VmHWM at the end), and whether
``lookalike index info`` and the item ids agree with every acknowledged add and delete.

    nice -n 5 .venv/bin/python benchmarks/soak_service.py --store folder --seconds 150
    nice -n 5 .venv/bin/python benchmarks/soak_service.py --store milvus-lite --seconds 150
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "omniglot-small"
KEY = "soak-key"


def build_gallery(root: Path, store: str, items: int) -> tuple[str, Path, list[Path]]:
    """The gallery location, the checkpoint of its model, and query images."""
    import pandas as pd
    import torch

    from lookalike.gallery.indexing import build_gallery as build
    from lookalike.gallery.indexing import embed_items, gallery_header
    from lookalike.models import create_embedder_from, save_checkpoint
    from lookalike.models.inference import load_inference_model

    files = sorted(DATA.glob("*/*/*.png"))
    rng = random.Random(0)
    rng.shuffle(files)
    gallery, queries = files[:items], files[items : items + 200]
    torch.manual_seed(0)
    embedder = create_embedder_from("convnet4", image_size=28, embed_dim=64, backbone_kwargs={"width": 16})
    checkpoint = save_checkpoint(root / "model.pt", embedder)
    model = load_inference_model(checkpoint=checkpoint)
    frame = pd.DataFrame(
        {
            "id": [f"g{i}" for i in range(len(gallery))],
            "label": [p.parent.name for p in gallery],
            "path": [str(p) for p in gallery],
        }
    )
    emb = embed_items(model, frame)
    location = str(root / "gallery") if store == "folder" else f"milvus-lite:{root / 'gallery.db'}"
    build(location, gallery_header(model, threshold=0.2), emb, frame).close()
    return location, checkpoint, queries


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def hostile_payloads() -> dict[str, tuple[str, dict]]:
    """name -> (endpoint, httpx keyword arguments) of requests that must be refused with a 4xx."""
    strip = png(Image.new("1", (200_000, 1)))
    claims = bytearray(png(Image.new("L", (8, 8))))
    claims[16:24] = (60_000).to_bytes(4, "big") + (60_000).to_bytes(4, "big")  # IHDR width, height
    bomb = png(Image.new("1", (10_000, 7_000)))
    truncated = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))[
        :300
    ]
    big_legal = png(Image.new("1", (6_000, 6_000)))
    image = lambda name, data: {"files": {"image": (name, data, "image/png")}}  # noqa: E731
    headers = {"X-API-Key": KEY}
    return {
        "thin strip": ("/search", image("strip.png", strip)),
        "claims 3.6 G pixels": ("/search", image("claims.png", bytes(claims))),
        "truncated": ("/search", image("cut.png", truncated)),
        "bomb": ("/search", image("bomb.png", bomb)),
        "over the byte limit": ("/search", image("big.bin", b"\x89PNG" + os.urandom(11 * 2**20))),
        "batch over pixel budget": (
            "/search/batch",
            {"files": [("images", (f"b{i}.png", big_legal, "image/png")) for i in range(2)]},
        ),
        "30-digit int": (
            "/items",
            {
                **image("q.png", png(Image.new("L", (28, 28), 9))),
                "data": {"label": "x", "metadata": '{"n": ' + "9" * 30 + "}"},
                "headers": headers,
            },
        ),
        "3000 keys": (
            "/items",
            {
                **image("q.png", png(Image.new("L", (28, 28), 9))),
                "data": {"label": "x", "metadata": json.dumps({f"k{i}": i for i in range(3000)})},
                "headers": headers,
            },
        ),
        "id with newline": (
            "/items",
            {
                **image("q.png", png(Image.new("L", (28, 28), 9))),
                "data": {"label": "x", "id": "evil\n"},
                "headers": headers,
            },
        ),
    }


class Soak:
    """The shared record of one run: latencies and statuses per endpoint, acknowledged writes."""

    def __init__(self, base: str, queries: list[Path], initial: set[str], seed: int) -> None:
        self.base, self.queries = base, [q.read_bytes() for q in queries]
        self.big_legal = png(Image.new("1", (6_000, 6_000)))
        self.hostile = hostile_payloads()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.not_refused: Counter = Counter()
        self.added: set[str] = set()
        self.deleted: set[str] = set()
        self.live: list[str] = []  # ids added and not yet deleted, candidates for deletes
        self.initial = initial
        self.mutex = threading.Lock()
        self.seed = seed

    def request(self, client: httpx.Client, name: str, method: str, url: str, **kw) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = client.request(method, self.base + url, timeout=120, **kw)
        except httpx.HTTPError as err:
            with self.mutex:
                self.status[name][type(err).__name__] += 1
            return None
        with self.mutex:
            self.latency[name].append(time.perf_counter() - started)
            self.status[name][response.status_code] += 1
        return response

    def step(self, client: httpx.Client, rng: random.Random, n: int) -> None:
        action = rng.choices(
            ["search", "batch", "add", "delete", "hostile", "large"], [35, 12, 15, 10, 25, 3]
        )[0]
        query = lambda: ("q.png", rng.choice(self.queries), "image/png")  # noqa: E731
        if action == "search":
            self.request(client, "POST /search", "POST", "/search", files={"image": query()}, data={"k": "5"})
        elif action == "large":
            files = {"image": ("large.png", self.big_legal, "image/png")}
            self.request(client, "POST /search (36 M px)", "POST", "/search", files=files)
        elif action == "batch":
            files = [("images", query()) for _ in range(rng.randint(2, 8))]
            self.request(client, "POST /search/batch", "POST", "/search/batch", files=files)
        elif action == "add":
            self.add(client, rng, n, query())
        elif action == "delete":
            self.delete(client, rng)
        else:
            name = rng.choice(sorted(self.hostile))
            url, kw = self.hostile[name]
            response = self.request(client, f"hostile: {name}", "POST", url, **kw)
            if response is not None and not 400 <= response.status_code < 500:
                with self.mutex:
                    self.not_refused[name] += 1

    def add(self, client: httpx.Client, rng: random.Random, n: int, image: tuple) -> None:
        item_id = f"soak-{self.seed}-{n}-{rng.randrange(10**9)}"
        meta = json.dumps({"n": n, "big": 2**62, "shop": "soak"})
        data = {"label": f"soak{n % 7}", "id": item_id, "metadata": meta}
        response = self.request(
            client,
            "POST /items",
            "POST",
            "/items",
            files={"image": image},
            data=data,
            headers={"X-API-Key": KEY},
        )
        if response is not None and response.status_code == 201:
            with self.mutex:
                self.added.add(item_id)
                self.live.append(item_id)

    def delete(self, client: httpx.Client, rng: random.Random) -> None:
        with self.mutex:
            if not self.live:
                return
            item_id = self.live.pop(rng.randrange(len(self.live)))
        response = self.request(
            client, "DELETE /items/{id}", "DELETE", f"/items/{item_id}", headers={"X-API-Key": KEY}
        )
        if response is not None and response.status_code == 200:
            with self.mutex:
                self.deleted.add(item_id)


def run_clients(soak: Soak, clients: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    counts = [0] * clients

    def work(k: int) -> None:
        rng = random.Random(1000 + k)
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                soak.step(client, rng, k * 1_000_000 + counts[k])
                counts[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(location: str, checkpoint: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "LOOKALIKE_API_KEY": KEY}
    cmd = [sys.executable, "-m", "lookalike", "serve", "--gallery", location, "--checkpoint", str(checkpoint)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("the server did not answer /health in 300 s")


def gallery_ids(location: str) -> tuple[int, set[str]]:
    """``lookalike index info --json``'s item count (a new process) and the stored ids."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    info = subprocess.run(
        [sys.executable, "-m", "lookalike", "index", "info", location, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    from lookalike.gallery import open_gallery

    with open_gallery(location) as store:
        ids = set(store.items()["id"])
    return int(json.loads(info.stdout)["items"]), ids


def report(
    soak: Soak, total: int, seconds: float, idle: float, peak: float, count: int, ids: set[str]
) -> bool:
    print(f"\n{total} requests in {seconds:.0f} s ({total / seconds:.1f}/s)\n")
    print(f"{'endpoint':34s} {'requests':>8s} {'p50 ms':>8s} {'p99 ms':>8s}  statuses")
    for name in sorted(soak.status):
        lat = np.array(soak.latency[name]) * 1000 if soak.latency[name] else np.array([np.nan])
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(soak.status[name].items(), key=str))
        p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
        print(f"{name:34s} {sum(soak.status[name].values()):8d} {p50:8.0f} {p99:8.0f}  {statuses}")
    fivexx = sum(v for c in soak.status.values() for k, v in c.items() if not isinstance(k, int) or k >= 500)
    expected = (soak.initial | soak.added) - soak.deleted
    consistent = count == len(expected) and ids == expected
    print(f"\n5xx (or no answer): {fivexx}")
    print(
        f"hostile uploads not refused with a 4xx: {sum(soak.not_refused.values())} {dict(soak.not_refused)}"
    )
    print(f"server RSS: idle {idle:.0f} MB, peak {peak:.0f} MB (+{peak - idle:.0f} MB)")
    print(
        f"acknowledged: {len(soak.added)} adds, {len(soak.deleted)} deletes; gallery: index info {count} "
        f"items, expected {len(expected)}; ids {'agree' if ids == expected else 'DIFFER'}"
    )
    ok = fivexx == 0 and not soak.not_refused and consistent and peak - idle < 1024
    print("PASS" if ok else "FAIL")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["folder", "milvus-lite"], default="folder")
    parser.add_argument("--seconds", type=float, default=120.0, help="How long the clients run (bounded).")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients.")
    parser.add_argument("--items", type=int, default=300, help="Gallery items at the start.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        root = Path(tmp)
        location, checkpoint, queries = build_gallery(root, args.store, args.items)
        initial = {f"g{i}" for i in range(args.items)}
        proc = start_server(location, checkpoint, free_port(), root / "server.log")
        base = proc.args[proc.args.index("--port") + 1]
        soak = Soak(f"http://127.0.0.1:{base}", queries, initial, seed=0)
        with httpx.Client() as client:  # warm-up: the first forward pass allocates its buffers
            for q in soak.queries[:20]:
                client.post(soak.base + "/search", files={"image": ("q.png", q, "image/png")}, timeout=60)
        idle = rss_mb(proc.pid, "VmRSS")
        print(f"server after warm-up: RSS {idle:.0f} MB (peak so far {rss_mb(proc.pid, 'VmHWM'):.0f} MB)")
        started = time.monotonic()
        total = run_clients(soak, args.clients, args.seconds)
        elapsed = time.monotonic() - started
        peak = rss_mb(proc.pid, "VmHWM")
        print(f"server at the end: RSS {rss_mb(proc.pid, 'VmRSS'):.0f} MB")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        count, ids = gallery_ids(location)
        ok = report(soak, total, elapsed, idle, peak, count, ids)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
