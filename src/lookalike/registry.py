"""The ``create_x(name, **kw)`` machinery shared by the loss and miner registries."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["create_from_registry", "option_names", "registry_class"]


def registry_class(registry: dict[str, type], kind: str, name: str) -> type:
    """``registry[name]``; an unknown name fails listing the valid ones."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(registry))}") from None


def option_names(cls: type) -> list[str]:
    """The keyword options of ``cls(...)``, sorted."""
    return sorted(
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    )


def create_from_registry(registry: dict[str, type], kind: str, name: str, kwargs: dict[str, Any]) -> Any:
    """Build ``registry[name](**kwargs)``; unknown names and keywords fail listing the valid ones.

    (A ``distance`` may be a name: the losses and miners resolve it through
    :func:`lookalike.distances.resolve_distance`.)
    """
    cls = registry_class(registry, kind, name)
    valid = option_names(cls)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"{kind} {name!r} got unknown keyword(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    return cls(**kwargs)
