"""Write a chapter notebook from a list of cells: python tools/notebook.py (used by the chapter authors).

`write(path, cells)` where cells are ("md", text) / ("code", text) / ("parameters", text).
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

    from functok.config import ALL_CONFIGS, defaults

    cls = ALL_CONFIGS[chapter]
    d = defaults(cls)
    lines = [f"# Parameters of `{chapter}` (see `functok params {chapter}`); validated in the next cell."]
    for f in dataclasses.fields(cls):
        lines.append(f"{f.name} = {d[f.name]!r}  # {f.metadata['help']}")
    return "\n".join(lines)


SETUP = '''import warnings; warnings.filterwarnings("ignore", message="IProgress not found")  # plain tqdm bars
import functok.config, functok.results
from IPython.display import Markdown, display

cfg = functok.config.from_notebook("{chapter}", globals())  # same checks as the CLI
run = functok.results.Run(cfg)  # seeds everything, starts the clock
display(Markdown(f"Reproduce this page: `{{functok.results.reproduce_command(cfg)}}`"))'''
