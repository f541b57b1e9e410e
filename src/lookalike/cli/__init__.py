"""The ``lookalike`` command. Thin wrappers over the Python API: no domain logic lives here.

Each command module registers its commands on :data:`lookalike.cli.app.app` when imported.
"""

from lookalike.cli import data as _data  # noqa: F401  (registers manifest, split)
from lookalike.cli import evaluate as _evaluate  # noqa: F401  (registers evaluate-embeddings)
from lookalike.cli import models as _models  # noqa: F401  (registers backbones)
from lookalike.cli import serve as _serve  # noqa: F401  (registers serve)
from lookalike.cli import train as _train  # noqa: F401  (registers train, evaluate)
from lookalike.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
