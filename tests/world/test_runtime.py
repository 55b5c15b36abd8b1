"""functok.world.runtime: thread counts and quiet Hugging Face bars."""

from __future__ import annotations

import pytest

from functok.core.config import ParamError
from functok.world import runtime


def test_threads_follow_the_environment(monkeypatch):
    monkeypatch.setenv("FUNCTOK_THREADS", "3")
    assert runtime.n_threads() == 3
    monkeypatch.delenv("FUNCTOK_THREADS")
    assert runtime.n_threads() >= 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("FUNCTOK_THREADS", bad)
        with pytest.raises(ParamError, match="^FUNCTOK_THREADS: got"):
            runtime.n_threads()


def test_quiet_hf_restores_the_bars():
    from datasets.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    before = (hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled())
    with runtime.quiet_hf():
        assert not hf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
    assert (hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled()) == before
