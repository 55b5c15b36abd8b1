"""Concept episodes and the document split chapter 5 selects and measures its concept features on.

A concept feature that re-fires on the function tokens after "Russia" is doing what the paper says; counting
those firings as false positives, as precision at the concept's own token does, rules out exactly the
features the chapter looks for. So precision is counted over episodes:

- `episode_positions`: a position is in an episode of the concept when the concept occurs there or within
  the `window` positions before it in the same document (windows are consecutive cuts of one stream, so an
  episode carries over into the next window; BOS and a window's leading BOS are not positions);
- episode precision of a feature = its firings at episode positions / all its firings;
- `document_halves`: the scanned documents split in two by stream order; features are selected on the
  first half and measured (occurrences, P(fires | concept), episode precision and its Wilson interval) on
  the second, so the measurement is not the selection's own winner's curse.
"""

from __future__ import annotations

import numpy as np


def occurrences(x: np.ndarray, ids: list[int]) -> np.ndarray:
    """Bool [n, ctx]: True at the last token of each occurrence of the token sequence `ids` in x."""
    n, T = x.shape
    k = len(ids)
    hit = np.zeros((n, T), dtype=bool)
    if k > T:
        return hit
    m = np.ones((n, T - k + 1), dtype=bool)
    for j, t in enumerate(ids):
        m &= x[:, j : T - k + 1 + j] == t
    hit[:, k - 1 :] = m
    return hit


def episode_positions(occ: np.ndarray, docs: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Bool [n, T]: valid positions with an occurrence (`occ`, at the concept's last token) at distance
    0..window before them, counted over valid positions in stream order, in the same document (`docs`)."""
    idx = np.flatnonzero(valid.reshape(-1))
    o = occ.reshape(-1)[idx]
    d = docs.reshape(-1)[idx]
    k = np.arange(idx.size)
    last = np.maximum.accumulate(np.where(o, k, -1)) if idx.size else k
    ep = (last >= 0) & (k - last <= window) & (d[np.clip(last, 0, None)] == d)
    out = np.zeros(occ.size, dtype=bool)
    out[idx] = ep
    return out.reshape(occ.shape)


def document_halves(docs: np.ndarray) -> np.ndarray:
    """Bool [n, T]: True on the second half of the documents (stream order), where features are measured."""
    n_docs = int(docs.max()) + 1 if docs.size else 0
    return docs >= n_docs - n_docs // 2 if n_docs > 1 else np.zeros(docs.shape, dtype=bool)


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson 95% interval of k successes in n trials (nan, nan for n = 0)."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def distance_bins(horizon: int) -> list[tuple[int, int]]:
    """Distance bins (positions after the concept's last occurrence) for re-activation at matched distance."""
    edges = [(1, 4), (5, 16), (17, 64), (65, horizon)]
    return [(lo, min(hi, horizon)) for lo, hi in edges if lo <= horizon]


def by_distance(counts: list[dict], bins: list[tuple[int, int]], k: dict) -> dict:
    """Per distance bin the function and content tokens' firing rates with Wilson 95% intervals; the content
    rate matched to the function tokens' distances (each bin's content rate weighted by the bin's share of
    the function tokens); the function rate's interval over all bins."""
    rows, matched = [], 0.0
    n_fn = sum(b["fn"] for b in counts)
    for (lo, hi), b in zip(bins, counts):
        fn_rate = b["fn_fired"] / b["fn"] if b["fn"] else float("nan")
        ct_rate = b["ct_fired"] / b["ct"] if b["ct"] else float("nan")
        rows.append({"lo": lo, "hi": hi, **b, "fn_rate": fn_rate, "ct_rate": ct_rate,
                     "fn_interval": list(wilson(b["fn_fired"], b["fn"])),
                     "ct_interval": list(wilson(b["ct_fired"], b["ct"]))})  # fmt: skip
        if b["fn"]:
            matched += (b["fn"] / n_fn) * ct_rate if ct_rate == ct_rate else float("nan")
    return {
        "by_distance": rows,
        "ct_after_rate_matched": matched if n_fn else float("nan"),
        "fn_after_interval": list(wilson(k["fn_after_fired"], k["fn_after"])),
    }
