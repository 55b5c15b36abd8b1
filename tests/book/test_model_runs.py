"""A preset's model runs: chapters re-run on other models into book/chapters/<label>/, shown side by side."""

from __future__ import annotations

import json
import re

import pytest

from functok.book.site import results_files, scorecard_markdown, split_claim_id, toc_yaml
from functok.chapters.registry import ModelRun, model_runs, resolve_model_run
from functok.core.config import ParamError


@pytest.fixture
def presets(tmp_path, monkeypatch):
    folder = tmp_path / "presets"
    folder.mkdir()
    monkeypatch.setenv("FUNCTOK_PRESETS", str(folder))
    return folder


def test_model_runs_are_read_in_preset_order_and_write_under_their_label(presets):
    (presets / "p.yaml").write_text(
        "loss_split: {}\nmodel_runs:\n"
        "  b-model:\n    loss_split: {n_bootstrap: 123}\n"
        "  a-model:\n    function_tokens: {}\n"
    )
    runs = model_runs("p")
    assert [(r.label, r.chapter) for r in runs] == [("b-model", "loss_split"), ("a-model", "function_tokens")]
    cfg = resolve_model_run(runs[0], "p", "book/chapters")
    assert cfg.out_dir == "book/chapters/b-model" and cfg.n_bootstrap == 123


@pytest.mark.parametrize(
    "section, needle",
    [
        ("model_runs:\n  Bad/Label:\n    loss_split: {}\n", "Bad/Label"),
        ("model_runs:\n  embedded:\n    loss_split: {}\n", "embedded"),
        ("model_runs:\n  m:\n    loss_splt: {}\n", "did you mean 'loss_split'"),
        ("model_runs: [1, 2]\n", "expected a mapping"),
    ],
)
def test_bad_model_runs_are_one_line(presets, section, needle):
    (presets / "p.yaml").write_text(section)
    with pytest.raises(ParamError) as e:
        model_runs("p")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_override_in_a_model_run_names_the_parameter(presets):
    (presets / "p.yaml").write_text("model_runs:\n  m:\n    loss_split: {n_bootstrap: -1}\n")
    with pytest.raises(ParamError, match="n_bootstrap"):
        resolve_model_run(model_runs("p")[0], "p", "out")


def _results(path, claims):
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "params": {"preset": "p"},
        "claims": claims,
        "provenance": {"git_commit": "0" * 40, "seconds": 1.0},
    }
    path.write_text(json.dumps(doc))


def _claim(cid, ours, verdict):
    return {"id": cid, "statement": f"statement {cid.split('[')[0]}", "paper": 0.5, "ours": ours, "verdict": verdict}


def test_scorecard_puts_each_model_in_its_own_column(tmp_path):
    _results(
        tmp_path / "loss_split.json", [_claim("order[llama-2L]", 0.1, "holds"), _claim("order[llama-8L]", 0.2, "fails")]
    )
    _results(tmp_path / "feature_coverage.json", [_claim("top10", 0.3, "fails")])
    _results(tmp_path / "gemma-x" / "feature_coverage.json", [_claim("top10", 0.8, "holds")])
    assert [(c, label) for c, label, _ in results_files(tmp_path)] == [
        ("feature_coverage", "embedded"),
        ("feature_coverage", "gemma-x"),
        ("loss_split", "embedded"),
    ]
    md = scorecard_markdown(tmp_path)
    assert "| claim | paper | embedded | gemma-x |" in md
    text = re.sub(r"<[^>]+>", "", md)  # verdicts are coloured spans: their text carries a symbol and the word
    assert "| statement top10 | 0.5 | 0.3: \u2718 fails | 0.8: \u2714 holds |" in text
    assert "| claim | paper | llama-2L | llama-8L |" in md
    assert "[gemma-x](chapters/gemma-x/feature_coverage.ipynb)" in md


def test_split_claim_id():
    assert split_claim_id("a[llama-2L]", "embedded") == ("a", "llama-2L")
    assert split_claim_id("a", "gemma") == ("a", "gemma")


def test_toc_lists_model_runs_under_their_chapter():
    toc = toc_yaml([ModelRun("gemma-x", "feature_coverage", {})])
    lines = toc.splitlines()
    i = lines.index("      - file: book/chapters/feature_coverage")
    assert lines[i + 2 : i + 4] == ["        sections:", "          - file: book/chapters/gemma-x/feature_coverage"]
