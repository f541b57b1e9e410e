"""FastAPI dependencies of the routes: the service state and the API-key check. Tests replace them
through ``app.dependency_overrides`` (e.g. ``{get_state: lambda: fake_state}``)."""

from __future__ import annotations

import secrets

from fastapi import Depends, Header, HTTPException, Request

from lookalike.service.state import ServiceState

__all__ = ["get_state", "require_key"]


def get_state(request: Request) -> ServiceState:
    """The state the app's lifespan made (model, gallery, batcher, budget); 503 outside it."""
    state = request.app.state.service
    if state is None:
        raise HTTPException(503, "the service is starting or stopping; try again in a moment")
    return state


def require_key(
    state: ServiceState = Depends(get_state),
    x_api_key: str | None = Header(None, description="The server's LOOKALIKE_API_KEY."),
) -> None:
    """Writes need the server's API key in ``X-API-Key`` (compared in constant time)."""
    expected = state.settings.api_key
    if expected is None:
        raise HTTPException(
            403,
            "adding and removing items is disabled on this server: no API key is configured; "
            "start it with LOOKALIKE_API_KEY set to enable them",
        )
    if not x_api_key:
        raise HTTPException(401, "this request changes the gallery: send the API key in the X-API-Key header")
    if not secrets.compare_digest(x_api_key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "wrong API key in the X-API-Key header; nothing was changed")
