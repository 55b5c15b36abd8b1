"""Chapter 3's statistics: the four groups' keys, the window-level cluster bootstrap, ratio means
and intervals, smoothing of the training log and the convergence rule."""

from __future__ import annotations

import numpy as np

from functok.world.loss_groups import GROUPS


def bootstrap_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n] window indices resampled with replacement; the same for every evaluation on the
    same number of windows (paired comparisons)."""
    return np.random.default_rng([seed, n]).integers(0, n, size=(n_boot, n))


def ratio_means(sums: np.ndarray, counts: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """sum / count per column; with idx [B, n], one row per bootstrap resample ([B, cols])."""
    if idx is None:
        c = counts.sum(0)
        return np.where(c > 0, sums.sum(0) / np.maximum(c, 1), np.nan)
    s = sums[idx].sum(1)
    c = counts[idx].sum(1)
    return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0."""
    a = (1 - level) / 2
    return np.nanquantile(samples, a, axis=0), np.nanquantile(samples, 1 - a, axis=0)


def convergence_step(steps, values, fraction: float):
    """First step after which the loss stays within `fraction` of its total decrease of its final value:
    min s such that L(t) - L_final <= fraction * (L_first - L_final) for every t >= s. None if the loss
    did not decrease."""
    steps, v = list(steps), np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    steps, v = [s for s, k in zip(steps, ok) if k], v[ok]
    if v.size < 2 or not v[0] > v[-1]:
        return None
    good = (v - v[-1]) <= fraction * (v[0] - v[-1])
    bad = np.nonzero(~good)[0]
    return steps[int(bad[-1]) + 1] if bad.size else steps[0]


def smooth_log(log, window: int):
    """The training log's loss columns as a centred rolling mean over `window` steps."""
    cols = ["loss", *GROUPS]
    out = log[["step", "tokens_seen"]].copy()
    for c in cols:
        out[c] = log[c].astype(float).rolling(window, center=True, min_periods=1).mean()
    return out.rename(columns={"loss": "all"})


KEYS = (*GROUPS, "all")


CONTENT_NEXT = ("function->content", "content->content")


FUNCTION_NEXT = ("function->function", "content->function")


def order_share(replicates: np.ndarray, order: list[str]) -> float:
    """Share of bootstrap replicates ([B, len(KEYS)] group means) whose groups are strictly in `order`
    (lowest first): how often the resampled windows give that order."""
    cols = [KEYS.index(k) for k in order]
    r = np.asarray(replicates)[:, cols]
    return float(np.mean(np.all(r[:, :-1] < r[:, 1:], axis=1)))
