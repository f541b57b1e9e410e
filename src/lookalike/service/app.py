"""The HTTP search service: ``create_app(settings)`` builds the FastAPI app.

The model and the gallery load once, at start-up (the lifespan), unless a ready ``Matcher`` is passed
in (tests, the ``serve`` command that opens it first to report errors in one line). The routes live
in :mod:`lookalike.service.routers`, what they depend on in :mod:`lookalike.service.dependencies`
(overridable in tests through ``app.dependency_overrides``). Embedding runs in a worker thread through
the :class:`~lookalike.service.batching.MicroBatcher`; gallery reads and writes take one lock, so a
search never sees half an ``add``; decoded images are held within a pixel budget
(:mod:`lookalike.service.budget`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from lookalike._version import __version__
from lookalike.service.batching import MicroBatcher
from lookalike.service.body_limit import BodyLimit
from lookalike.service.budget import PixelBudget, return_freed_images_to_the_os
from lookalike.service.metrics import ServiceMetrics
from lookalike.service.routers import info_router, items_router, search_router
from lookalike.service.routers.info import STATIC_DIR
from lookalike.service.settings import ServiceSettings
from lookalike.service.state import ServiceState, clean_orphaned_uploads

if TYPE_CHECKING:
    from lookalike.gallery.matcher import Matcher

__all__ = ["create_app"]


def create_app(settings: ServiceSettings, *, matcher: Matcher | None = None) -> FastAPI:
    """The FastAPI app of the search service and its web page.

    With ``matcher`` (an open :class:`~lookalike.gallery.Matcher`) the app uses it as it is and leaves
    it open at shutdown; without one it opens ``settings.gallery`` at start-up (writable when an API
    key is set) and closes it at shutdown.
    """
    metrics = ServiceMetrics()
    app = FastAPI(
        title="lookalike",
        version=__version__,
        summary="Which known object is this, if any? Upload an image, get its nearest gallery items "
        "and a match / no-match decision.",
        lifespan=_lifespan(settings, matcher, metrics),
    )
    app.state.service = None
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.middleware("http")(metrics.middleware)  # outermost: refused bodies are counted too
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in (info_router, search_router, items_router):
        app.include_router(router)
    return app


def _lifespan(
    settings: ServiceSettings, matcher: Matcher | None, metrics: ServiceMetrics
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Start-up: open the model and gallery (unless given), clean orphaned uploads, start the batcher."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = matcher is None
        return_freed_images_to_the_os()
        m = matcher if matcher is not None else await anyio.to_thread.run_sync(open_matcher, settings)
        try:
            state = _state(settings, m, metrics)
            await state.batcher.start()
            app.state.service = state
            try:
                yield
            finally:
                await state.batcher.stop()
                app.state.service = None
        finally:
            if own:
                m.close()

    return lifespan


def _state(settings: ServiceSettings, matcher: Matcher, metrics: ServiceMetrics) -> ServiceState:
    batcher = MicroBatcher(
        matcher.embed,
        max_batch_size=settings.max_batch_size,
        window_ms=settings.batch_window_ms,
        on_batch=metrics.observe_batch,
    )
    uploads = settings.resolved_uploads_dir()
    if settings.writes_enabled:  # the one writer: images of adds that never committed go now
        clean_orphaned_uploads(uploads, matcher)
    state = ServiceState(
        settings=settings,
        matcher=matcher,
        batcher=batcher,
        metrics=metrics,
        uploads_dir=uploads,
        budget=PixelBudget(settings.max_server_pixels),
    )
    metrics.gallery_items.set_function(state.gallery_size)
    return state


def open_matcher(settings: ServiceSettings) -> Matcher:
    """The matcher the settings name (gallery, model, device), writable when writes are enabled."""
    from lookalike.gallery.matcher import Matcher

    if settings.gallery is None:
        raise ValueError("no gallery given: set ServiceSettings(gallery=...) or LOOKALIKE_GALLERY")
    return Matcher.open(
        settings.gallery,
        checkpoint=settings.checkpoint,
        backbone=settings.backbone,
        weights=settings.weights,
        onnx=settings.onnx,
        device=settings.device,
        writable=settings.writes_enabled,
        threshold=settings.threshold,
    )
