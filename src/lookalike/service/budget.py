"""The server's memory budget for decoded images, counted in pixels (width x height from the image
header, before anything is decoded).

Three limits (settings, named in the 413 answers): ``max_image_pixels`` per image (the
decompression-bomb guard), ``max_request_pixels`` per request (all images of a batch together) and
``max_server_pixels`` for every request in flight at once. A request whose images fit its own limit
but not what is left of the server's waits its turn; one that could never fit is refused. A decoded
picture takes about 4 bytes a pixel (plus as much again while it is converted to RGB), so the default
server budget of 96 M pixels bounds decoded images to well under 1 GB.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["PixelBudget", "return_freed_images_to_the_os"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_freed_images_to_the_os(threshold: int = 1 << 20) -> bool:
    """Make glibc allocate blocks of ``threshold`` bytes or more with mmap, so that a decoded image's
    memory goes back to the operating system when it is freed. glibc otherwise raises the threshold
    after the first large free (up to 32 MB), and PIL's 16 MB image blocks then stay in the heap of the
    thread that decoded them: the server's RSS grows by hundreds of MB after a few large images. True
    when set (glibc); elsewhere nothing changes."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


class PixelBudget:
    """An asyncio counting budget of pixels: ``async with budget.hold(n): ...``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity}: expected a positive number of pixels")
        self.capacity = int(capacity)
        self.in_use = 0
        self.peak = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        """Wait until ``pixels`` fit, hold them for the block, give them back after it.
        ValueError when ``pixels`` exceeds the whole capacity (it would never fit)."""
        if pixels > self.capacity:
            raise ValueError(f"{pixels} pixels can never fit the server's budget of {self.capacity}")
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_use + pixels <= self.capacity)
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            async with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()
