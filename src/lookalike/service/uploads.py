"""Reading a request's uploaded images within the memory budget.

Each upload is read (at most ``max_upload_bytes``), its header probed for width x height without
decoding, and checked against the per-image limits (``max_image_pixels``; ``max_resized_pixels``,
the size the model's resize would give it, so a 1-pixel-high strip that would be scaled up to
gigapixels is refused before it costs anything). The request's images together must fit
``max_request_pixels``; then they are decoded while holding their pixels of the server's budget
(:mod:`lookalike.service.budget`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
from fastapi import HTTPException, UploadFile
from PIL import Image

from lookalike.service.images import UploadError, decode_image, probe_image
from lookalike.service.state import ServiceState

__all__ = ["Probed", "decoded_images", "read_uploads"]


@dataclass(frozen=True)
class Probed:
    """An upload read into memory and checked from its header: ``pixels`` = width x height."""

    name: str
    data: bytes
    pixels: int


async def read_uploads(uploads: Sequence[UploadFile], state: ServiceState) -> list[Probed | UploadError]:
    """Read and probe every upload; one that cannot be used becomes its UploadError. Raises 413 when
    the usable ones together are over ``max_request_pixels``."""
    settings = state.settings
    out: list[Probed | UploadError] = []
    for i, upload in enumerate(uploads):
        name = upload.filename or (f"image {i}" if len(uploads) > 1 else "image")
        try:
            out.append(await _read_one(upload, name, state))
        except UploadError as err:
            out.append(err)
    total = sum(p.pixels for p in out if isinstance(p, Probed))
    if total > settings.max_request_pixels:
        raise HTTPException(
            413,
            f"the images of this request have {total} pixels together, over the server's max_request_pixels "
            f"of {settings.max_request_pixels}; send fewer or smaller images per request",
        )
    return out


async def _read_one(upload: UploadFile, name: str, state: ServiceState) -> Probed:
    settings = state.settings
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise UploadError(
            413,
            f"{name}: the file is {upload.size / 2**20:.1f} MB, over the upload limit of "
            f"{settings.max_upload_mb:.1f} MB (max_upload_mb)",
        )
    data = await upload.read(settings.max_upload_bytes + 1)
    pixels = probe_image(
        data,
        name=name,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_image_pixels,
        max_resized_pixels=settings.max_resized_pixels,
        preprocessing=state.preprocessing,
    )
    return Probed(name, data, pixels)


@contextlib.asynccontextmanager
async def decoded_images(
    probed: Sequence[Probed | UploadError], state: ServiceState
) -> AsyncIterator[list[Image.Image | UploadError]]:
    """Decode the usable uploads while holding their pixels of the server's budget (released when the
    block ends, after the images were embedded)."""
    settings = state.settings
    total = sum(p.pixels for p in probed if isinstance(p, Probed))
    async with state.budget.hold(total):
        out: list[Image.Image | UploadError] = []
        for p in probed:
            if isinstance(p, UploadError):
                out.append(p)
                continue
            try:
                out.append(
                    await anyio.to_thread.run_sync(
                        lambda p=p: decode_image(
                            p.data,
                            name=p.name,
                            max_bytes=settings.max_upload_bytes,
                            max_pixels=settings.max_image_pixels,
                        )
                    )
                )
            except UploadError as err:
                out.append(err)
        yield out
