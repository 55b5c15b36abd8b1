"""The pre-training schedule, each part a pure function of the config and the step (so a killed run
resumes on the same data and learning rate): the number of optimizer steps, the log-spaced checkpoint
steps, the windows of each step and the learning rate. `functok.world.pretrain` trains on it."""

from __future__ import annotations

import math

import numpy as np

from functok.world.config import PretrainConfig
from functok.world.runs import total_steps


def checkpoint_schedule(n_steps: int, n_checkpoints: int) -> list[int]:
    """`n_checkpoints` distinct steps from 0 to n_steps, log-spaced (all steps if there are fewer)."""
    if n_steps + 1 <= n_checkpoints:
        return list(range(n_steps + 1))
    ideal = np.geomspace(1, n_steps, n_checkpoints - 1)
    out: list[int] = []
    for v in ideal:  # round, keeping the steps distinct
        out.append(max(int(round(v)), (out[-1] + 1) if out else 1))
    out[-1] = n_steps
    for i in range(len(out) - 2, -1, -1):  # keep room below the last step
        out[i] = min(out[i], out[i + 1] - 1)
    return [0, *out]


def n_steps(cfg: PretrainConfig) -> int:
    """The run's optimizer steps: its training tokens in batches of batch_size windows."""
    return total_steps(cfg.train_tokens, cfg.batch_size, cfg.context_size)


def batch_indices(seed: int, step: int, batch_size: int, n_windows: int, _perms: dict | None = None) -> np.ndarray:
    """Window indices of optimizer step `step` (0-based): a fresh seeded permutation of all windows per
    epoch, read in order. A pure function of (seed, step), so a resumed run reads the same data."""
    perms = {} if _perms is None else _perms
    g = np.arange(step * batch_size, (step + 1) * batch_size)
    idx = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(g // n_windows):
        e = int(e)
        if e not in perms:
            perms.clear()
            perms[e] = np.random.default_rng([seed, e]).permutation(n_windows)
        sel = g // n_windows == e
        idx[sel] = perms[e][g[sel] % n_windows]
    return idx


def lr_at(cfg: PretrainConfig, step: int, total: int) -> float:
    """Learning rate of optimizer update `step` (0-based): linear warm-up, then cosine to min_lr."""
    warm = int(round(cfg.warmup_fraction * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    span = max(1, total - warm - 1)
    progress = min(1.0, (step - warm) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
