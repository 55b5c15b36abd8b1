"""The chapter registry: one entry per chapter (in functok/chapters/<name>/config.py), each naming its
config, a notebook whose first heading is the entry's title and whose `parameters` cell is a preset and
overrides, and a chapter package; the table of contents is generated from it."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json

import pytest
import yaml

from functok.book.run import chapter_source
from functok.book.site import toc_yaml
from functok.chapters import registry
from functok.core import config


def parameters_index(chapter: str) -> int:
    cells = notebook(chapter)["cells"]
    found = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"{chapter}: expected exactly one cell tagged 'parameters'"
    return found[0]


def parameters_cell(chapter: str) -> dict:
    """name -> literal value of the notebook's `parameters` cell."""
    tree = ast.parse("".join(notebook(chapter)["cells"][parameters_index(chapter)]["source"]))
    out = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{chapter}: parameters cell may only hold assignments"
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


@pytest.mark.parametrize("chapter", registry.chapters())
def test_parameters_cell_is_a_preset_and_overrides(chapter):
    """The same two assignments in every chapter: the notebook resolves them as `functok run` does, so it
    holds no copy of the config's fields that could drift."""
    assert parameters_cell(chapter) == {"preset": "embedded", "overrides": {}}
    setup = "".join(notebook(chapter)["cells"][parameters_index(chapter) + 1]["source"])
    assert f'cfg = from_notebook("{chapter}", globals())' in setup


@pytest.mark.parametrize("chapter", registry.chapters())
def test_cell_ids_are_unique(chapter):
    """nbformat renames a repeated cell id on every run (and warns): the page's cells keep their names."""
    ids = [c.get("id") for c in notebook(chapter)["cells"]]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.mark.parametrize("chapter", registry.chapters())
def test_every_field_has_one_line_help(chapter):
    for f in dataclasses.fields(registry.config_class(chapter)):
        help_ = f.metadata.get("help", "")
        assert help_ and "\n" not in help_, f"{chapter}.{f.name} needs a one-line help"


def notebook(chapter: str) -> dict:
    return json.loads(chapter_source(chapter).read_text())


@pytest.mark.parametrize("entry", registry.entries(), ids=lambda c: c.name)
def test_entry_names_its_notebook_title_config_and_package(entry):
    first = "".join(notebook(entry.name)["cells"][0]["source"]).splitlines()[0]
    assert first == f"# {entry.title}", "the registry title and the notebook's first heading differ"
    assert entry.config.chapter == entry.name
    pkg = importlib.import_module(f"functok.chapters.{entry.name}.analysis")
    assert callable(pkg.analyze)


def test_registry_is_the_one_list_of_chapters():
    names = [c.name for c in registry.entries()]
    assert len(set(names)) == len(names)
    assert registry.chapters() == names == [c.name for c in registry.entries()]
    notebooks = sorted(p.name for p in (config.ROOT / "chapters").glob("*.ipynb"))
    assert notebooks == sorted(c.notebook for c in registry.entries()), "a notebook without an entry, or the reverse"


def test_toc_is_generated_from_the_registry():
    toc = yaml.safe_load(toc_yaml())
    entries = [c for part in toc["parts"] for c in part["chapters"]]
    chapters = [c for c in entries if c["file"].startswith("book/chapters/")]
    assert [(c["file"], c["title"]) for c in chapters] == [
        (f"book/chapters/{c.name}", c.title) for c in registry.entries()
    ]
    assert [e["file"] for e in entries[-2:]] == ["book/scorecard", "book/robustness"]


def test_unknown_chapter_is_one_line_with_a_suggestion():
    with pytest.raises(config.ParamError, match="did you mean 'loss_split'"):
        registry.chapter("loss_splt")


@pytest.mark.parametrize("chapter", registry.chapters())
def test_papermill_reads_every_parameter(chapter):
    """papermill parses the parameters cell itself (to warn about unknown -p names): a help comment it
    cannot parse would make it report real parameters as unknown on every run."""
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(str(chapter_source(chapter)), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = [p.name for p in PythonTranslator.inspect(cell)]
    assert names == ["preset", "overrides"]
