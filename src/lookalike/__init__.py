"""lookalike: train, evaluate and serve image-retrieval models by deep metric learning.

One concept per module or package, in layers; a module imports only from its own layer or a lower
one, no two modules import each other, and no function is over 80 lines (``tests/test_layers.py``
checks all three). Lowest first:

1. foundations: ``_arrays``, ``_io`` (atomic writes), ``_version``, ``registry`` (pick by name),
   ``devices`` (the device rule), ``tuples`` (miner output types), ``distances``, ``distributed``
   (the ``torchrun`` helpers of training and inference)
2. maths: ``knn`` (exact chunked top-k), ``losses/``, ``miners/``, ``metrics/``
3. inputs: ``models/`` (backbones, heads, checkpoints), ``data/`` (manifest, splits, loading),
   ``protocol`` (the retrieval protocol: a split's query and gallery rows, gallery distance names
   and conversions, the gallery's top-k)
4. configuration: ``config`` (the typed training config, which names models, losses and miners)
5. inference: ``embed`` (a model over images), ``evaluation`` (a split's retrieval metrics),
   ``calibration`` (the match threshold), ``export/`` (the ONNX embedder and int8)
6. workflows: ``training/`` (the fit loop), ``gallery/`` (stores, search, match decision),
   ``tuning/`` (hyper-parameter studies), ``report/`` (the HTML report)
7. applications: ``demo`` (the whole path on built-in data), ``service/`` (the HTTP service)
8. commands: ``cli/`` (the ``lookalike`` command, also ``python -m lookalike`` by ``__main__``) and
   this root package

The root package itself holds only the version, so importing any part of lookalike stays cheap;
the public API is each package's ``__all__``.
"""

from lookalike._version import __version__

__all__ = ["__version__"]
