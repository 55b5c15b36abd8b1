"""The architecture, checked: chapters -> sae -> world -> book, one way; chapters never import each
other; no import cycle between functok's modules; functok's own imports at the top of each module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "functok"
LAYERS = ("book", "world", "sae", "chapters")  # lowest first
# lazy on purpose: the CLI answers `functok params` and bad input without importing papermill or Jupyter Book
LAZY_ALLOWED = {
    ("functok.book.cli", "functok.book.run"),
    ("functok.book.cli", "functok.book.site"),
    ("functok.book.cli", "functok.book.sweep_ray"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def functok_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported functok module, imported at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("functok"):
            # `from functok.x import y` may import the submodule functok.x.y
            names = [
                f"{node.module}.{a.name}"
                if (PKG.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                or (PKG.parent / f"{node.module}.{a.name}".replace(".", "/")).is_dir()
                else node.module
                for a in node.names
            ]
        elif isinstance(node, ast.ImportFrom) and node.level:
            names = ["<relative>"]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("functok")]
        out += [(n, id(node) in top) for n in names]
    return out


def modules() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): functok_imports(p) for p in sorted(PKG.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def chapter_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "chapters" and parts[2] != "common" else None


def violations(graph: dict[str, list[tuple[str, bool]]]) -> list[str]:
    bad = []
    for mod, imports in graph.items():
        for target, at_top in imports:
            if target == "<relative>":
                bad.append(f"{mod}: relative import (use absolute functok.* imports)")
                continue
            lo, hi = layer_of(target), layer_of(mod)
            if lo is not None and hi is not None and lo > hi:
                bad.append(f"{mod} ({LAYERS[hi]}) imports {target} ({LAYERS[lo]}), a higher layer")
            a, b = chapter_of(mod), chapter_of(target)
            if a and b and a != b:
                bad.append(f"{mod} imports another chapter, {target}")
            if not at_top and (mod, target) not in LAZY_ALLOWED:
                bad.append(f"{mod} imports {target} inside a function (functok's own imports sit at the top)")
    return bad


def cycles(graph: dict[str, list[tuple[str, bool]]]) -> list[list[str]]:
    edges = {m: {t for t, _ in imps if t in graph and t != m} for m, imps in graph.items()}
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                found.append(stack[stack.index(t) :] + [t])
            elif not state.get(t):
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if not state.get(m):
            visit(m)
    return found


def test_imports_flow_one_way():
    assert violations(modules()) == []


def test_no_import_cycle():
    assert cycles(modules()) == []


def test_the_checks_catch_what_they_should():
    """A higher-layer import, a chapter importing a chapter, a lazy import and a cycle are all caught."""
    graph = {
        "functok.world.a": [("functok.sae.b", True)],
        "functok.sae.b": [("functok.world.a", True)],
        "functok.chapters.x.analysis": [("functok.chapters.y.analysis", True), ("functok.chapters.common", True)],
        "functok.chapters.y.analysis": [("functok.world.a", False)],
    }
    bad = violations(graph)
    assert any("functok.world.a (world) imports functok.sae.b (sae)" in b for b in bad)
    assert any("imports another chapter" in b for b in bad)
    assert any("inside a function" in b for b in bad)
    assert not any("chapters.common" in b for b in bad)
    assert cycles(graph) == [["functok.sae.b", "functok.world.a", "functok.sae.b"]] or cycles(graph) == [
        ["functok.world.a", "functok.sae.b", "functok.world.a"]
    ]


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_modules_stay_readable(path):
    n = len(path.read_text().splitlines())
    assert n <= 500, f"{path.relative_to(PKG.parent)} has {n} lines; split it (at most 500)"
