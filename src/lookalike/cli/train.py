"""CLI commands (being written)."""

from lookalike.cli.app import app  # noqa: F401
