"""The ``lookalike`` command: one module per command group, named after it (``train.py`` for
``lookalike train``, ``index.py`` for ``lookalike index ...``).

A command parses its options, calls the Python API of the packages below and prints the result;
what it computes or reads (files, splits, searches, thresholds) lives in those packages, so the
commands, the demo, the service and a user's script share one implementation.
``_model_options.py`` holds the model options several commands take. Each command module registers
its commands on :data:`lookalike.cli.app.app` when imported.
"""

from lookalike.cli import calibrate as _calibrate  # noqa: F401  (registers calibrate)
from lookalike.cli import data as _data  # noqa: F401  (registers manifest, split)
from lookalike.cli import demo as _demo  # noqa: F401  (registers demo)
from lookalike.cli import embed as _embed  # noqa: F401  (registers embed)
from lookalike.cli import evaluate as _evaluate  # noqa: F401  (registers evaluate, evaluate-embeddings)
from lookalike.cli import export as _export  # noqa: F401  (registers export)
from lookalike.cli import index as _index  # noqa: F401  (registers index build/add/remove/info/set-threshold)
from lookalike.cli import models as _models  # noqa: F401  (registers backbones)
from lookalike.cli import search as _search  # noqa: F401  (registers search)
from lookalike.cli import serve as _serve  # noqa: F401  (registers serve)
from lookalike.cli import train as _train  # noqa: F401  (registers train)
from lookalike.cli import tune as _tune  # noqa: F401  (registers tune)
from lookalike.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
