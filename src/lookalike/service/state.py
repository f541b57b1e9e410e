"""What the routes share, and the gallery operations they run: every gallery read and write takes
one lock, so a search never sees half an ``add``.

A gallery written by another process while the server runs: a read-only server (no API key) moves to
the newest generation the writer published (checked at most every ``refresh_interval_s``), so
``/health`` and ``lookalike index info`` agree; a server with writes enabled holds the gallery's
writer lock, so another writer (``lookalike index add``) is refused with a message naming it. A
gallery rebuilt with another model is not served: requests answer 503 until the server is restarted.
"""

from __future__ import annotations

import functools
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import HTTPException
from PIL import Image

from lookalike._io import atomic_path
from lookalike.data.dataset import to_rgb
from lookalike.service.batching import MicroBatcher
from lookalike.service.budget import PixelBudget
from lookalike.service.images import render_thumbnail
from lookalike.service.metrics import ServiceMetrics
from lookalike.service.settings import ServiceSettings

if TYPE_CHECKING:
    from lookalike.gallery.matcher import Matcher, SearchResult
    from lookalike.models.backbones import Preprocessing

__all__ = ["ServiceState", "clean_orphaned_uploads"]


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
    budget: PixelBudget
    lock: threading.Lock = field(default_factory=threading.Lock)
    _checked_at: float = field(default=float("-inf"))

    @property
    def preprocessing(self) -> Preprocessing | None:
        """How the model prepares images (what :func:`~lookalike.service.images.probe_image` checks)."""
        return getattr(self.matcher.model, "preprocessing", None)

    def refresh(self) -> None:
        """Move to a newer gallery generation another process published (at most every
        ``refresh_interval_s``); 503 when the gallery now holds another model's embeddings."""
        now = time.monotonic()
        if now - self._checked_at < self.settings.refresh_interval_s:
            return
        with self.lock:
            self._checked_at = now
            gallery = self.matcher.gallery
            if not gallery.refresh():
                return
            header, model = gallery.header, self.matcher.model
            if header.model_fingerprint not in (None, model.fingerprint) or header.embed_dim != int(
                model.embedder.embed_dim
            ):
                self._checked_at = float("-inf")  # look again next time: it may be rebuilt back
                raise HTTPException(
                    503,
                    "the gallery was rebuilt with another model while this server ran; restart the server "
                    "so that it loads the gallery's new model",
                )

    def gallery_size(self) -> int:
        self.refresh()
        with self.lock:
            return len(self.matcher.gallery)

    def item_row(self, item_id: str) -> dict[str, Any]:
        """The gallery's row for ``item_id`` (looked up, never used as a path); 404 when unknown."""
        self.refresh()
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
        self.refresh()
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
                    to_rgb(image).save(tmp, format="PNG")  # what embedding saw: RGB, transparency on white
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


#: the names the service gives stored uploads, and the temporary files they are written through
_UPLOAD_NAME = re.compile(r"\.?[0-9a-f]{32}\.png(\..+\.png)?")


def clean_orphaned_uploads(uploads_dir: Path | None, matcher: Matcher) -> int:
    """Remove stored uploads that no gallery item names: the image of an ``add`` killed (kill -9, power
    loss) after its file was written but before the gallery committed the item. Only files named the
    way the service names them are touched. Returns how many were removed."""
    if uploads_dir is None or not uploads_dir.is_dir():
        return 0
    paths = matcher.gallery.items()["path"].dropna().astype(str)
    named = {Path(p).name for p in paths if Path(p).parent.resolve() == uploads_dir.resolve()}
    removed = 0
    for file in uploads_dir.iterdir():
        if file.is_file() and _UPLOAD_NAME.fullmatch(file.name) and file.name not in named:
            file.unlink(missing_ok=True)
            removed += 1
    return removed


@functools.lru_cache(maxsize=1024)
def _cached_thumbnail(path: str, mtime_ns: int, size_bytes: int, side: int, max_pixels: int) -> bytes:
    del mtime_ns, size_bytes  # cache keys only: a changed file is rendered again
    return render_thumbnail(Path(path), size=side, max_pixels=max_pixels)
