"""Micro-batching: concurrent requests share one forward pass.

Each request submits its images and awaits their embeddings. One worker task takes the first waiting
request, keeps collecting for ``window_ms`` (or until ``max_batch_size`` images), runs the model once
on all of them in a worker thread (off the event loop), and hands every request its own rows.
Requests that arrive while a forward pass runs wait in the queue and form the next batch: nothing
is dropped. ``max_batch_size=1`` embeds one request at a time (the baseline the benchmark compares).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["BatchStats", "MicroBatcher"]

T = TypeVar("T")


@dataclass
class BatchStats:
    """Counters since start: forward passes run, items embedded, requests answered, largest batch."""

    batches: int = 0
    items: int = 0
    requests: int = 0
    largest_batch: int = 0


@dataclass
class _Job(Generic[T]):
    items: list[T]
    future: asyncio.Future


class MicroBatcher(Generic[T]):
    """Batch calls of ``fn(items) -> rows`` (one row per item, e.g. an (N, D) array) across requests.

    ``on_batch(n_items, n_requests, seconds)`` is called after each forward pass (for metrics).
    Start it inside the running event loop (``await start()``), ``await stop()`` at shutdown.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[Any]],
        *,
        max_batch_size: int = 32,
        window_ms: float = 5.0,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size}: expected at least 1")
        if window_ms < 0:
            raise ValueError(f"window_ms={window_ms}: expected 0 or more milliseconds")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.window_s = window_ms / 1000.0
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job[T]] | None = None
        self._held: _Job[T] | None = None  # a job that did not fit the last batch; goes first next time
        self._inflight: list[_Job[T]] = []  # the jobs of the forward pass now running
        self._worker: asyncio.Task | None = None
        # One thread: forward passes never overlap (the model uses its own intra-op threads).
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def start(self) -> None:
        if self.running:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-embed")
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="lookalike-microbatcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting get a RuntimeError (the server is shutting down)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        pending = [*self._inflight, *([self._held] if self._held is not None else [])]
        self._held, self._inflight = None, []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, items: Sequence[T]) -> list[Any]:
        """The rows of ``fn`` for ``items``, in order, computed in a shared batch."""
        if not self.running or self._queue is None:
            raise RuntimeError("the micro-batcher is not running: await start() inside the event loop first")
        items = list(items)
        if not items:
            return []
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(items, future))
        return await future

    async def _next_job(self) -> _Job[T]:
        if self._held is not None:
            job, self._held = self._held, None
            return job
        assert self._queue is not None
        return await self._queue.get()

    async def _collect(self) -> list[_Job[T]]:
        """The first live job, then others until the window closes or the batch is full."""
        assert self._queue is not None
        first = await self._next_job()
        while first.future.done():  # the client went away before its turn
            first = await self._next_job()
        jobs, size = [first], len(first.items)
        deadline = time.monotonic() + self.window_s
        while size < self.max_batch_size:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if job.future.done():
                continue
            if size + len(job.items) > self.max_batch_size:
                self._held = job
                break
            jobs.append(job)
            size += len(job.items)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = self._inflight = await self._collect()
            flat = [item for job in jobs for item in job.items]
            started = time.perf_counter()
            try:
                rows = await loop.run_in_executor(self._executor, self.fn, flat)
                if len(rows) != len(flat):
                    raise RuntimeError(
                        f"the batched function returned {len(rows)} rows for {len(flat)} items"
                    )
            except Exception as err:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(err)
                self._inflight = []
                continue
            seconds = time.perf_counter() - started
            self.stats.batches += 1
            self.stats.items += len(flat)
            self.stats.requests += len(jobs)
            self.stats.largest_batch = max(self.stats.largest_batch, len(flat))
            if self.on_batch is not None:
                self.on_batch(len(flat), len(jobs), seconds)
            start = 0
            for job in jobs:
                end = start + len(job.items)
                if not job.future.done():
                    job.future.set_result(rows[start:end])
                start = end
            self._inflight = []
