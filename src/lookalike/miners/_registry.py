"""The ``create_x(name, **kw)`` machinery shared by the loss and miner registries."""

from __future__ import annotations

import inspect
from typing import Any


def create_from_registry(registry: dict[str, type], kind: str, name: str, kwargs: dict[str, Any]) -> Any:
    """Build ``registry[name](**kwargs)``; unknown names and keywords fail listing the valid ones.

    A ``distance`` given as a string is turned into a distance object by name.
    """
    from lookalike.distances import create_distance

    cls = registry_class(registry, kind, name)
    valid = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"{kind} {name!r} got unknown keyword(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    if isinstance(kwargs.get("distance"), str):
        kwargs = {**kwargs, "distance": create_distance(kwargs["distance"])}
    return cls(**kwargs)


def registry_class(registry: dict[str, type], kind: str, name: str) -> type:
    """``registry[name]``; an unknown name fails listing the valid ones."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(registry))}") from None
