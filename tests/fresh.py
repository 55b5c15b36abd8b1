"""A results file as a real chapter run leaves it, without a kernel: what sweeps and `functok book` count as
finished and up to date (tests that fake a finished run use it instead of an empty file)."""

from __future__ import annotations

import json

from functok.book import run
from functok.core import results
from functok.core.config import ChapterConfig
from functok.core.freshness import NOTEBOOK_ENV


def write_fresh_results(cfg: ChapterConfig, monkeypatch) -> None:
    """Write cfg's notebook and results file into cfg.out_dir as `functok run` would (inputs hashed)."""
    out = run._out_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv(NOTEBOOK_ENV, str(run.chapter_source(cfg.chapter)))
    monkeypatch.delenv(results.STAGING_ENV, raising=False)
    recorded = type(cfg)(**{**vars(cfg), "out_dir": run.relpath(out)})
    results.Run(recorded).write(results.ChapterResult({}, [], {}, {}))
    (out / f"{cfg.chapter}.ipynb").write_text(json.dumps({"cells": [], "metadata": {}}))
