"""The package's layering, read from the source with ``ast`` (nothing is imported).

Layers, lowest first (the same order as in ``lookalike/__init__.py``'s docstring). A module may
import from its own layer or a lower one, never from a higher one; ``lookalike.x`` means the module
or package ``x`` and everything below it.

Which imports count:

- *cycles*: every import that runs (at module level or inside a function), between modules and
  between the top-level parts (``lookalike.gallery``, ``lookalike.knn``...). An import under
  ``if TYPE_CHECKING:`` never runs, so it cannot close a circle and is not counted there.
- *layers*: every import, ``TYPE_CHECKING`` ones included: a type that must come from a higher
  layer is the same smell as a call into one.

Where today's code breaks a rule, the break is named below in an allow-list with the reason; a
listed break that no longer occurs fails the test, so the lists only shrink.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "lookalike"

#: Lowest first. A name covers the module or package and everything below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundations",
        (
            "lookalike._arrays",
            "lookalike._io",
            "lookalike._version",
            "lookalike.registry",
            "lookalike.devices",
            "lookalike.tuples",
            "lookalike.distances",
            "lookalike.distributed",
        ),
    ),
    ("maths", ("lookalike.knn", "lookalike.losses", "lookalike.miners", "lookalike.metrics")),
    ("inputs", ("lookalike.models", "lookalike.data", "lookalike.protocol")),
    ("configuration", ("lookalike.config",)),
    ("inference", ("lookalike.embed", "lookalike.evaluation", "lookalike.calibration", "lookalike.export")),
    ("workflows", ("lookalike.training", "lookalike.gallery", "lookalike.tuning", "lookalike.report")),
    ("applications", ("lookalike.demo", "lookalike.service")),
    ("commands", ("lookalike.cli", "lookalike.__main__", "lookalike")),
)

MAX_FUNCTION_LINES = 80

#: (importer, imported): why it is still there. Shrinks as the code is fixed; never grows.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

#: The members of a circle (sorted): why it is still there.
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {}

#: "path/inside/src/lookalike.py::function": why it is still longer than MAX_FUNCTION_LINES.
ALLOWED_LONG: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    runs: bool  # False for an import under ``if TYPE_CHECKING:``


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _walk(body: list[ast.stmt], runs: bool):
    """Every import statement below ``body``, with whether it runs (not under TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, runs
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, runs)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _walk(getattr(node, field, None) or [], runs)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules) -> list[str]:
    """The lookalike modules an import statement loads (``from pkg import mod`` loads pkg.mod)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    found = []
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.append(name)
    return found


def _imports() -> list[Import]:
    modules = _modules()
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, runs in _walk(tree.body, True):
            for target in _targets(node, module, path.name == "__init__.py", modules):
                if target != module:
                    found.append(Import(module, target, node.lineno, runs))
    return found


def _layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            covers = module == name or (name != "lookalike" and module.startswith(name + "."))
            if covers and len(name) > best_len:
                best, best_len = index, len(name)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it (or its package) to LAYERS in {__file__}")
    return best


def _part(module: str) -> str:
    """The top-level part a module belongs to: lookalike.gallery.store -> lookalike.gallery."""
    return ".".join(module.split(".")[:2])


def _cycles(edges: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(tuple(sorted(members)))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def _check_allowed(found: dict, allowed: dict, what: str) -> None:
    new = {key: value for key, value in found.items() if key not in allowed}
    stale = sorted(key for key in allowed if key not in found)
    assert not new, f"{what}:\n" + "\n".join(f"  {key}: {value}" for key, value in sorted(new.items()))
    assert not stale, f"{what} allow-listed but no longer there; remove from the allow-list: {stale}"


# ---- the checker itself --------------------------------------------------------------------------


def test_cycle_finder_finds_a_circle_and_ignores_a_chain():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []


def test_import_reader_sees_lazy_and_type_checking_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "lookalike"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .mod import f\n")
    (pkg / "sub" / "mod.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lookalike.sub import f\n"
        "def f():\n    from .. import low\n    from lookalike import sub\n"
    )
    monkeypatch.setitem(globals(), "SRC", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", pkg)
    got = {(i.importer, i.imported, i.runs) for i in _imports()}
    assert got == {
        ("lookalike.sub", "lookalike.sub.mod", True),
        ("lookalike.sub.mod", "lookalike.sub", False),
        ("lookalike.sub.mod", "lookalike.low", True),
        ("lookalike.sub.mod", "lookalike.sub", True),
    }


# ---- the package ---------------------------------------------------------------------------------


def test_every_module_has_a_layer():
    for module in _modules():
        _layer_of(module)


def test_the_root_docstring_states_the_same_layers():
    """``lookalike/__init__.py`` lists the layers for readers: the same names, order and members."""
    import re

    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text())) or ""
    blocks = re.split(r"^(\d+)\. (\w+):", doc, flags=re.MULTILINE)[1:]
    stated = [(int(blocks[i]), blocks[i + 1], blocks[i + 2]) for i in range(0, len(blocks), 3)]
    assert [(n, name) for n, name, _ in stated] == [(i + 1, name) for i, (name, _) in enumerate(LAYERS)]
    for (_, name, text), (_, members) in zip(stated, LAYERS, strict=True):
        for module in members:
            short = module.removeprefix("lookalike.")
            said = "root package" in text if module == "lookalike" else re.search(rf"``{short}/?``", text)
            assert said, f"layer {name!r} in the root docstring does not name {module}"


def test_no_import_from_a_lower_layer_to_a_higher_one():
    found = {}
    for imp in _imports():
        low, high = _layer_of(imp.importer), _layer_of(imp.imported)
        if high > low:
            kind = "" if imp.runs else " (TYPE_CHECKING)"
            found[(imp.importer, imp.imported)] = (
                f"line {imp.line}{kind}: layer {LAYERS[low][0]!r} imports layer {LAYERS[high][0]!r}"
            )
    _check_allowed(found, ALLOWED_UPWARD, "imports from a lower layer to a higher one")


def test_no_import_cycle_between_modules_or_parts():
    modules: dict[str, set[str]] = {}
    parts: dict[str, set[str]] = {}
    for imp in _imports():
        if not imp.runs:
            continue
        modules.setdefault(imp.importer, set()).add(imp.imported)
        if _part(imp.importer) != _part(imp.imported):
            parts.setdefault(_part(imp.importer), set()).add(_part(imp.imported))
    found = {cycle: "modules import each other" for cycle in _cycles(modules)}
    found |= {cycle: "parts import each other" for cycle in _cycles(parts)}
    _check_allowed(found, ALLOWED_CYCLES, "import cycles")


def test_no_function_over_80_lines():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{path.relative_to(SRC)}::{node.name}"] = f"{lines} lines (line {node.lineno})"
    _check_allowed(found, ALLOWED_LONG, f"functions over {MAX_FUNCTION_LINES} lines")
