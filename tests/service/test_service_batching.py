"""Micro-batching: concurrent requests share forward passes, get the same answers, and none is lost."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from lookalike.service import MicroBatcher, ServiceSettings, create_app


class Recorder:
    """A stand-in for ``Matcher.embed``: row i is [x, 2x] for item x; records each call's items."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.calls: list[list] = []
        self.threads: set[int] = set()
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, items: list) -> np.ndarray:
        self.calls.append(list(items))
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        if self.fail_on in items:
            raise ValueError(f"cannot embed {self.fail_on}")
        return np.array([[x, 2 * x] for x in items], dtype=np.float32)


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows():
    async def main():
        fn = Recorder(delay=0.02)
        batcher = MicroBatcher(fn, max_batch_size=8, window_ms=10)
        await batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit([i]) for i in range(20)))
        finally:
            await batcher.stop()
        return fn, batcher, results

    fn, batcher, results = run(main())
    for i, rows in enumerate(results):
        np.testing.assert_array_equal(np.asarray(rows), [[i, 2 * i]])
    assert sorted(x for call in fn.calls for x in call) == list(range(20))  # each item embedded once
    assert len(fn.calls) < 20 and max(len(c) for c in fn.calls) <= 8
    assert (
        batcher.stats.batches == len(fn.calls) and batcher.stats.requests == 20 and batcher.stats.items == 20
    )


def test_one_at_a_time_when_max_batch_size_is_1():
    async def main():
        fn = Recorder()
        batcher = MicroBatcher(fn, max_batch_size=1, window_ms=10)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(6)))
        await batcher.stop()
        return fn, results

    fn, results = run(main())
    assert [len(c) for c in fn.calls] == [1] * 6
    assert [r[0][0] for r in results] == list(range(6))


def test_multi_image_requests_are_never_split_and_an_oversized_one_runs_alone():
    async def main():
        fn = Recorder(delay=0.01)
        batcher = MicroBatcher(fn, max_batch_size=4, window_ms=20)
        await batcher.start()
        jobs = [[1, 2, 3], [10, 11], [20, 21, 22, 23, 24, 25], [30]]
        results = await asyncio.gather(*(batcher.submit(job) for job in jobs))
        await batcher.stop()
        return fn, jobs, results

    fn, jobs, results = run(main())
    for job, rows in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(np.asarray(rows)[:, 0], job)
    for call in fn.calls:  # a request's items stay together, in order
        for job in jobs:
            inside = [x for x in call if x in job]
            assert inside in ([], job)
    assert [20, 21, 22, 23, 24, 25] in fn.calls
    assert all(len(c) <= 4 for c in fn.calls if c != [20, 21, 22, 23, 24, 25])


def test_a_failing_batch_fails_its_requests_and_the_next_ones_still_answer():
    async def main():
        fn = Recorder(delay=0.01, fail_on=13)
        batcher = MicroBatcher(fn, max_batch_size=16, window_ms=20)
        await batcher.start()
        first = await asyncio.gather(batcher.submit([12]), batcher.submit([13]), return_exceptions=True)
        later = await batcher.submit([14])
        await batcher.stop()
        return first, later

    first, later = run(main())
    assert all(isinstance(r, ValueError) and "cannot embed 13" in str(r) for r in first)
    np.testing.assert_array_equal(np.asarray(later), [[14, 28]])


def test_wrong_row_count_is_an_error_not_a_misassignment():
    async def main():
        batcher = MicroBatcher(lambda items: np.zeros((len(items) + 1, 2)), max_batch_size=4, window_ms=0)
        await batcher.start()
        try:
            await batcher.submit([1, 2])
        finally:
            await batcher.stop()

    with pytest.raises(RuntimeError, match="returned 3 rows for 2 items"):
        run(main())


def test_the_model_runs_off_the_event_loop_and_a_cancelled_request_harms_no_other():
    async def main():
        fn = Recorder(delay=0.1)
        batcher = MicroBatcher(fn, max_batch_size=8, window_ms=0)
        await batcher.start()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.01)  # the first forward pass is running now
        doomed = asyncio.create_task(batcher.submit([2]))
        kept = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0)
        doomed.cancel()
        results = await asyncio.gather(first, kept)
        tick_task.cancel()
        await batcher.stop()
        return fn, results, ticks

    fn, results, ticks = run(main())
    assert threading.get_ident() not in fn.threads
    assert ticks >= 10  # the loop kept running during 0.2 s of forward passes
    assert [r[0][0] for r in results] == [1, 3]
    assert [2] not in fn.calls  # the cancelled request was skipped, not embedded


def test_submit_needs_a_running_batcher_and_stop_fails_waiting_requests():
    async def main():
        fn = Recorder(delay=0.2)
        batcher = MicroBatcher(fn, max_batch_size=1, window_ms=0)
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit([1])
        await batcher.start()
        running = asyncio.create_task(batcher.submit([1]))
        waiting = asyncio.create_task(batcher.submit([2]))
        await asyncio.sleep(0.05)
        await batcher.stop()
        return await asyncio.gather(running, waiting, return_exceptions=True)

    results = run(main())
    assert any(isinstance(r, RuntimeError) and "shutting down" in str(r) for r in results)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch_size=0"):
        MicroBatcher(len, max_batch_size=0)
    with pytest.raises(ValueError, match="window_ms=-1"):
        MicroBatcher(len, window_ms=-1)


def test_concurrent_http_searches_batch_and_answer_like_one_at_a_time(gallery_dir, gallery_case):
    """N concurrent POST /search over the real gallery: fewer forward passes than N, same answers."""
    paths = [p for _, _, p in gallery_case.gallery_images[:6]] + [p for _, p in gallery_case.other_images]
    n = len(paths)

    async def searches(app, concurrent: bool):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

                async def one(path):
                    files = {"image": (path.name, path.read_bytes(), "image/png")}
                    response = await client.post("/search", files=files, data={"k": "4"})
                    assert response.status_code == 200, response.text
                    return response.json()

                if concurrent:
                    results = await asyncio.gather(*(one(p) for p in paths))
                else:
                    results = [await one(p) for p in paths]
            return results, app.state.service.batcher.stats.batches

    batched_app = create_app(ServiceSettings(gallery=str(gallery_dir), batch_window_ms=50, max_batch_size=32))
    batched, batched_passes = run(searches(batched_app, concurrent=True))
    single_app = create_app(ServiceSettings(gallery=str(gallery_dir), max_batch_size=1, batch_window_ms=0))
    single, single_passes = run(searches(single_app, concurrent=False))

    assert single_passes == n and batched_passes < n
    for a, b in zip(batched, single, strict=True):
        assert a["query"] == b["query"] and a["decision"] == b["decision"] and a["label"] == b["label"]
        assert [x["id"] for x in a["neighbours"]] == [x["id"] for x in b["neighbours"]]
        np.testing.assert_allclose(
            [x["distance"] for x in a["neighbours"]], [x["distance"] for x in b["neighbours"]], atol=1e-5
        )
