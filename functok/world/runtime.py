"""How heavy libraries run inside functok: quiet Hugging Face progress bars, torch thread counts."""

from __future__ import annotations

import os
from contextlib import contextmanager

from functok.core.config import ParamError


@contextmanager
def quiet_hf():
    """No per-file progress bars from transformers (save/load) or datasets (save_to_disk) inside:
    at every checkpoint they would drown the training progress in a terminal or papermill log."""
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    hf_on, ds_on = hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        if hf_on:
            hf_logging.enable_progress_bar()
        if ds_on:
            enable_progress_bars()


def n_threads() -> int:
    """Threads for training: FUNCTOK_THREADS, else every core. Use FUNCTOK_THREADS=1 when other work
    shares the cores: a 2-thread run on a busy 2-core machine waits at every parallel region and
    runs about 100x slower than a 1-thread one."""
    env = os.environ.get("FUNCTOK_THREADS", "")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ParamError(f"FUNCTOK_THREADS: got {env!r}; expected a positive integer")
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
