"""How a chapter page reads: the compact table of the parameters a run used with its reproduce command and
download links (`run_summary`, shown by each notebook's validation cell), and what the site hides of an
executed notebook (`hide_machinery`: the parameters cell and papermill's injected one; the downloadable
notebook keeps them).
"""

from __future__ import annotations

import dataclasses
import html
import json
import shutil
from pathlib import Path

import nbformat

from functok.chapters.registry import resolve
from functok.core.config import ChapterConfig
from functok.core.results import reproduce_command

LONG = 80  # characters: a longer value folds away behind its size
COLUMNS = 2  # parameter/value pairs per table row: the table stays short
PAD = ' style="padding-right:1.5em"'  # a value keeps its distance from the next parameter's name
HIDE = "remove-cell"  # myst-nb: the cell is not on the page, and stays in the notebook
MACHINERY = ("parameters", "injected-parameters")  # tags of the cells the summary table replaces


def _value(v) -> str:
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    code = f"<code>{html.escape(text)}</code>"
    if len(text) <= LONG:
        return code
    size = f"{len(v)} values" if isinstance(v, list) else f"{len(text)} characters"
    return f"<details><summary>{size}</summary>{code}</details>"


@dataclasses.dataclass
class RunSummary:
    """The parameters a run used (bold: set for this run, unlike the preset), how to reproduce it, and its
    results file and notebook for download (links relative to the page, which sits beside both)."""

    cfg: ChapterConfig

    def rows(self) -> list[tuple[str, object, bool]]:
        """(name, value, differs from the preset) for every parameter but out_dir."""
        base = resolve(self.cfg.chapter, self.cfg.preset)
        return [
            (f.name, getattr(self.cfg, f.name), getattr(self.cfg, f.name) != getattr(base, f.name))
            for f in dataclasses.fields(self.cfg)
            if f.name != "out_dir"
        ]

    def _repr_html_(self) -> str:
        cells = [
            f"<td>{html.escape(n)}</td><td{PAD}>{'<b>' + _value(v) + '</b>' if own else _value(v)}</td>"
            for n, v, own in self.rows()
        ]
        head = "<th>parameter</th><th>value</th>" * COLUMNS
        body = "".join(f"<tr>{''.join(cells[i : i + COLUMNS])}</tr>" for i in range(0, len(cells), COLUMNS))
        name = self.cfg.chapter
        return (
            f'<div class="functok-run"><table class="functok-params"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
            f"<p>Bold: set for this run (differs from the preset <code>{html.escape(self.cfg.preset)}</code>).</p>"
            f"<p>Reproduce this page: <code>{html.escape(reproduce_command(self.cfg))}</code></p>"
            f'<p>Download: <a class="functok-results" href="{name}.json" download>results file {name}.json</a>'
            f' (parameters, results, claims, provenance) · <a href="{name}.ipynb" download>notebook {name}.ipynb</a>'
            "</p></div>"
        )

    def _repr_markdown_(self) -> str:
        own = [f"`{n}` = `{json.dumps(v)}`" for n, v, mine in self.rows() if mine]
        return (
            f"Parameters: preset `{self.cfg.preset}`" + (", " + ", ".join(own) if own else "") + ".\n\n"
            f"Reproduce this page: `{reproduce_command(self.cfg)}`"
        )


def run_summary(cfg: ChapterConfig) -> RunSummary:
    return RunSummary(cfg)


# ---------------------------------------------------------------------------------------------
# The site's view of an executed notebook


def hide_machinery(nb) -> bool:
    """Tag the parameters cell and papermill's injected-parameters cell to be left off the page (the
    summary table shows the values once). Returns whether anything changed."""
    changed = False
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if any(t in tags for t in MACHINERY) and HIDE not in tags:
            tags.append(HIDE)
            changed = True
    return changed


def executed_notebooks(results_dir: Path) -> list[Path]:
    """The executed chapters of a book tree: <chapter>.ipynb and <label>/<chapter>.ipynb."""
    results_dir = Path(results_dir)
    found = list(results_dir.glob("*.ipynb")) + list(results_dir.glob("*/*.ipynb"))
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(results_dir).parts))


def prepare_pages(results_dir: Path) -> None:
    """Hide the machinery cells of every executed chapter (idempotent; rewritten only when it changes)."""
    for path in executed_notebooks(results_dir):
        nb = nbformat.read(str(path), as_version=4)
        if hide_machinery(nb):
            nbformat.write(nb, str(path))


def copy_downloads(results_dir: Path, site_chapters: Path) -> list[Path]:
    """Copy each executed chapter and its results file beside its page, so the summary's links resolve."""
    copied = []
    for nb in executed_notebooks(results_dir):
        rel = nb.relative_to(results_dir)
        for src in (nb, nb.with_suffix(".json")):
            if src.exists():
                dst = Path(site_chapters) / rel.parent / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
                copied.append(dst)
    return copied
