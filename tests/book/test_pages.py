"""How a chapter page reads: the run's parameter table and links, the cells the site hides, and the
scorecard's summary of verdicts."""

from __future__ import annotations

import json
import re

import nbformat

from functok.book.pages import copy_downloads, hide_machinery, prepare_pages, run_summary
from functok.book.site import scorecard_markdown
from functok.chapters.registry import resolve


def test_the_summary_shows_every_parameter_once_and_marks_the_runs_own():
    cfg = resolve("function_tokens", "embedded", {"top_n": 3, "tokenizers": ["gpt2"]})
    html = run_summary(cfg)._repr_html_()
    names = re.findall(r"<td>([a-z_]+)</td><td[^>]*>", html)
    assert sorted(names) == sorted(
        ["preset", "seed", "corpus", "max_documents", "tokenizers", "coverage_threshold", "top_n"]
        + ["burst_tokens", "n_bins", "sweep_thresholds"]
    )
    text = re.sub(r"<td[^>]*>", "<td>", html)
    assert "<td>top_n</td><td><b><code>3</code></b></td>" in text
    assert "<td>n_bins</td><td><code>50</code></td>" in text  # the preset's value: not bold
    assert "functok run function_tokens --preset embedded -p tokenizers" in html
    assert 'href="function_tokens.json"' in html and 'href="function_tokens.ipynb"' in html


def test_a_long_value_folds_away():
    cfg = resolve("reactivation", "embedded")
    html = run_summary(cfg)._repr_html_()
    assert f"<summary>{len(cfg.steer_prompts)} values</summary>" in html


def _notebook():
    nb = nbformat.v4.new_notebook()
    cells = [("md", None), ("code", ["parameters"]), ("code", ["injected-parameters"]), ("code", None)]
    for kind, tags in cells:
        c = nbformat.v4.new_markdown_cell("x") if kind == "md" else nbformat.v4.new_code_cell("y = 1")
        if tags:
            c.metadata["tags"] = list(tags)
        nb.cells.append(c)
    return nb


def test_the_site_hides_the_parameter_cells_only(tmp_path):
    nb = _notebook()
    assert hide_machinery(nb)
    assert [c.metadata.get("tags") for c in nb.cells] == [
        [],
        ["parameters", "remove-cell"],
        ["injected-parameters", "remove-cell"],
        [],
    ]
    assert not hide_machinery(nb)  # idempotent
    (tmp_path / "gemma").mkdir()
    for path in (tmp_path / "a.ipynb", tmp_path / "gemma" / "a.ipynb"):
        nbformat.write(_notebook(), str(path))
        path.with_suffix(".json").write_text("{}")
    prepare_pages(tmp_path)
    for path in (tmp_path / "a.ipynb", tmp_path / "gemma" / "a.ipynb"):
        assert "remove-cell" in nbformat.read(str(path), 4).cells[2].metadata["tags"]
    copied = copy_downloads(tmp_path, tmp_path / "site")
    assert sorted(p.relative_to(tmp_path / "site").as_posix() for p in copied) == [
        "a.ipynb",
        "a.json",
        "gemma/a.ipynb",
        "gemma/a.json",
    ]


def _results(path, claims):
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"params": {"preset": "x"}, "claims": claims, "provenance": {"git_commit": "0" * 40, "seconds": 1.0}}
    path.write_text(json.dumps(doc))


def _claim(cid, verdict):
    return {"id": cid, "statement": cid, "paper": 1, "ours": 1, "verdict": verdict}


def test_the_scorecard_opens_with_verdict_counts_per_chapter_and_model(tmp_path):
    _results(
        tmp_path / "loss_split.json",
        [_claim("a[llama-2L]", "holds"), _claim("b[llama-2L]", "holds"), _claim("a[llama-8L]", "fails")]
        + [_claim("c", "inconclusive")],
    )
    _results(
        tmp_path / "gemma-x" / "feature_coverage.json",
        [_claim("d", "fails"), _claim("e", "fails"), _claim("f", "fragile")],
    )
    md = scorecard_markdown(tmp_path)
    summary = md.split("## Summary")[1].split("\n## ")[0]
    rows = [re.sub(r"<[^>]+>", "", r) for r in summary.splitlines() if r.startswith("| [")]
    assert rows == [
        "| [Feature coverage](chapters/feature_coverage.ipynb) | gemma-x | 0 | \u2718 2 | 0 | \u2248 1 |",
        "| [Loss split](chapters/loss_split.ipynb) | llama-2L | \u2714 2 | 0 | 0 | 0 |",
        "| [Loss split](chapters/loss_split.ipynb) | llama-8L | 0 | \u2718 1 | 0 | 0 |",
        "| [Loss split](chapters/loss_split.ipynb) | embedded | 0 | 0 | ? 1 | 0 |",
    ]
    head = [r for r in summary.splitlines() if r.startswith("| chapter")][0]
    assert (
        re.sub(r"<[^>]+>", "", head)
        == "| chapter | measured on | \u2714 holds | \u2718 fails | ? inconclusive | \u2248 fragile |"
    )
    assert 'style="color:#8250df' in summary  # fragile: its own column and colour
    assert 'style="color:#cf222e' in summary  # colour as well as the symbol and the word


def test_preconditions_are_shown_and_never_counted(tmp_path):
    """A run whose preconditions are not met: the scorecard names them beside the run and counts only claims."""
    from functok.core.results import precondition

    _results(tmp_path / "feature_growth.json", [_claim("g", "inconclusive")])
    doc = json.loads((tmp_path / "feature_growth.json").read_text())
    doc["preconditions"] = [
        precondition("scores_matched", "SAEs matched", "0.8 .. 0.9", False, "met if within tolerance"),
        precondition("bar", "SAE meets the bar", "ok", True, "the bar"),
    ]
    (tmp_path / "feature_growth.json").write_text(json.dumps(doc))
    md = scorecard_markdown(tmp_path)
    summary = md.split("## Summary")[1].split("\n## ")[0]
    rows = [re.sub(r"<[^>]+>", "", r) for r in summary.splitlines() if r.startswith("| [")]
    assert rows == ["| [Feature growth](chapters/feature_growth.ipynb) | embedded | 0 | 0 | ? 1 | 0 |"]
    assert "1 of 2 met; not met: SAEs matched." in md
    assert md.count("| SAEs matched") == 0  # not a row of the claims table
