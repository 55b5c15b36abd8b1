"""The robustness page, generated from sweep folders: verdict counts, the range of ours, a figure, the why;
in the table of contents after the scorecard, which links to it."""

from __future__ import annotations

import json

from functok.book import sweep
from functok.book.robustness import numeric, robustness_markdown, value_range
from functok.book.site import scorecard_markdown, toc_yaml


def _sweep(folder, values_and_claims, why="a reason"):
    p = sweep.plan("function_tokens", "smoke", {}, {"coverage_threshold": [v for v, _ in values_and_claims]}, folder)
    for run, (_, claims) in zip(p.runs, values_and_claims):
        run.folder.mkdir(parents=True)
        run.results.write_text(json.dumps({"claims": claims}))
    sweep.write_index(p)
    index = json.loads(p.index.read_text()) | {"why": why}
    p.index.write_text(json.dumps(index))
    return p


def _claim(cid, ours, verdict, paper=122):
    return {"id": cid, "statement": f"statement {cid}", "paper": paper, "ours": ours, "verdict": verdict}


def test_numbers_are_read_from_measured_values():
    assert numeric(0.25) == 0.25 and numeric(3) == 3.0
    assert numeric("77 of 4,096 (1.88%)") == 77 and numeric("61%") == 61
    assert numeric("none") is None and numeric(None) is None and numeric(float("nan")) is None


def test_value_range():
    assert value_range([0.3, 0.1, 0.2]) == "0.1 – 0.3"
    assert value_range(["13 of 50 (1%)", "127 of 50 (9%)"]) == "13 of 50 (1%) – 127 of 50 (9%)"
    assert value_range([0.5, 0.5]) == "0.5 (every run)"
    assert value_range(["a", "b"]) == "2 different values"


def test_page_counts_verdicts_shows_the_range_and_plots_against_the_swept_parameter(tmp_path):
    runs = [
        (0.3, [_claim("count", "13 of 4,096", "holds"), _claim("top15", 0.3, "fails"), _claim("w", "x", "holds")]),
        (0.4, [_claim("count", "77 of 4,096", "holds"), _claim("top15", 0.3, "fails"), _claim("w", "x", "holds")]),
        (0.5, [_claim("count", "127 of 4,096", "fails"), _claim("top15", None, "inconclusive")]),
    ]
    _sweep(tmp_path / "sweeps" / "function_tokens", runs, why="the threshold is a choice")
    md = robustness_markdown(tmp_path / "sweeps", tmp_path / "book")
    assert "## [What is a function token?](chapters/function_tokens.ipynb)" in md
    assert "**Swept:** `coverage_threshold` over 0.3, 0.4, 0.5, on preset `smoke`" in md
    assert "3 of 3 runs finished" in md and "**Why this sweep:** the threshold is a choice" in md
    assert "| statement count (`count`) | 122 | 2 | 1 | 0 | 13 of 4,096 – 127 of 4,096 |" in md
    assert "| statement top15 (`top15`) | 122 | 0 | 2 | 1 |" in md
    assert "1 of 3 claims keep their verdict across the grid; the verdict changes for `count`, `top15`." in md
    assert " 127 of 4,096: fails |" in md  # a column per run
    assert "](robustness/function_tokens.png)" in md
    png = tmp_path / "book" / "robustness" / "function_tokens.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "functok sweep function_tokens --preset smoke --grid coverage_threshold" in md


def test_a_model_runs_sweep_has_its_own_section_link_and_figure(tmp_path):
    runs = [(0.3, [_claim("c", 0.1, "holds")]), (0.5, [_claim("c", 0.2, "fails")])]
    _sweep(tmp_path / "sweeps" / "function_tokens", runs)
    p = _sweep(tmp_path / "sweeps" / "function_tokens.big", runs)
    index = json.loads(p.index.read_text()) | {"model_run": "big"}
    p.index.write_text(json.dumps(index))
    md = robustness_markdown(tmp_path / "sweeps", tmp_path / "book")
    main, big = (
        md.index("## [What is a function token?](chapters/function_tokens.ipynb)"),
        md.index("## [What is a function token?: big](chapters/big/function_tokens.ipynb)"),
    )
    assert main < big and "](robustness/function_tokens.big.png)" in md[big:]
    assert (tmp_path / "book" / "robustness" / "function_tokens.big.png").exists()


def test_page_without_sweeps_says_how_to_get_them(tmp_path):
    md = robustness_markdown(tmp_path / "none", tmp_path)
    assert md.startswith("# Robustness of the verdicts") and "No sweeps yet" in md


def test_unfinished_runs_are_counted_but_not_scored(tmp_path):
    p = _sweep(tmp_path / "s" / "function_tokens", [(0.3, [_claim("c", 1.0, "holds")]), (0.5, [])])
    p.runs[1].results.unlink()
    md = robustness_markdown(tmp_path / "s", tmp_path / "book")
    assert "1 of 2 runs finished" in md and "| statement c (`c`) | 122 | 1 | 0 | 0 | 1 (every run) |" in md


def test_toc_lists_the_robustness_page_after_the_scorecard_which_links_to_it(tmp_path):
    lines = toc_yaml().splitlines()
    i = lines.index("      - file: book/scorecard")
    assert lines[i + 1] == "      - file: book/robustness"
    assert "[robustness](robustness.md)" in scorecard_markdown(tmp_path)
