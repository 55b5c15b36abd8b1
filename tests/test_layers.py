"""The architecture, checked: book -> chapters -> sae -> world -> core, one way; chapters never import
each other; no import cycle between functok's modules; functok's own imports at the top of each module;
modules under 500 lines, functions under 80; a chapter's config lives in its own folder."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "functok"
LAYERS = ("core", "world", "sae", "chapters", "book")  # lowest first
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 80
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
    """The chapter a module belongs to: functok.chapters.<name>.* (not common or registry, which all share)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[1] == "chapters" else None


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
        "functok.core.config": [("functok.book.cli", True)],
    }
    bad = violations(graph)
    assert any("functok.world.a (world) imports functok.sae.b (sae)" in b for b in bad)
    assert any("functok.core.config (core) imports functok.book.cli (book)" in b for b in bad)
    assert any("imports another chapter" in b for b in bad)
    assert any("inside a function" in b for b in bad)
    assert not any("chapters.common" in b for b in bad)
    assert cycles(graph) == [["functok.sae.b", "functok.world.a", "functok.sae.b"]] or cycles(graph) == [
        ["functok.world.a", "functok.sae.b", "functok.world.a"]
    ]


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in `source` longer than `limit` lines."""
    return [
        (n.name, n.end_lineno - n.lineno + 1)
        for n in ast.walk(ast.parse(source))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit
    ]


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_modules_stay_readable(path):
    text = path.read_text()
    n = len(text.splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.relative_to(PKG.parent)} has {n} lines; split it (at most {MAX_MODULE_LINES})"
    assert long_functions(text) == [], f"{path.relative_to(PKG.parent)}: functions over {MAX_FUNCTION_LINES} lines"


def test_the_function_limit_catches_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}\n") == [("f", MAX_FUNCTION_LINES + 1)]
    assert long_functions("def g():\n    return 1\n") == []


def test_every_chapter_is_one_folder_with_its_config():
    """No config module for all chapters: each chapter's config and registration sit in its own folder."""
    assert not list(PKG.rglob("chapter_configs.py"))
    folders = sorted(p.name for p in (PKG / "chapters").iterdir() if (p / "__init__.py").exists())
    from functok.chapters.registry import BOOK_ORDER

    assert folders == sorted(BOOK_ORDER)
    for name in folders:
        assert "CHAPTER = Chapter(" in (PKG / "chapters" / name / "config.py").read_text(), name
