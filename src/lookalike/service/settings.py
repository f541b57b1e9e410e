"""Settings of the search service: typed, strict, read from keyword arguments or ``LOOKALIKE_*``
environment variables (``LOOKALIKE_API_KEY``, ``LOOKALIKE_GALLERY``, ...)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings"]

_MB = 1024 * 1024


class ServiceSettings(BaseSettings):
    """Everything ``create_app`` needs. An unknown keyword is an error listing the valid ones.

    The embedder is the gallery's own model (from its header) unless ``checkpoint`` or ``backbone``
    is given. Adding and removing items is enabled only when ``api_key`` is set; requests must then
    send it in the ``X-API-Key`` header.
    """

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="forbid", validate_default=True)

    gallery: str | None = Field(None, description="Gallery folder or store URI (milvus-lite:PATH.db, ...).")
    checkpoint: Path | None = Field(None, description="Checkpoint to embed with (default: the gallery's).")
    backbone: str | None = Field(None, description="A frozen backbone to embed with instead of a checkpoint.")
    weights: Path | None = Field(None, description="Local weights file for --backbone.")
    onnx: Path | None = Field(None, description="An ONNX export to embed with (onnxruntime) instead.")
    device: str = Field("cpu", description="Torch device for the embedder.")
    threshold: float | None = Field(None, description="Match threshold overriding the gallery's.")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(None, description="Key for POST/DELETE /items (header X-API-Key).")

    k: int = Field(5, ge=1, description="Neighbours returned when a request gives no k.")
    max_k: int = Field(100, ge=1, description="Largest k a request may ask for.")
    max_upload_mb: float = Field(10.0, gt=0, description="Largest image file accepted (MiB).")
    max_request_mb: float = Field(64.0, gt=0, description="Largest request body accepted (MiB).")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Largest width x height of one image (decompression-bomb guard)."
    )
    max_resized_pixels: int = Field(
        8_000_000,
        ge=1,
        description="Largest picture the model's resize may make of one image (refuses thin strips that "
        "the resize would scale up to gigapixels).",
    )
    max_request_pixels: int = Field(
        48_000_000, ge=1, description="Most width x height of all images of one request together."
    )
    max_server_pixels: int = Field(
        64_000_000,
        ge=1,
        description="Most decoded pixels held by all requests at once (others wait): with ~8 bytes a pixel "
        "at worst while decoding, the default bounds decoded images to about 0.5 GB.",
    )
    max_batch_images: int = Field(32, ge=1, description="Most images in one POST /search/batch.")
    refresh_interval_s: float = Field(
        1.0,
        ge=0,
        description="How often (at most) the server looks for a newer gallery generation written by "
        "another process (`lookalike index add`); 0 = before every request.",
    )

    batch_window_ms: float = Field(5.0, ge=0, description="Micro-batching window for the embedder.")
    max_batch_size: int = Field(32, ge=1, description="Most images in one forward pass (1 = no batching).")

    uploads_dir: Path | None = Field(
        None, description="Where added images are stored (default: GALLERY/uploads for a gallery folder)."
    )
    image_roots: list[Path] | None = Field(
        None,
        description="When set, thumbnails are served only from files inside these folders (and the uploads "
        "folder); by default from the paths the gallery's item table records.",
    )
    thumbnail_size: int = Field(256, ge=16, le=2048, description="Longest side of served thumbnails.")

    @model_validator(mode="after")
    def _check(self) -> ServiceSettings:
        if self.checkpoint is not None and self.backbone is not None:
            raise ValueError("give either checkpoint or backbone, not both")
        if self.onnx is not None and (self.checkpoint is not None or self.backbone is not None):
            raise ValueError("onnx chooses the model too: give either onnx or checkpoint/backbone, not both")
        if self.weights is not None and self.backbone is None:
            raise ValueError("weights is for a backbone: give backbone too (or a checkpoint instead)")
        if self.k > self.max_k:
            raise ValueError(f"k={self.k} is larger than max_k={self.max_k}")
        if not self.max_image_pixels <= self.max_request_pixels <= self.max_server_pixels:
            raise ValueError(
                f"max_image_pixels ({self.max_image_pixels}) <= max_request_pixels "
                f"({self.max_request_pixels}) <= max_server_pixels ({self.max_server_pixels}) must hold"
            )
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError("api_key is empty: set a non-empty LOOKALIKE_API_KEY or leave it unset")
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * _MB)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * _MB)

    @property
    def writes_enabled(self) -> bool:
        return self.api_key is not None

    def resolved_uploads_dir(self) -> Path | None:
        """The folder for added images: ``uploads_dir``, else ``GALLERY/uploads`` when the gallery is a
        folder (not a ``milvus...:`` URI), else None (added items then have no thumbnail)."""
        if self.uploads_dir is not None:
            return self.uploads_dir
        from lookalike.gallery.location import is_milvus_location

        if self.gallery is None or is_milvus_location(self.gallery):
            return None
        return Path(self.gallery) / "uploads"
