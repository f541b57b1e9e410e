"""The HTTP search service: ``create_app(settings)`` builds the FastAPI app.

The model and the gallery load once, at start-up (the lifespan), unless a ready ``Matcher`` is passed
in (tests, the ``serve`` command that opens it first to report errors in one line). Embedding runs in
a worker thread through the :class:`~lookalike.service.batching.MicroBatcher`; gallery reads and
writes take one lock, so a search never sees half an ``add``.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import numpy as np
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import lookalike
from lookalike.service.batching import MicroBatcher
from lookalike.service.body_limit import BodyLimit
from lookalike.service.images import UploadError, decode_image
from lookalike.service.metrics import ServiceMetrics
from lookalike.service.schemas import (
    BatchSearchResponse,
    DeleteResponse,
    ErrorResponse,
    HealthResponse,
    ItemResponse,
    SearchResponse,
)
from lookalike.service.settings import ServiceSettings
from lookalike.service.state import ServiceState

if TYPE_CHECKING:
    from lookalike.gallery.matcher import Matcher, SearchResult

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).parent / "static"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MAX_LABEL = 200


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


def create_app(settings: ServiceSettings, *, matcher: Matcher | None = None) -> FastAPI:
    """The FastAPI app of the search service and its web page.

    With ``matcher`` (an open :class:`~lookalike.gallery.Matcher`) the app uses it as it is and leaves
    it open at shutdown; without one it opens ``settings.gallery`` at start-up (writable when an API
    key is set) and closes it at shutdown.
    """
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = matcher is None
        m = matcher if matcher is not None else await anyio.to_thread.run_sync(_open_matcher, settings)
        batcher = MicroBatcher(
            m.embed,
            max_batch_size=settings.max_batch_size,
            window_ms=settings.batch_window_ms,
            on_batch=metrics.observe_batch,
        )
        uploads = settings.resolved_uploads_dir()
        state = ServiceState(
            settings=settings, matcher=m, batcher=batcher, metrics=metrics, uploads_dir=uploads
        )
        metrics.gallery_items.set_function(state.gallery_size)
        await batcher.start()
        app.state.service = state
        try:
            yield
        finally:
            await batcher.stop()
            app.state.service = None
            if own:
                m.close()

    app = FastAPI(
        title="lookalike",
        version=lookalike.__version__,
        summary="Which known object is this, if any? Upload an image, get its nearest gallery items "
        "and a match / no-match decision.",
        lifespan=lifespan,
    )
    app.state.service = None
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.middleware("http")(metrics.middleware)  # outermost: refused bodies are counted too
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def get_state(request: Request) -> ServiceState:
        state = request.app.state.service
        if state is None:
            raise HTTPException(503, "the service is starting or stopping; try again in a moment")
        return state

    def require_key(
        state: ServiceState = Depends(get_state),
        x_api_key: str | None = Header(None, description="The server's LOOKALIKE_API_KEY."),
    ) -> None:
        expected = state.settings.api_key
        if expected is None:
            raise HTTPException(
                403,
                "adding and removing items is disabled on this server: no API key is configured; "
                "start it with LOOKALIKE_API_KEY set to enable them",
            )
        if not x_api_key:
            raise HTTPException(
                401, "this request changes the gallery: send the API key in the X-API-Key header"
            )
        if not secrets.compare_digest(x_api_key.encode(), expected.get_secret_value().encode()):
            raise HTTPException(401, "wrong API key in the X-API-Key header; nothing was changed")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.post(
        "/search",
        response_model=SearchResponse,
        responses=_error_responses(413, 415, 422),
        summary="The nearest gallery items of one image, and the match decision",
    )
    async def search(
        image: UploadFile = File(..., description="The query image (JPEG, PNG, WebP, ...)."),
        k: int | None = Form(None, description="Neighbours to return (default: the server's k)."),
        state: ServiceState = Depends(get_state),
    ) -> dict[str, Any]:
        k = _check_k(k, state.settings)
        name = image.filename or "image"
        try:
            decoded = await _decode_upload(image, state.settings)
        except UploadError as err:
            raise HTTPException(err.status, err.message) from None
        (result,) = await _search_images(state, [decoded], [name], k)
        return _result_json(result, k)

    @app.post(
        "/search/batch",
        response_model=BatchSearchResponse,
        responses=_error_responses(413, 422),
        summary="Search several images in one request",
        description='An image that cannot be used gets decision "error" with the reason; the others '
        "still answer.",
    )
    async def search_batch(
        images: list[UploadFile] = File(..., description="The query images."),
        k: int | None = Form(None, description="Neighbours to return per image."),
        state: ServiceState = Depends(get_state),
    ) -> dict[str, Any]:
        k = _check_k(k, state.settings)
        if len(images) > state.settings.max_batch_images:
            raise HTTPException(
                413,
                f"{len(images)} images in one request; at most {state.settings.max_batch_images} are "
                "accepted: split them over several requests",
            )
        names = [upload.filename or f"image {i}" for i, upload in enumerate(images)]
        decoded: list[Image.Image | UploadError] = []
        for upload in images:
            try:
                decoded.append(await _decode_upload(upload, state.settings))
            except UploadError as err:
                decoded.append(err)
        good = [i for i, d in enumerate(decoded) if not isinstance(d, UploadError)]
        found = await _search_images(state, [decoded[i] for i in good], [names[i] for i in good], k)
        by_position = dict(zip(good, found, strict=True))
        results = []
        for i, d in enumerate(decoded):
            if isinstance(d, UploadError):
                results.append(_error_json(names[i], d.message, state.matcher.threshold, k))
            else:
                results.append(_result_json(by_position[i], k))
        return {"results": results}

    @app.post(
        "/items",
        status_code=201,
        response_model=ItemResponse,
        responses=_error_responses(401, 403, 409, 413, 415, 422),
        dependencies=[Depends(require_key)],
        summary="Add an image to the gallery under a label (needs X-API-Key)",
    )
    async def add_item(
        image: UploadFile = File(..., description="The image to add."),
        label: str = Form(..., description="Its label (the identity it shows)."),
        metadata: str | None = Form(None, description='A JSON object of extra fields, e.g. {"sku": "A12"}.'),
        id: str | None = Form(None, description="Its id (default: a new random id)."),
        state: ServiceState = Depends(get_state),
    ) -> dict[str, Any]:
        label = label.strip()
        if not label or len(label) > _MAX_LABEL:
            raise HTTPException(422, f"label must be 1 to {_MAX_LABEL} characters, got {len(label)}")
        meta = _parse_metadata(metadata)
        if id is not None and not _ID_PATTERN.match(id):
            raise HTTPException(
                422,
                f"id {id!r} is not valid: use 1-128 letters, digits, '.', '_', ':' or '-', starting with a "
                "letter or digit (or leave it out for a generated one)",
            )
        item_id = id or uuid.uuid4().hex
        try:
            decoded = await _decode_upload(image, state.settings)
        except UploadError as err:
            raise HTTPException(err.status, err.message) from None
        size = await anyio.to_thread.run_sync(state.add, decoded, label, item_id, meta)
        return {
            "id": item_id,
            "label": label,
            "metadata": meta,
            "thumbnail": _thumbnail_url(item_id),
            "gallery_size": size,
        }

    @app.delete(
        "/items/{item_id:path}",
        response_model=DeleteResponse,
        responses=_error_responses(401, 403, 404),
        dependencies=[Depends(require_key)],
        summary="Remove an item from the gallery (needs X-API-Key)",
    )
    async def delete_item(item_id: str, state: ServiceState = Depends(get_state)) -> dict[str, Any]:
        size = await anyio.to_thread.run_sync(state.remove, item_id)
        return {"removed": item_id, "gallery_size": size}

    @app.get(
        "/items/{item_id:path}/thumbnail",
        name="thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, **_error_responses(404)},
        summary="A PNG thumbnail of a gallery item's image",
    )
    async def thumbnail(item_id: str, state: ServiceState = Depends(get_state)) -> Response:
        path = await anyio.to_thread.run_sync(state.image_path, item_id)
        try:
            png = await anyio.to_thread.run_sync(state.thumbnail_png, path)
        except (OSError, UploadError):
            raise HTTPException(404, f"the image of item {item_id!r} cannot be read") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    @app.get("/health", response_model=HealthResponse, summary="Model, gallery and threshold in use")
    async def health(state: ServiceState = Depends(get_state)) -> dict[str, Any]:
        model = state.matcher.model
        header = state.matcher.gallery.header
        return {
            "status": "ok",
            "version": lookalike.__version__,
            "model_fingerprint": model.fingerprint,
            "model_source": model.source,
            "distance": header.distance,
            "embed_dim": int(header.embed_dim),
            "gallery_size": await anyio.to_thread.run_sync(state.gallery_size),
            "threshold": state.matcher.threshold,
            "writes_enabled": state.settings.writes_enabled,
            "default_k": state.settings.k,
            "max_k": state.settings.max_k,
            "max_upload_bytes": state.settings.max_upload_bytes,
        }

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics (text format)")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _open_matcher(settings: ServiceSettings) -> Matcher:
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


def _check_k(k: int | None, settings: ServiceSettings) -> int:
    if k is None:
        return settings.k
    if not 1 <= k <= settings.max_k:
        raise HTTPException(422, f"k={k}: expected 1 to {settings.max_k} neighbours")
    return k


async def _decode_upload(upload: UploadFile, settings: ServiceSettings) -> Image.Image:
    name = upload.filename or "image"
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise UploadError(
            413,
            f"{name}: the file is {upload.size / 2**20:.1f} MB, over the upload limit of "
            f"{settings.max_upload_mb:.1f} MB",
        )
    data = await upload.read(settings.max_upload_bytes + 1)
    return await anyio.to_thread.run_sync(
        lambda: decode_image(
            data, name=name, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels
        )
    )


async def _search_images(
    state: ServiceState, images: Sequence[Image.Image], names: Sequence[str], k: int
) -> list[SearchResult]:
    if not images:
        return []
    rows = await state.batcher.submit(list(images))
    embeddings = np.stack(rows).astype(np.float32, copy=False)

    return await anyio.to_thread.run_sync(state.search, embeddings, k, names)


def _thumbnail_url(item_id: str) -> str:
    """URL path of an item's thumbnail; the id is percent-encoded (ids may hold any character)."""
    return f"/items/{quote(str(item_id), safe='')}/thumbnail"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _result_json(result: SearchResult, k: int) -> dict[str, Any]:
    """A SearchResult as the API answers it: source paths left out, thumbnail URLs added."""
    out = result.to_dict()
    out["k"] = k
    out["neighbours"] = [
        {
            "rank": n["rank"],
            "id": n["id"],
            "label": n["label"],
            "distance": _plain(n["distance"]),
            "thumbnail": _thumbnail_url(n["id"]),
            # the item table has one column per metadata key of any item: leave out keys it lacks
            "metadata": {key: v for key, v in n["metadata"].items() if v is not None},
        }
        for n in out["neighbours"]
    ]
    out.pop("path", None)
    return out


def _error_json(name: str, message: str, threshold: float | None, k: int) -> dict[str, Any]:
    return {
        "query": name,
        "decision": "error",
        "label": None,
        "distance": None,
        "threshold": threshold,
        "margin": None,
        "error": message,
        "k": k,
        "neighbours": [],
    }


def _parse_metadata(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise HTTPException(
            422, f'metadata is not valid JSON ({err}); send an object like {{"sku": "A12"}}'
        ) from None
    if not isinstance(meta, dict):
        raise HTTPException(422, f"metadata must be a JSON object, got {type(meta).__name__}")
    bad = sorted(set(meta) & {"id", "label", "path"})
    if bad:
        raise HTTPException(422, f"metadata keys {bad} are reserved (id, label, path); rename them")
    for key, value in meta.items():
        if not isinstance(value, (str, int, float, bool)):
            raise HTTPException(
                422,
                f"metadata[{key!r}] is a {type(value).__name__}; values must be strings, numbers or booleans",
            )
    return meta
