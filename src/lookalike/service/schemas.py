"""The JSON the service answers with (pydantic models, so the OpenAPI docs describe every field)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "BatchSearchResponse",
    "DeleteResponse",
    "ErrorResponse",
    "HealthResponse",
    "ItemResponse",
    "NeighbourOut",
    "SearchResponse",
]


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong and what would be right.")


class NeighbourOut(BaseModel):
    rank: int = Field(description="1 = nearest.")
    id: str
    label: str
    distance: float | None = Field(description="Distance to the query (lower is closer).")
    thumbnail: str = Field(description="URL path of the item's thumbnail (GET /items/{id}/thumbnail).")
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    query: str = Field(description="The uploaded file's name.")
    decision: Literal["match", "no match", "no threshold", "error"] = Field(
        description='"match": the decision score is within the threshold; "no match": it is not; '
        '"no threshold": the gallery has no calibrated threshold (label = nearest label); '
        '"error": this image could not be used (see error).'
    )
    label: str | None = Field(description="The matched label (or the nearest one without a threshold).")
    distance: float | None = Field(description="Distance to the nearest item.")
    score: float | None = Field(
        default=None,
        description="The decision score (the nearest distance, or as score_name says); lower is closer.",
    )
    score_name: str = Field(default="nearest", description="Which decision score: nearest, ratio or znorm.")
    threshold: float | None = Field(description="The threshold used (match when score <= threshold).")
    margin: float | None = Field(description="threshold - score: positive inside the threshold.")
    error: str | None = None
    k: int = Field(description="Neighbours asked for; fewer come back when the gallery is smaller.")
    neighbours: list[NeighbourOut]


class BatchSearchResponse(BaseModel):
    results: list[SearchResponse] = Field(description="One per uploaded image, in order.")


class ItemResponse(BaseModel):
    id: str
    label: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    thumbnail: str
    gallery_size: int


class DeleteResponse(BaseModel):
    removed: str
    gallery_size: int


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str
    model_fingerprint: str
    model_source: str
    distance: str
    embed_dim: int
    gallery_size: int
    threshold: float | None
    writes_enabled: bool = Field(description="POST/DELETE /items need an X-API-Key and are enabled.")
    default_k: int
    max_k: int
    max_upload_bytes: int
