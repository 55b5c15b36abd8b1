"""Helpers for chapter notebooks (the notebooks under chapters/ are the source; edit them in Jupyter).

    .venv/bin/python tools/notebook.py sync CHAPTER   # rewrite the `parameters` cell from the config

`write(path, cells)` starts a new chapter from ("md" | "code" | "parameters", text) cells.
Notebooks are committed without outputs; the book is built from executed copies.
"""

from __future__ import annotations

import nbformat


def write(path: str, cells: list[tuple[str, str]]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, text in cells:
        text = text.strip("\n")
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            c = nbformat.v4.new_code_cell(text)
            if kind == "parameters":
                c.metadata["tags"] = ["parameters"]
            nb.cells.append(c)
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i}"
    nbformat.write(nb, path)


def parameters_source(chapter: str) -> str:
    """The `parameters` cell of a chapter: every config field with its default and help."""
    import dataclasses

    from functok.book.config import defaults
    from functok.book.registry import ALL_CONFIGS

    cls = ALL_CONFIGS[chapter]
    d = defaults(cls)
    lines = [f"# Parameters of `{chapter}` (see `functok params {chapter}`); validated in the next cell."]
    for f in dataclasses.fields(cls):
        lines.append(f"{f.name} = {d[f.name]!r}  # {f.metadata['help']}")
    return "\n".join(lines)


SETUP = """import warnings; warnings.filterwarnings("ignore", message="IProgress not found")  # plain tqdm bars
from functok.book.registry import from_notebook
from functok.book.pages import run_summary
from functok.book.results import Run
from IPython.display import Markdown, display

cfg = from_notebook("{chapter}", globals())  # same checks as the CLI
run = Run(cfg)  # seeds everything, starts the clock
display(run_summary(cfg))  # the parameters this run used, how to reproduce it, its results file"""

# the last cell of every chapter (tagged remove-cell): the live form on the run the notebook just made
LIVE_FORM = """# Tweak this run's parameters live (in Jupyter; the built site hides this cell, every build runs it)
from functok.chapters.{chapter}.live import form

form(cfg, analysis)"""


def sync_parameters(chapter: str) -> None:
    """Rewrite a chapter notebook's `parameters` cell from its config (after adding a field)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from functok.book.run import chapter_source

    path = chapter_source(chapter)
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = parameters_source(chapter)
    nbformat.write(nb, str(path))


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "sync":
        sync_parameters(sys.argv[2])
    else:
        sys.exit(__doc__)
