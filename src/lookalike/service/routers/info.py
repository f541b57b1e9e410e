"""What the server is: the web page (``GET /``), ``GET /health`` and ``GET /metrics``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lookalike._version import __version__
from lookalike.service.dependencies import get_state
from lookalike.service.schemas import HealthResponse
from lookalike.service.state import ServiceState

__all__ = ["STATIC_DIR", "router"]

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/health", response_model=HealthResponse, summary="Model, gallery and threshold in use")
async def health(state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    size = await anyio.to_thread.run_sync(state.gallery_size)  # first: it moves to a newer generation
    model = state.matcher.model
    header = state.matcher.gallery.header
    return {
        "status": "ok",
        "version": __version__,
        "model_fingerprint": model.fingerprint,
        "model_source": model.source,
        "distance": header.distance,
        "embed_dim": int(header.embed_dim),
        "gallery_size": size,
        "threshold": state.matcher.threshold,
        "writes_enabled": state.settings.writes_enabled,
        "default_k": state.settings.k,
        "max_k": state.settings.max_k,
        "max_upload_bytes": state.settings.max_upload_bytes,
    }


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text format)")
def prometheus(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
