"""The functok command line: parsing, one-line refusals with exit code 2, listings."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from functok.book import cli
from functok.chapters.function_tokens.config import FunctionTokensConfig
from functok.core import config


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("0.4", 0.4),
        ("1e-3", 1e-3),
        ("true", True),
        ("[1, 2]", [1, 2]),
        ("[gpt2, embedded]", ["gpt2", "embedded"]),
        ("gpt2", "gpt2"),
        (" of", " of"),
        ("None", None),
        ("./data/x.txt", "./data/x.txt"),
        ("a: b", "a: b"),
    ],
)
def test_parse_value_like_papermill(text, value):
    assert cli.parse_value(text) == value


def test_misspelled_parameter_answers_in_one_line_fast():
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "functok", "run", "function_tokens", "-p", "coverage_treshold", "0.3"],
        capture_output=True,
        text=True,
        cwd=config.ROOT,
    )
    elapsed = time.time() - t0
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "coverage_threshold" in lines[0]
    assert elapsed < 5, f"validation took {elapsed:.1f}s"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "function_tokenz"], "did you mean 'function_tokens'"),
        (["run", "function_tokens", "--preset", "nope"], "unknown preset"),
        (["run", "function_tokens", "-p", "n_bins", "0"], "n_bins: got 0"),
        (["params", "nope"], "unknown chapter"),
        (["pretrain", "-p", "depths", "[2]"], "depths:"),
        (["pretrain", "-p", "min_lr", "nan"], "min_lr: got nan; expected finite numbers"),
        (["run", "function_tokens", "-p", "tokenizers", "[]"], "tokenizers: got []; expected at least one value"),
        (["run", "function_tokens", "--out", ""], "out_dir: got ''"),
    ],
)
def test_bad_input_exits_2(argv, fragment, capsys, monkeypatch):
    from functok.book import run

    monkeypatch.setattr(run, "run_chapter", lambda cfg: pytest.fail(f"ran {cfg.chapter} on bad input"))
    monkeypatch.setattr(cli, "pretrain_process", lambda cfg: pytest.fail("pre-trained on bad input"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


def test_nan_answers_in_one_line_fast():
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "functok", "run", "function_tokens", "-p", "coverage_threshold", "nan"],
        capture_output=True,
        text=True,
        cwd=config.ROOT,
        timeout=120,
    )
    elapsed = time.time() - t0
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "coverage_threshold: got nan" in lines[0]
    assert elapsed < 5, f"validation took {elapsed:.1f}s"


@pytest.mark.parametrize("bad", [["top_n", "-1"], ["corpus", "DOCS"]])
def test_validation_imports_nothing_heavy(bad, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"body": "no text field"}\n')
    bad = [str(docs) if v == "DOCS" else v for v in bad]
    code = (
        f"import sys; from functok.book import cli; rc = cli.main(['run', 'function_tokens', '-p', *{bad!r}]);"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'sae_lens', 'papermill') if m in sys.modules];"
        "print(rc, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=config.ROOT).stdout
    assert out.strip() == "2 []"


def test_params_lists_every_parameter(capsys):
    assert cli.main(["params", "function_tokens"]) == 0
    out = capsys.readouterr().out
    for name in config.defaults(FunctionTokensConfig):
        assert f"  {name} " in out
    assert "[0.01, 0.99]" in out  # the coverage threshold's range
    assert [line for line in out.splitlines() if line.startswith("  tokenizers ") and "non-empty" in line]
    assert [line for line in out.splitlines() if line.startswith("  burst_tokens ") and ">= 2 values" in line]
    cheap = [line.split()[0] for line in out.splitlines() if line.endswith("[cheap: the live form redraws it]")]
    assert cheap == ["top_n", "n_bins", "sweep_thresholds"]


def test_presets_lists_cost_and_needs(capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in config.presets():
        assert out.count(f"{name}:") >= 1
    assert out.count("time:") == len(config.presets())
