"""The HTTP search service and its web page (``lookalike serve``); needs the ``serve`` extra.

:func:`create_app` builds the FastAPI app from :class:`ServiceSettings` (``settings.py``): the
model and gallery loaded once at start-up and shared by the routes (``state.py``), images read and
checked (``images.py``, ``body_limit.py``), embeddings micro-batched (``batching.py``), request
and response models (``schemas.py``), Prometheus metrics (``metrics.py``) and the page in
``static/``. The search itself is the gallery's :class:`~lookalike.gallery.matcher.Matcher`.
"""

from lookalike.service.app import create_app
from lookalike.service.batching import MicroBatcher
from lookalike.service.settings import ServiceSettings

__all__ = ["MicroBatcher", "ServiceSettings", "create_app"]
