"""Pick-by-name registries (``create_x(name, **kw)``, ``list_x()``), shared by losses and miners."""

from __future__ import annotations

import inspect
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "option_names"]

T = TypeVar("T")


def option_names(cls: type) -> list[str]:
    """The keyword options of ``cls(...)``, sorted."""
    return sorted(
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    )


class Registry(Generic[T]):
    """Classes by name, for one ``kind`` of thing ("loss", "miner"); errors list the valid names."""

    def __init__(self, kind: str, classes: dict[str, type[T]]) -> None:
        self.kind = kind
        self._classes = dict(classes)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name fails listing the valid ones."""
        if not isinstance(name, str) or name not in self._classes:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}")
        return self._classes[name]

    def create(self, name: str, kwargs: dict[str, Any]) -> T:
        """``get(name)(**kwargs)``; an unknown keyword fails listing the valid ones (a typo must not
        be dropped). A ``distance`` may be a name: losses and miners resolve it themselves."""
        cls = self.get(name)
        valid = option_names(cls)
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise TypeError(
                f"{self.kind} {name!r} got unknown keyword(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        return cls(**kwargs)
