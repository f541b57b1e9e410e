"""The JSON the routes answer with, built from the matcher's results."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lookalike.service.schemas import ErrorResponse

if TYPE_CHECKING:
    from lookalike.gallery.matcher import SearchResult

__all__ = ["error_json", "error_responses", "result_json", "thumbnail_url"]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: these status codes answer an :class:`ErrorResponse`."""
    return {code: {"model": ErrorResponse} for code in codes}


def thumbnail_url(item_id: str) -> str:
    """URL path of an item's thumbnail; the id is percent-encoded (ids may hold any character)."""
    return f"/items/{quote(str(item_id), safe='')}/thumbnail"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_json(result: SearchResult, k: int) -> dict[str, Any]:
    """A SearchResult as the API answers it: source paths left out, thumbnail URLs added."""
    out = result.to_dict()
    out["k"] = k
    out["neighbours"] = [
        {
            "rank": n["rank"],
            "id": n["id"],
            "label": n["label"],
            "distance": _plain(n["distance"]),
            "thumbnail": thumbnail_url(n["id"]),
            # the item table has one column per metadata key of any item: leave out keys it lacks
            "metadata": {key: v for key, v in n["metadata"].items() if v is not None},
        }
        for n in out["neighbours"]
    ]
    out.pop("path", None)
    return out


def error_json(name: str, message: str, threshold: float | None, k: int) -> dict[str, Any]:
    """The answer for one image of a batch that could not be used."""
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
