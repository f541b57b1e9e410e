"""The HTTP search service and its web page (``lookalike serve``); needs the ``serve`` extra."""

from lookalike.service.app import create_app
from lookalike.service.batching import MicroBatcher
from lookalike.service.settings import ServiceSettings

__all__ = ["MicroBatcher", "ServiceSettings", "create_app"]
