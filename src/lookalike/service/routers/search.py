"""``POST /search`` and ``POST /search/batch``: images in, nearest gallery items and decisions out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from PIL import Image

from lookalike.service.dependencies import get_state
from lookalike.service.images import UploadError
from lookalike.service.responses import error_json, error_responses, result_json
from lookalike.service.schemas import BatchSearchResponse, SearchResponse
from lookalike.service.settings import ServiceSettings
from lookalike.service.state import ServiceState
from lookalike.service.uploads import decoded_images, read_uploads

if TYPE_CHECKING:
    from lookalike.gallery.matcher import SearchResult

__all__ = ["check_k", "router", "search_images"]

router = APIRouter()


def check_k(k: int | None, settings: ServiceSettings) -> int:
    """The k a request asked for (the server's default when None); 422 outside 1..max_k."""
    if k is None:
        return settings.k
    if not 1 <= k <= settings.max_k:
        raise HTTPException(422, f"k={k}: expected 1 to {settings.max_k} neighbours")
    return k


async def search_images(
    state: ServiceState, images: Sequence[Image.Image], names: Sequence[str], k: int
) -> list[SearchResult]:
    """Embed ``images`` through the micro-batcher, then search the gallery."""
    if not images:
        return []
    rows = await state.batcher.submit(list(images))
    embeddings = np.stack(rows).astype(np.float32, copy=False)
    return await anyio.to_thread.run_sync(state.search, embeddings, k, names)


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=error_responses(413, 415, 422),
    summary="The nearest gallery items of one image, and the match decision",
)
async def search(
    image: UploadFile = File(..., description="The query image (JPEG, PNG, WebP, ...)."),
    k: int | None = Form(None, description="Neighbours to return (default: the server's k)."),
    state: ServiceState = Depends(get_state),
) -> dict[str, Any]:
    k = check_k(k, state.settings)
    probed = await read_uploads([image], state)
    async with decoded_images(probed, state) as (decoded,):
        if isinstance(decoded, UploadError):
            raise HTTPException(decoded.status, decoded.message)
        (result,) = await search_images(state, [decoded], [image.filename or "image"], k)
    return result_json(result, k)


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    responses=error_responses(413, 422),
    summary="Search several images in one request",
    description='An image that cannot be used gets decision "error" with the reason; the others still '
    "answer. The images together must fit the server's max_request_pixels.",
)
async def search_batch(
    images: list[UploadFile] = File(..., description="The query images."),
    k: int | None = Form(None, description="Neighbours to return per image."),
    state: ServiceState = Depends(get_state),
) -> dict[str, Any]:
    k = check_k(k, state.settings)
    if len(images) > state.settings.max_batch_images:
        raise HTTPException(
            413,
            f"{len(images)} images in one request; at most {state.settings.max_batch_images} are accepted "
            "(max_batch_images): split them over several requests",
        )
    names = [upload.filename or f"image {i}" for i, upload in enumerate(images)]
    probed = await read_uploads(images, state)
    async with decoded_images(probed, state) as decoded:
        good = [i for i, d in enumerate(decoded) if not isinstance(d, UploadError)]
        found = await search_images(state, [decoded[i] for i in good], [names[i] for i in good], k)
    by_position = dict(zip(good, found, strict=True))
    threshold = state.matcher.threshold
    return {
        "results": [
            error_json(names[i], d.message, threshold, k)
            if isinstance(d, UploadError)
            else result_json(by_position[i], k)
            for i, d in enumerate(decoded)
        ]
    }
