"""A chapter opened in Jupyter runs what the book runs: the notebook executed directly (nbclient, as
Jupyter's "Run all" does, no papermill), with its parameters cell edited to a preset and an override,
writes the same results file as `functok run` with that preset and -p, field by field."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from functok.book import cli

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "chapters" / "01_function_tokens.ipynb"
# what only says when and where a run ran, or how it was started: everything else must be equal
RUN_ONLY = {"started", "seconds", "runtime", "inputs"}


def edited_notebook(preset: str, overrides: dict) -> nbformat.NotebookNode:
    """The chapter notebook with its parameters cell edited the way a reader edits it in Jupyter."""
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = f"# Parameters\npreset = {preset!r}\noverrides = {overrides!r}"
    return nb


def differences(a: dict, b: dict, path: str = "") -> list[str]:
    """Every field where two results files differ (nested), as 'path: a != b'."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def comparable(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["params"].pop("out_dir")
    for k in RUN_ONLY:
        doc["provenance"].pop(k, None)
    return doc


def test_the_notebook_run_in_jupyter_writes_what_functok_run_writes(tmp_path, text_folder, tmp_cache):
    overrides = {"corpus": str(text_folder), "tokenizers": ["gpt2"], "burst_tokens": [" the", " cat"], "n_bins": 3}
    cli_out, nb_out = tmp_path / "cli", tmp_path / "jupyter"
    args = [a for k, v in overrides.items() for a in ("-p", k, json.dumps(v) if not isinstance(v, str) else v)]
    assert cli.main(["run", "function_tokens", "--preset", "smoke", *args, "--out", str(cli_out)]) == 0

    nb = edited_notebook("smoke", {**overrides, "out_dir": str(nb_out)})
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(ROOT)}}).execute()

    by_cli = json.loads((cli_out / "function_tokens.json").read_text())
    by_notebook = json.loads((nb_out / "function_tokens.json").read_text())
    assert by_notebook["params"]["max_documents"] == 300, "the smoke preset's section applies in Jupyter too"
    assert differences(comparable(by_cli), comparable(by_notebook)) == []

    # what the CLI's run hashed for its freshness: this chapter's code, not another chapter's
    modules = by_cli["provenance"]["inputs"]["modules"]
    assert "functok/chapters/function_tokens/analysis.py" in modules
    assert not [m for m in modules if m.startswith("functok/chapters/feature_growth/")]
    assert "data/presets/smoke.yaml" in by_cli["provenance"]["inputs"]["data"]


def test_the_comparison_sees_a_difference():
    a = {"params": {"n_bins": 3, "out_dir": "x"}, "results": {"k": [1, 2]}, "provenance": {"seconds": 1}}
    b = {"params": {"n_bins": 50, "out_dir": "y"}, "results": {"k": [1, 3]}, "provenance": {"seconds": 2}}
    assert differences(comparable(a), comparable(b)) == ["params.n_bins: 3 != 50", "results.k: [1, 2] != [1, 3]"]
