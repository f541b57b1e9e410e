"""Throughput and latency of ``lookalike serve`` under concurrent searches, with micro-batching
against one-at-a-time embedding, in the same run.

A gallery is built from omniglot-small with a random-init backbone (the weights do not change the
cost of a forward pass). Then, for each mode, a real server is started on 127.0.0.1 (a
``lookalike serve`` subprocess) and sent ``--requests`` POST /search requests from ``--concurrency``
concurrent clients (loopback only; bounded in count and by ``--max-seconds``). Reported: requests/s,
p50/p99 latency, failed requests, forward passes and images per pass (from /metrics). The modes:

- batched: ``--batch-window-ms`` (default 5) and ``--max-batch-size`` (default 32);
- one at a time: ``--max-batch-size 1`` (each request its own forward pass, queued).

With ``--onnx`` the gallery's checkpoint is also exported (``lookalike export``) and both modes run a
second time with ``serve --onnx FILE`` (onnxruntime instead of eager PyTorch), alternated with the
PyTorch servers in every round; the requests/s and CPU time of onnxruntime over PyTorch are printed.

    .venv/bin/python benchmarks/bench_service.py                       # MobileNetV2 @ 224, 200 requests
    .venv/bin/python benchmarks/bench_service.py --backbone convnet4 --image-size 64
    .venv/bin/python benchmarks/bench_service.py --onnx --requests 96 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "omniglot-small"


def build_gallery(root: Path, *, backbone: str, image_size: int, items: int) -> tuple[Path, list[Path]]:
    """A folder gallery of ``items`` omniglot images (3 per class) embedded by a random-init
    ``backbone``; returns it and query images (the 4th image of each class)."""
    from lookalike.gallery import create_gallery
    from lookalike.gallery.indexing import gallery_header
    from lookalike.gallery.matcher import Matcher
    from lookalike.models import create_embedder_from, save_checkpoint
    from lookalike.models.inference import load_inference_model

    classes = sorted(p for p in DATA.glob("*/*") if p.is_dir())
    gallery_images, labels, queries = [], [], []
    for c in classes:
        files = sorted(c.glob("*.png"))
        if len(files) < 4:
            continue
        gallery_images += files[:3]
        labels += [f"{c.parent.name}/{c.name}"] * 3
        queries.append(files[3])
        if len(gallery_images) >= items:
            break
    torch.manual_seed(0)
    embedder = create_embedder_from(backbone, image_size=image_size, embed_dim=128)
    checkpoint = save_checkpoint(root / "model.pt", embedder)
    model = load_inference_model(checkpoint=checkpoint)
    header = gallery_header(model, threshold=0.5)
    gallery = root / "gallery"
    with Matcher(create_gallery(gallery, header), model) as matcher:
        matcher.add(gallery_images, labels)
    return gallery, queries


def export_model(root: Path) -> Path:
    """The gallery's checkpoint exported to ONNX (the same fingerprint: the gallery accepts it)."""
    from lookalike.export import export_onnx
    from lookalike.models.inference import load_inference_model

    return export_onnx(load_inference_model(checkpoint=root / "model.pt"), root / "model.onnx").path


def _onnx_summary(rounds: dict[str, list[dict]], cpu: dict[str, float]) -> None:
    for mode in ("micro-batched", "one at a time"):
        gains = [
            o["requests_per_s"] / t["requests_per_s"]
            for o, t in zip(rounds[f"{mode}, onnx"], rounds[mode], strict=True)
        ]
        print(
            f"onnxruntime, {mode}: {float(np.median(gains)):.2f}x the requests/s of PyTorch (per round: "
            f"{', '.join(f'{g:.2f}x' for g in gains)}); server CPU ms/request {cpu[f'{mode}, onnx']:.0f} "
            f"against {cpu[mode]:.0f} ({cpu[mode] / cpu[f'{mode}, onnx']:.2f}x less work)"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gallery: Path, extra: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("LOOKALIKE_API_KEY", None)
    cmd = [sys.executable, "-m", "lookalike", "serve", "--gallery", str(gallery), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not start in 180 s: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(
    base: str,
    queries: list[bytes],
    *,
    requests: int,
    concurrency: int,
    max_seconds: float,
    pid: int | None = None,
) -> dict:
    """``requests`` searches from ``concurrency`` clients; none is started after ``max_seconds``.
    With the server's ``pid``, also its CPU time per request: the work done, which a loaded machine
    changes much less than the wall time."""
    latencies: list[float] = []
    failures: list[str] = []
    next_index = 0
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < requests and time.monotonic() < deadline:
                i = next_index
                next_index += 1
                files = {"image": (f"q{i}.png", queries[i % len(queries)], "image/png")}
                started = time.perf_counter()
                try:
                    response = await client.post("/search", files=files, data={"k": "5"})
                    ok = response.status_code == 200 and response.json()["decision"] != "error"
                    if not ok:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as err:
                    failures.append(repr(err))
                else:
                    if ok:
                        latencies.append(time.perf_counter() - started)

        before = (await client.get("/metrics")).text
        cpu_before = cpu_seconds(pid) if pid else float("nan")
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cpu = (cpu_seconds(pid) - cpu_before) if pid else float("nan")
        after = (await client.get("/metrics")).text
    passes = _delta(before, after, "lookalike_embed_forward_passes_total")
    images = _delta(before, after, "lookalike_embed_batch_images_sum")
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies) + len(failures),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "seconds": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "forward_passes": passes,
        "images_per_pass": images / passes if passes else float("nan"),
        "server_cpu_ms_per_request": 1000 * cpu / max(len(latencies), 1),
    }


def _delta(before: str, after: str, name: str) -> float:
    return _metric(after, name) - _metric(before, name)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="mobilenetv2_100")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--gallery-items", type=int, default=96)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="Stop sending after this long.")
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument(
        "--warmup", type=int, default=8, help="Requests sent to each server before measuring."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Measured rounds per mode, alternated.")
    parser.add_argument("--onnx", action="store_true", help="Also serve the model's ONNX export.")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"omniglot-small not found at {DATA}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        gallery, query_paths = build_gallery(
            root, backbone=args.backbone, image_size=args.image_size, items=args.gallery_items
        )
        print(
            f"gallery: {args.gallery_items} omniglot images, {args.backbone} @ {args.image_size} px "
            f"(random init), built in {time.perf_counter() - t0:.1f} s; {len(query_paths)} query images"
        )
        queries = [p.read_bytes() for p in query_paths]
        modes = {
            "micro-batched": [
                "--batch-window-ms",
                str(args.batch_window_ms),
                "--max-batch-size",
                str(args.max_batch_size),
            ],
            "one at a time": ["--batch-window-ms", "0", "--max-batch-size", "1"],
        }
        if args.onnx:
            onnx_file = export_model(root)
            modes.update(
                {f"{name}, onnx": [*extra, "--onnx", str(onnx_file)] for name, extra in modes.items()}
            )
        servers = {}
        try:
            for name, extra in modes.items():  # both up at once; the idle one costs nothing
                servers[name] = start_server(gallery, extra, root / f"server-{len(servers)}.log")
            for _, base in servers.values():
                asyncio.run(load(base, queries, requests=args.warmup, concurrency=4, max_seconds=60))
            rounds: dict[str, list[dict]] = {name: [] for name in modes}
            for _ in range(args.rounds):  # alternated, so a change in the machine's load hits both
                for name, (proc, base) in servers.items():
                    rounds[name].append(
                        asyncio.run(
                            load(
                                base,
                                queries,
                                requests=args.requests,
                                concurrency=args.concurrency,
                                max_seconds=args.max_seconds,
                                pid=proc.pid,
                            )
                        )
                    )
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    print(
        f"\n{args.requests} POST /search per round, {args.rounds} rounds alternating the modes, "
        f"{args.concurrency} concurrent clients, loopback, torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "| mode | round | requests | failed | requests/s | p50 ms | p99 ms | forward passes | images/pass "
        "| server CPU ms/request |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in rounds.items():
        for i, r in enumerate(runs, 1):
            print(
                f"| {name} | {i} | {r['requests']} | {r['failed']} | {r['requests_per_s']:.1f} | "
                f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['forward_passes']:.0f} | "
                f"{r['images_per_pass']:.1f} | {r['server_cpu_ms_per_request']:.0f} |"
            )
    gains = [
        b["requests_per_s"] / s["requests_per_s"]
        for b, s in zip(rounds["micro-batched"], rounds["one at a time"], strict=True)
    ]
    print(
        f"\nmicro-batching: {float(np.median(gains)):.2f}x the requests/s of one-at-a-time embedding "
        f"(median over rounds; per round: {', '.join(f'{g:.2f}x' for g in gains)})"
    )
    cpu = {
        name: float(np.median([r["server_cpu_ms_per_request"] for r in runs]))
        for name, runs in rounds.items()
    }
    print(
        f"server CPU time per request (median): {cpu['micro-batched']:.0f} ms micro-batched, "
        f"{cpu['one at a time']:.0f} ms one at a time "
        f"(micro-batching does {cpu['one at a time'] / cpu['micro-batched']:.2f}x less work a request)"
    )
    if args.onnx:
        _onnx_summary(rounds, cpu)
    print(json.dumps({"args": vars(args), "rounds": rounds, "gains": gains}))
    failed = [r for runs in rounds.values() for r in runs if r["failed"]]
    if failed:
        sys.exit("some requests failed: " + "; ".join(str(r["first_failure"]) for r in failed))


if __name__ == "__main__":
    main()
