"""Helpers for chapter notebooks (the notebooks under chapters/ are the source; edit them in Jupyter).

    .venv/bin/python tools/notebook.py sync CHAPTER   # rewrite the parameters, setup and live-form cells

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
    """The `parameters` cell, the same two lines in every chapter: a preset and the fields that differ from it."""
    return (
        f"# Parameters: a preset and the overrides of its `{chapter}` section (`functok params {chapter}` lists them)\n"
        'preset = "embedded"\n'
        "overrides = {}"
    )


SETUP = """import warnings; warnings.filterwarnings("ignore", message="IProgress not found")  # plain tqdm bars
from functok.chapters.registry import from_notebook
from functok.book.pages import run_summary
from functok.core.results import Run
from IPython.display import Markdown, display

cfg = from_notebook("{chapter}", globals())  # the preset's section, then overrides: exactly as `functok run`
run = Run(cfg)  # seeds everything, starts the clock
display(run_summary(cfg))  # the parameters this run used, how to reproduce it, its results file"""

# the last cell of every chapter (tagged remove-cell): the live form on the run the notebook just made
LIVE_FORM = """# Tweak this run's parameters live (in Jupyter; the built site hides this cell, every build runs it)
from functok.book.live import form

form(cfg, analysis)"""


def sync_parameters(chapter: str) -> None:
    """Rewrite a chapter notebook's `parameters` cell, the setup cell after it and the live-form cell."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from functok.book.run import chapter_source

    path = chapter_source(chapter)
    nb = nbformat.read(str(path), as_version=4)
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = parameters_source(chapter)
            nb.cells[i + 1].source = SETUP.format(chapter=chapter)
        elif cell.get("id") == "live-form":
            cell.source = LIVE_FORM
    nbformat.write(nb, str(path))


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "sync":
        sync_parameters(sys.argv[2])
    else:
        sys.exit(__doc__)
