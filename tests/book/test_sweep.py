"""Sweeps without Ray: the grid is planned and every run validated before any starts; run keys are stable
and readable; the index lists every run; finished runs are skipped, a killed run's leftovers are not."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fresh import write_fresh_results

from functok.book import cli, sweep
from functok.core import config, freshness
from functok.core.config import ParamError


def test_the_grid_is_every_combination_in_grid_order(tmp_path):
    p = sweep.plan(
        "function_tokens", "smoke", {"n_bins": 7}, {"coverage_threshold": [0.3, 0.5], "seed": [1, 2]}, tmp_path
    )
    assert [r.values for r in p.runs] == [
        {"coverage_threshold": 0.3, "seed": 1},
        {"coverage_threshold": 0.3, "seed": 2},
        {"coverage_threshold": 0.5, "seed": 1},
        {"coverage_threshold": 0.5, "seed": 2},
    ]
    r = p.runs[1]
    assert (r.cfg.coverage_threshold, r.cfg.seed, r.cfg.n_bins, r.cfg.preset) == (0.3, 2, 7, "smoke")
    assert r.key.startswith("coverage_threshold-0.3__seed-2-") and r.cfg.out_dir == str(tmp_path / r.key)
    assert len({r.key for r in p.runs}) == 4


def test_run_keys_are_stable_and_change_with_anything_that_shapes_the_run(tmp_path):
    def key(fixed, preset="smoke"):
        return sweep.plan("function_tokens", preset, fixed, {"coverage_threshold": [0.3]}, tmp_path).runs[0].key

    assert key({}) == key({}), "the same parameter set gets the same folder in every sweep"
    assert key({}) != key({"n_bins": 7}) != key({}, preset="embedded")
    elsewhere = sweep.plan("function_tokens", "smoke", {}, {"coverage_threshold": [0.3]}, tmp_path / "b")
    assert elsewhere.runs[0].key == key({}), "the key does not depend on the output folder"
    p = sweep.plan("function_tokens", "smoke", {}, {"tokenizers": [["gpt2", "llama3"]], "burst_tokens": [[" of", "x"]]})
    assert p.runs[0].key.startswith("tokenizers-gpt2+llama3__burst_tokens-of+x-")


@pytest.mark.parametrize(
    "fixed, grid, needle",
    [
        ({}, {"coverage_threshold": [0.3, 1.5]}, "coverage_threshold: got 1.5"),  # the second run is bad
        ({}, {"coverage_treshold": [0.3]}, "did you mean 'coverage_threshold'"),
        ({}, {"n_bins": [10, 10]}, "same parameter set"),
        ({}, {"n_bins": []}, "non-empty list"),
        ({}, {}, "nothing to sweep"),
        ({"n_bins": 4}, {"n_bins": [5]}, "both fixed (-p) and swept (--grid)"),
        ({}, {"out_dir": ["a", "b"]}, "out_dir: cannot be set per run"),
        ({}, {"preset": ["smoke", "embedded"]}, "preset: cannot be set per run"),
        ({}, {"tokenizers": [["gpt2"], []]}, "tokenizers: got []"),
    ],
)
def test_every_run_is_validated_before_any_starts(tmp_path, fixed, grid, needle):
    with pytest.raises(ParamError) as e:
        sweep.plan("function_tokens", "smoke", fixed, grid, tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not tmp_path.joinpath(sweep.INDEX).exists()


def test_pretrain_is_no_chapter_to_sweep():
    with pytest.raises(ParamError, match="unknown chapter 'pretrain'"):
        sweep.plan("pretrain", "smoke", {}, {"lr": [0.1]})


@pytest.mark.parametrize(
    "text, values",
    [
        ("0.3,0.4,0.5", [0.3, 0.4, 0.5]),
        ("[0.3, 0.4]", [0.3, 0.4]),
        ("[[gpt2], [gpt2, llama3]]", [["gpt2"], ["gpt2", "llama3"]]),
        ("a, b", ["a", "b"]),
        ("7", [7]),
    ],
)
def test_grid_values_parse_like_papermill(text, values):
    assert cli.grid_values("x", text) == values


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--grid", "coverage_threshold", "0.3,2"], "coverage_threshold: got 2"),
        (["--grid", "n_bins", "3,", "--dry-run"], "n_bins: grid values"),
        (["--grid", "n_bins", "3", "--grid", "n_bins", "4"], "--grid given twice"),
        (["--grid", "n_bins", "3", "--cpus-per-run", "0"], "cpus_per_run: got 0.0"),
        (["--grid", "n_bins", "3", "--gpus-per-run", "-1"], "gpus_per_run: got -1.0"),
    ],
)
def test_bad_sweeps_exit_2_in_one_line_without_starting_ray(argv, fragment, capsys, tmp_path):
    assert cli.main(["sweep", "function_tokens", "--preset", "smoke", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
    assert not list(tmp_path.iterdir()), "nothing written before the input is valid"


def test_the_cli_validates_a_sweep_fast_and_without_ray(tmp_path):
    t0 = time.time()
    code = "import sys; from functok.book import cli; rc = cli.main(sys.argv[1:]); assert 'ray' not in sys.modules; "
    code += "sys.exit(rc)"
    argv = ["sweep", "function_tokens", "--grid", "coverage_threshold", "0.3,0.99,1.2", "--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=config.ROOT)
    assert proc.returncode == 2 and "coverage_threshold: got 1.2" in proc.stderr, proc.stderr
    assert time.time() - t0 < 5


def test_index_and_resume_state(tmp_path, capsys, monkeypatch):
    p = sweep.plan("function_tokens", "smoke", {}, {"coverage_threshold": [0.3, 0.4, 0.5]}, tmp_path)
    done, killed, failed = p.runs
    write_fresh_results(done.cfg, monkeypatch)
    killed.folder.mkdir(parents=True)  # a killed run: its staging folder and log, no results file
    (killed.folder / ".staging" / "function_tokens-x").mkdir(parents=True)
    (killed.folder / sweep.LOG).write_text("counting tokens...")
    assert [r.finished() for r in p.runs] == [True, False, False]
    sweep.write_index(p, {failed.key: {"returncode": 1, "seconds": 2.0}})
    index = sweep.read_index(tmp_path)
    assert [r["status"] for r in index["runs"]] == ["finished", "pending", "failed"]
    assert index["runs"][2]["returncode"] == 1 and index["runs"][2]["log"] == f"{failed.key}/log.txt"
    assert index["grid"] == {"coverage_threshold": [0.3, 0.4, 0.5]} and index["command"].startswith("functok sweep")
    assert not list(tmp_path.glob(".index.json.tmp-*")), "written atomically"
    assert cli.main(["sweep", "function_tokens", "--preset", "smoke", "--out", str(tmp_path), "--dry-run",
                     "--grid", "coverage_threshold", "[0.3, 0.4, 0.5]"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "3 runs, 2 to run" in out and f"{done.key}" in out


def test_the_command_plans_the_same_sweep(tmp_path):
    p = sweep.plan("function_tokens", "smoke", {"tokenizers": ["gpt2"]}, {"coverage_threshold": [0.3, 0.5]}, tmp_path)
    argv = shlex.split(p.command())[1:]
    assert argv[:4] == ["sweep", "function_tokens", "--preset", "smoke"]
    again = sweep.plan(
        "function_tokens", "smoke", cli._overrides([argv[5:7]]), cli._grid([argv[8:10]]), tmp_path
    )  # -p tokenizers '["gpt2"]' --grid coverage_threshold '[0.3, 0.5]'
    assert [r.key for r in again.runs] == [r.key for r in p.runs]


@pytest.fixture
def presets(tmp_path, monkeypatch):
    folder = tmp_path / "presets"
    folder.mkdir()
    monkeypatch.setenv("FUNCTOK_PRESETS", str(folder))
    return folder


def test_a_presets_robustness_sweeps_are_planned_into_one_folder_each(presets, tmp_path):
    (presets / "p.yaml").write_text(
        "function_tokens: {n_bins: 5}\nrobustness:\n"
        "  - chapter: function_tokens\n    grid: {coverage_threshold: [0.3, 0.5]}\n    params: {seed: 3}\n"
        "    why: because\n"
    )
    [p] = sweep.robustness_plans("p", tmp_path / "r")
    assert p.out == tmp_path / "r" / "function_tokens" and p.why == "because"
    assert [(r.cfg.coverage_threshold, r.cfg.seed, r.cfg.n_bins) for r in p.runs] == [(0.3, 3, 5), (0.5, 3, 5)]


@pytest.mark.parametrize(
    "section, needle",
    [
        ("robustness: {function_tokens: {}}\n", "expected a list"),
        ("robustness:\n  - chapter: function_tokenz\n    grid: {seed: [1]}\n", "did you mean 'function_tokens'"),
        ("robustness:\n  - chapter: function_tokens\n", "expected a mapping with chapter, grid"),
        ("robustness:\n  - chapter: function_tokens\n    grid: {seed: [1, -1]}\n", "seed: got -1"),
        (
            "robustness:\n  - {chapter: function_tokens, grid: {seed: [1]}}\n"
            "  - {chapter: function_tokens, grid: {}}\n",
            "twice",
        ),
    ],
)
def test_bad_robustness_sections_are_one_line(presets, tmp_path, section, needle):
    (presets / "p.yaml").write_text(section)
    with pytest.raises(ParamError) as e:
        sweep.robustness_plans("p", tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)


RELABEL = {"feature_coverage", "loss_split"}  # their caches hold no function-token set: a threshold only re-labels


@pytest.mark.parametrize("preset", ["embedded", "smoke"])
def test_the_book_presets_sweeps_are_small_or_relabel_from_the_cache(preset, tmp_path):
    """Chapter 1 is cheap (at most 3 runs); chapters 2 and 3 sweep only the threshold, which their tests show
    runs no model; nothing else is swept by default."""
    plans = sweep.robustness_plans(preset, tmp_path)
    assert plans and all(p.why for p in plans)
    for p in plans:
        if p.chapter in RELABEL:
            assert set(p.grid) == {"coverage_threshold"}, p.chapter
        else:
            assert p.chapter == "function_tokens" and len(p.runs) <= 3


def test_a_robustness_sweep_of_a_model_run_starts_from_its_overrides(presets, tmp_path):
    (presets / "p.yaml").write_text(
        "model_runs:\n  big: {function_tokens: {n_bins: 7, seed: 2}}\nrobustness:\n"
        "  - {chapter: function_tokens, grid: {coverage_threshold: [0.3]}}\n"
        "  - {chapter: function_tokens, model_run: big, grid: {coverage_threshold: [0.3, 0.5]}, params: {seed: 4}}\n"
    )
    main, big = sweep.robustness_plans("p", tmp_path / "r")
    assert main.out.name == "function_tokens" and big.out.name == "function_tokens.big" and big.model_run == "big"
    assert [(r.cfg.n_bins, r.cfg.seed) for r in big.runs] == [(7, 4), (7, 4)] and main.runs[0].cfg.n_bins != 7
    sweep.write_index(big)
    assert json.loads(big.index.read_text())["model_run"] == "big"
    (presets / "q.yaml").write_text(
        "robustness:\n  - {chapter: function_tokens, model_run: nope, grid: {coverage_threshold: [0.3]}}\n"
    )
    with pytest.raises(ParamError, match=r"^robustness\[0\]: model_run 'nope' has no function_tokens run"):
        sweep.robustness_plans("q", tmp_path)


def test_a_grid_point_that_is_the_books_own_run_reads_it_and_runs_nothing(presets, tmp_path, monkeypatch):
    """The book's run at the preset's threshold is not run again for the robustness page: that grid point's
    folder is the book's (the main run or the model run), its index row points there, and once the book's
    run is written the sweep counts it finished; the other points and a different fixed parameter do not."""
    (presets / "p.yaml").write_text(
        "function_tokens: {coverage_threshold: 0.4, n_bins: 5}\n"
        "model_runs:\n  big: {function_tokens: {n_bins: 7}}\nrobustness:\n"
        "  - {chapter: function_tokens, grid: {coverage_threshold: [0.3, 0.4]}}\n"
        "  - {chapter: function_tokens, model_run: big, grid: {coverage_threshold: [0.4, 0.5]}}\n"
    )
    book = tmp_path / "book" / "chapters"
    main, big = sweep.robustness_plans("p", tmp_path / "r", book)
    assert [r.cfg.out_dir for r in main.runs] == [str(main.out / main.runs[0].key), str(book)]
    assert [r.cfg.out_dir for r in big.runs] == [str(book / "big"), str(big.out / big.runs[1].key)]
    assert [r.finished() for r in main.runs + big.runs] == [False] * 4
    write_fresh_results(main.runs[1].cfg, monkeypatch)  # the book's main run, as `functok book` writes it
    assert [r.finished() for r in main.runs + big.runs] == [False, True, False, False]
    sweep.write_index(main)
    row = json.loads(main.index.read_text())["runs"][1]
    assert row["status"] == "finished" and (main.out / row["results"]).resolve() == book / "function_tokens.json"
    alone = sweep.robustness_plans("p", tmp_path / "r")  # `functok sweep`-like: no book folder, every point its own
    assert all(Path(r.cfg.out_dir).parent == p.out for p in alone for r in p.runs)
    (presets / "q.yaml").write_text(
        "robustness:\n  - {chapter: function_tokens, grid: {coverage_threshold: [0.4]}, params: {seed: 9}}\n"
    )
    [other] = sweep.robustness_plans("q", tmp_path / "r", book)  # seed 9 is not the book's run
    assert Path(other.runs[0].cfg.out_dir).parent == other.out


def test_index_is_json_with_relative_paths(tmp_path):
    p = sweep.plan("function_tokens", "smoke", {}, {"seed": [1]}, tmp_path)
    sweep.write_index(p)
    row = json.loads((tmp_path / sweep.INDEX).read_text())["runs"][0]
    assert row["results"] == f"{p.runs[0].key}/function_tokens.json" and row["status"] == "pending"


def test_a_finished_run_runs_again_when_its_code_changed(tmp_path, monkeypatch):
    """Sweeps follow the chapters' freshness rule: a results file whose inputs changed is not finished."""
    [r] = sweep.plan("function_tokens", "smoke", {}, {"coverage_threshold": [0.3]}, tmp_path).runs
    assert not r.finished()
    write_fresh_results(r.cfg, monkeypatch)
    assert r.finished()
    real = freshness.file_hash
    monkeypatch.setattr(freshness, "file_hash", lambda p: "edited" if p.name == "config.py" else real(p))
    assert not r.finished(), "a module the run imported changed"
