"""``POST /items``, ``DELETE /items/{id}`` (with the API key) and ``GET /items/{id}/thumbnail``.

Ids and metadata follow the gallery's one id rule and metadata rule
(:mod:`lookalike.gallery.items`), checked before anything is embedded or stored.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from fastapi.responses import Response

from lookalike.gallery.items import check_id, check_metadata
from lookalike.service.dependencies import get_state, require_key
from lookalike.service.images import UploadError
from lookalike.service.responses import error_responses, thumbnail_url
from lookalike.service.schemas import DeleteResponse, ItemResponse
from lookalike.service.state import ServiceState
from lookalike.service.uploads import decoded_images, read_uploads

__all__ = ["parse_metadata", "router"]

router = APIRouter()
_MAX_LABEL = 200


def parse_metadata(text: str | None) -> dict[str, Any]:
    """The ``metadata`` form field: a JSON object following the metadata rule; 422 otherwise."""
    if text is None or not text.strip():
        return {}
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise HTTPException(
            422, f'metadata is not valid JSON ({err}); send an object like {{"sku": "A12"}}'
        ) from None
    if not isinstance(meta, dict):
        raise HTTPException(422, f"metadata must be a JSON object, got {type(meta).__name__}")
    try:
        return check_metadata(meta)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None


@router.post(
    "/items",
    status_code=201,
    response_model=ItemResponse,
    responses=error_responses(401, 403, 409, 413, 415, 422),
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
    meta = parse_metadata(metadata)
    if id is not None:
        try:
            check_id(id)
        except ValueError as err:
            raise HTTPException(422, f"{err} (or leave it out for a generated one)") from None
    item_id = id or uuid.uuid4().hex
    probed = await read_uploads([image], state)
    async with decoded_images(probed, state) as (decoded,):
        if isinstance(decoded, UploadError):
            raise HTTPException(decoded.status, decoded.message)
        size = await anyio.to_thread.run_sync(state.add, decoded, label, item_id, meta)
    return {
        "id": item_id,
        "label": label,
        "metadata": meta,
        "thumbnail": thumbnail_url(item_id),
        "gallery_size": size,
    }


@router.delete(
    "/items/{item_id:path}",
    response_model=DeleteResponse,
    responses=error_responses(401, 403, 404),
    dependencies=[Depends(require_key)],
    summary="Remove an item from the gallery (needs X-API-Key)",
)
async def delete_item(item_id: str, state: ServiceState = Depends(get_state)) -> dict[str, Any]:
    size = await anyio.to_thread.run_sync(state.remove, item_id)
    return {"removed": item_id, "gallery_size": size}


@router.get(
    "/items/{item_id:path}/thumbnail",
    name="thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(404)},
    summary="A PNG thumbnail of a gallery item's image",
)
async def thumbnail(item_id: str, state: ServiceState = Depends(get_state)) -> Response:
    path = await anyio.to_thread.run_sync(state.image_path, item_id)
    try:
        png = await anyio.to_thread.run_sync(state.thumbnail_png, path)
    except (OSError, UploadError):
        raise HTTPException(404, f"the image of item {item_id!r} cannot be read") from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})
