"""Running a chapter: the results file and the notebook land in the output folder together, only after
papermill succeeded; a failure keeps its notebook under _build/failed/ and re-raises the chapter's own
error; a ParamError raised inside the kernel reaches the user as one line with exit code 2."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
from pathlib import Path

import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from functok.book import cli, run
from functok.chapters import registry
from functok.core import config, freshness, results
from functok.core.cache import relpath

STAGING, LOCK = ".staging", ".lock"  # <out>/.staging/<chapter>-XXXX/, locked while its run lives
STAGING_ENV = "FUNCTOK_STAGING_DIR"  # where the kernel's Run.write puts the results file
EMPTY_NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def failed_dir(tmp_path, monkeypatch):
    d = tmp_path / "failed"
    monkeypatch.setattr(run, "FAILED_DIR", d, raising=False)
    return d


def chapter_in(out: Path) -> config.ChapterConfig:
    return registry.resolve("function_tokens", "smoke", {"out_dir": str(out)})


def fake_papermill(seen: dict, error: Exception | None = None, before_error=None):
    """Does what a chapter notebook does (the results file through Run.write, then the executed notebook),
    then fails with `error` if one is given."""

    def execute_notebook(source, output, parameters, **kwargs):
        seen["parameters"] = dict(parameters)
        seen["staging"] = os.environ.get(STAGING_ENV)
        cfg = registry.resolve("function_tokens", parameters["preset"], parameters["overrides"])
        seen["results"] = results.Run(cfg).write(results.ChapterResult({"run": "new"}, [], {}, {}))
        Path(output).write_text(json.dumps(EMPTY_NOTEBOOK | {"metadata": {"run": "new"}}))
        if error is not None:
            if before_error:
                before_error()
            raise error

    return execute_notebook


def test_the_names_the_tests_use():
    assert (run.STAGING, run.LOCK, results.STAGING_ENV) == (STAGING, LOCK, STAGING_ENV)


def test_success_moves_results_and_notebook_and_removes_dead_staging(tmp_path, monkeypatch, failed_dir):
    out = tmp_path / "out"
    dead = out / STAGING / "function_tokens-dead"  # a killed run's folder: its lock is free
    dead.mkdir(parents=True)
    (dead / LOCK).touch()
    (dead / "function_tokens.json").write_text('{"run": "killed"}')
    live = out / STAGING / "function_tokens-live"  # a run still going: its lock is held
    live.mkdir()
    (out / ".function_tokens.tmp.ipynb").write_text("{}")  # left by a killed run of the earlier run.py
    seen: dict = {}
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill(seen))
    with open(live / LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        final = run.run_chapter(chapter_in(out))
    assert final == out / "function_tokens.ipynb"
    assert json.loads(final.read_text())["metadata"] == {"run": "new"}
    doc = json.loads((out / "function_tokens.json").read_text())
    assert doc["results"] == {"run": "new"}
    assert doc["params"]["out_dir"] == seen["parameters"]["overrides"]["out_dir"] == relpath(out), "the user's folder"
    assert seen["parameters"] == {"preset": "smoke", "overrides": {"out_dir": relpath(out)}}, "only what differs"
    assert Path(seen["staging"]).parent == out / STAGING and seen["results"].parent == Path(seen["staging"])
    assert STAGING_ENV not in os.environ
    assert sorted(p.name for p in (out / STAGING).iterdir() if p.is_dir()) == ["function_tokens-live"]
    assert sorted(p.name for p in out.iterdir()) == [STAGING, "function_tokens.ipynb", "function_tokens.json"]
    assert not failed_dir.exists()


def test_failure_leaves_the_output_folder_alone_and_reraises_the_chapters_error(tmp_path, monkeypatch, failed_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "function_tokens.json").write_text('{"run": "old"}')
    (out / "function_tokens.ipynb").write_text('{"run": "old"}')
    seen: dict = {}
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill(seen, RuntimeError("boom in the chapter")))
    with pytest.raises(RuntimeError, match="^boom in the chapter$"):
        run.run_chapter(chapter_in(out))
    assert seen["results"].exists() is False, "the staged results file must not survive a failure"
    assert (out / "function_tokens.json").read_text() == '{"run": "old"}'
    assert (out / "function_tokens.ipynb").read_text() == '{"run": "old"}'
    assert not [p for p in (out / STAGING).iterdir() if p.is_dir()], "staging folder left behind"
    assert json.loads((failed_dir / "function_tokens.ipynb").read_text())["metadata"] == {"run": "new"}


def test_failed_notebook_is_kept_across_file_systems(tmp_path, monkeypatch, failed_dir):
    """_build/failed may sit on another file system than the output folder: no rename works there."""

    def no_renames():
        def cross_device(*args, **kwargs):
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "replace", cross_device)
        monkeypatch.setattr(os, "rename", cross_device)

    out = tmp_path / "out"
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill({}, RuntimeError("boom"), no_renames))
    with pytest.raises(RuntimeError, match="^boom$"):
        run.run_chapter(chapter_in(out))
    assert json.loads((failed_dir / "function_tokens.ipynb").read_text())["metadata"] == {"run": "new"}
    assert not (out / "function_tokens.json").exists()


def test_param_error_inside_the_kernel_is_one_line_and_exit_2(tmp_path, monkeypatch, failed_dir, capsys):
    message = "layers: layer 99 requested; the model has 2 layers (0..1)"
    error = PapermillExecutionError(2, 2, "analysis = fc.analyze(cfg)", "ParamError", message, ["a", "long", "tb"])
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill({}, error))
    out = tmp_path / "out"
    assert cli.main(["run", "function_tokens", "--preset", "smoke", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"functok: error: {message}"]
    assert not (out / "function_tokens.json").exists()


@pytest.mark.parametrize(
    "injected, message",
    [
        (  # a misspelled override: the kernel resolves overrides like the CLI's -p
            {"preset": "smoke", "overrides": {"coverage_treshold": 0.3}},
            "coverage_treshold: unknown parameter for chapter 'function_tokens'; did you mean 'coverage_threshold'?",
        ),
        (  # papermill -p of a field as a notebook variable: it would be silently unused
            {"preset": "smoke", "overrides": {}, "n_bins": 5},
            "n_bins: not a notebook parameter; expected only preset and overrides (write overrides = {'n_bins': ...})",
        ),
    ],
)
def test_a_real_kernel_refuses_a_bad_injected_parameter_in_one_line(
    tmp_path, monkeypatch, failed_dir, capfd, injected, message
):
    """papermill injects what it is given; the kernel's setup cell (from_notebook) refuses what the chapter
    would not use, and `functok run` reports that ParamError in one line with exit code 2."""
    out = tmp_path / "out"
    monkeypatch.setattr(
        run,
        "notebook_parameters",
        lambda cfg: {**injected, "overrides": {**injected["overrides"], "out_dir": str(out)}},
    )
    assert cli.main(["run", "function_tokens", "--preset", "smoke", "--out", str(out)]) == 2
    err = capfd.readouterr().err.strip().splitlines()  # also what the kernel process itself writes
    assert err == [f"functok: error: {message}"]
    assert not (out / "function_tokens.json").exists()
    assert (failed_dir / "function_tokens.ipynb").exists()


def test_a_chapter_is_up_to_date_while_its_parameters_versions_and_inputs_match(tmp_path, monkeypatch):
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill({}))
    cfg = chapter_in(tmp_path / "out")
    assert run.staleness(cfg) == ["no results"]  # nothing written yet
    run.run_chapter(cfg)
    assert run.staleness(cfg) == []
    assert run.up_to_date(cfg)
    assert run.staleness(dataclasses.replace(cfg, coverage_threshold=0.5)) == ["parameters"]
    monkeypatch.setattr(run, "versions", lambda: results.versions() | {"torch": "0.0"})
    assert run.staleness(cfg) == ["package versions"]
    monkeypatch.setattr(run, "versions", results.versions)
    (tmp_path / "out" / "function_tokens.ipynb").unlink()
    assert not run.up_to_date(cfg)


def test_a_change_to_an_imported_module_or_the_notebook_makes_a_run_stale(tmp_path, monkeypatch):
    """Freshness follows content, not the commit: the recorded hash of a module the run imported, or of the
    notebook, no longer matching makes it stale, and the reason names the file."""
    monkeypatch.setattr(papermill, "execute_notebook", fake_papermill({}))
    cfg = chapter_in(tmp_path / "out")
    run.run_chapter(cfg)
    doc = json.loads((tmp_path / "out" / "function_tokens.json").read_text())
    inputs = doc["provenance"]["inputs"]
    assert list(inputs["notebook"]) == ["chapters/01_function_tokens.ipynb"]
    assert "functok/core/results.py" in inputs["modules"]
    real = freshness.file_hash
    monkeypatch.setattr(freshness, "file_hash", lambda p: "edited" if p.name == "results.py" else real(p))
    assert run.staleness(cfg) == ["functok/core/results.py"]
    monkeypatch.setattr(freshness, "file_hash", real)
    monkeypatch.setattr(freshness, "notebook_hash", lambda p: "edited")
    assert run.staleness(cfg) == ["chapters/01_function_tokens.ipynb"]


def test_the_notebook_hash_ignores_outputs_and_the_data_reads_are_recorded(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1"], "outputs": [], "metadata": {}}], "metadata": {}}
    a, b = tmp_path / "a.ipynb", tmp_path / "b.ipynb"
    a.write_text(json.dumps(nb))
    nb["cells"][0]["outputs"] = [{"output_type": "stream", "text": "1"}]
    b.write_text(json.dumps(nb))
    assert freshness.notebook_hash(a) == freshness.notebook_hash(b)
    nb["cells"][0]["source"] = ["x = 2"]
    b.write_text(json.dumps(nb))
    assert freshness.notebook_hash(a) != freshness.notebook_hash(b)
    freshness.track_reads()
    config.load_preset("smoke")  # opens data/presets/smoke.yaml
    assert config.ROOT / "data" / "presets" / "smoke.yaml" in freshness.data_reads()
    assert "data/presets/smoke.yaml" in freshness.inputs()["data"]
