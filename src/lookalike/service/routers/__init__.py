"""The service's routes, one router per concern: searching, gallery items, and what the server is
(page, health, metrics). :func:`lookalike.service.create_app` includes them."""

from lookalike.service.routers.info import router as info_router
from lookalike.service.routers.items import router as items_router
from lookalike.service.routers.search import router as search_router

__all__ = ["info_router", "items_router", "search_router"]
