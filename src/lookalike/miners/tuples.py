"""Kept so that ``from lookalike.miners.tuples import ...`` still works: the index tuples live in
:mod:`lookalike.tuples`, shared by miners and losses."""

from lookalike.tuples import *  # noqa: F403
from lookalike.tuples import __all__  # noqa: F401
