"""What the routes share, and the gallery operations they run: every gallery read and write takes
one lock, so a search never sees half an ``add``."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import HTTPException
from PIL import Image

from lookalike._io import atomic_path
from lookalike.service.batching import MicroBatcher
from lookalike.service.images import render_thumbnail
from lookalike.service.metrics import ServiceMetrics
from lookalike.service.settings import ServiceSettings

if TYPE_CHECKING:
    from lookalike.gallery.matcher import Matcher, SearchResult

__all__ = ["ServiceState"]


@dataclass
class ServiceState:
    """The matcher, the micro-batcher, the gallery lock, the metrics and the uploads folder.

    Methods run in worker threads (they block on the lock and the disk); HTTP errors are raised as
    ``HTTPException`` with a message naming the id.
    """

    settings: ServiceSettings
    matcher: Matcher
    batcher: MicroBatcher
    metrics: ServiceMetrics
    uploads_dir: Path | None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gallery_size(self) -> int:
        with self.lock:
            return len(self.matcher.gallery)

    def item_row(self, item_id: str) -> dict[str, Any]:
        """The gallery's row for ``item_id`` (looked up, never used as a path); 404 when unknown."""
        with self.lock:
            try:
                frame = self.matcher.gallery.items([item_id])
            except KeyError:
                raise HTTPException(404, f"no item with id {item_id!r} in the gallery") from None
        if len(frame) != 1:
            raise HTTPException(404, f"no item with id {item_id!r} in the gallery")
        return frame.iloc[0].to_dict()

    def search(self, embeddings: np.ndarray, k: int, names: Sequence[str]) -> list[SearchResult]:
        """Search (Q, D) query embeddings made by the batcher."""
        with self.lock:
            return self.matcher.search_embeddings(embeddings, k, names=list(names))

    def add(self, image: Image.Image, label: str, item_id: str, meta: dict) -> int:
        """Store the image file (under a fresh name, never the id) and add it; undo the file on failure."""
        stored: Path | None = None
        with self.lock:
            try:
                self.matcher.gallery.items([item_id])
            except KeyError:
                pass
            else:
                raise HTTPException(
                    409, f"an item with id {item_id!r} is already in the gallery; remove it first"
                )
            if self.uploads_dir is not None:
                stored = (self.uploads_dir / f"{uuid.uuid4().hex}.png").resolve()
                with atomic_path(stored, suffix=".png") as tmp:
                    image.save(tmp, format="PNG")
            try:
                self.matcher.add(
                    [image],
                    [label],
                    ids=[item_id],
                    metadata=[meta] if meta else None,
                    paths=[str(stored) if stored is not None else None],
                )
            except (ValueError, KeyError) as err:
                if stored is not None:
                    stored.unlink(missing_ok=True)
                raise HTTPException(422, f"the item was not added: {err}") from None
            except BaseException:
                if stored is not None:
                    stored.unlink(missing_ok=True)
                raise
            return len(self.matcher.gallery)

    def remove(self, item_id: str) -> int:
        """Remove the item; its image file goes too when the service stored it (in the uploads folder)."""
        row = self.item_row(item_id)
        with self.lock:
            try:
                self.matcher.remove([item_id])
            except KeyError:
                raise HTTPException(404, f"no item with id {item_id!r} in the gallery") from None
            size = len(self.matcher.gallery)
        path = row.get("path")
        if self.uploads_dir is not None and isinstance(path, str) and path:
            file = Path(path).resolve()
            if file.parent == self.uploads_dir.resolve():
                file.unlink(missing_ok=True)
        return size

    def image_path(self, item_id: str) -> Path:
        """The item's recorded source path: a regular file (inside ``image_roots`` when set), or 404. The
        path comes from the gallery's own item table, looked up by id; nothing from the request is ever
        joined into it, and only re-encoded pixels are sent, never the file's bytes."""
        path = self.item_row(item_id).get("path")
        if not isinstance(path, str) or not path:
            raise HTTPException(404, f"item {item_id!r} has no source image")
        try:
            resolved = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            raise HTTPException(404, f"the image of item {item_id!r} is missing") from None
        if not resolved.is_file():
            raise HTTPException(404, f"the image of item {item_id!r} is missing")
        roots = self.settings.image_roots
        if roots is not None:
            allowed = [Path(r).resolve() for r in roots]
            if self.uploads_dir is not None:
                allowed.append(self.uploads_dir.resolve())
            if not any(resolved.is_relative_to(root) for root in allowed):
                raise HTTPException(
                    404, f"the image of item {item_id!r} is outside the folders this server serves"
                )
        return resolved

    def thumbnail_png(self, path: Path) -> bytes:
        stat = path.stat()
        return _cached_thumbnail(
            str(path),
            stat.st_mtime_ns,
            stat.st_size,
            self.settings.thumbnail_size,
            self.settings.max_image_pixels,
        )


@functools.lru_cache(maxsize=1024)
def _cached_thumbnail(path: str, mtime_ns: int, size_bytes: int, side: int, max_pixels: int) -> bytes:
    del mtime_ns, size_bytes  # cache keys only: a changed file is rendered again
    return render_thumbnail(Path(path), size=side, max_pixels=max_pixels)
