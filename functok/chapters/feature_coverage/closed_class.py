"""A frequency control that does not use frequency to define function (beyond the paper).

The paper's function tokens are the most frequent tokens, so "function" and "count above a cut" are the
same thing, and a token seen more often gets more chances to fire features. Here function words are
labelled without counts (`functok.world.closed_class.function_label`: closed-class words and punctuation),
and degree is rarefied so that counts no longer drive it:

- rarefied degree D_n(t): the expected number of distinct features among n occurrences of token t drawn
  without replacement (Hurlbert's rarefaction): sum over features f of 1 - C(N_t - c_tf, n) / C(N_t, n),
  with N_t the token's occurrences and c_tf those that fired f (exact from the graph's edge counts; tokens
  seen fewer than n times are left out);
- the test: function-labelled against content-labelled tokens within bins of log10(count) of width
  BIN_WIDTH (tokens of about the same count), the statistic the mean over bins of the difference of the two
  groups' mean D_n, weighted by the bin's function tokens (bins holding both labels); its p-value from
  `n_permutations` seeded permutations of the labels within each bin (two-sided, (1 + hits) / (1 + P)),
  whose Monte Carlo standard error sqrt(p (1 - p) / P) is reported beside it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from functok.world.closed_class import function_label

BIN_WIDTH = 0.1  # log10 count: tokens within a factor 1.26 of each other share a bin
MIN_TOKENS = 5  # per label, for a test


def rarefied_degree(edges, token_counts: np.ndarray, n: int) -> np.ndarray:
    """float64[vocab]: expected distinct features among n occurrences of each token (nan: seen fewer times)."""
    tokens, _, c = edges
    N = token_counts.astype(np.float64)
    Nt = N[tokens]
    ok = Nt >= n
    # C(N - c, n) / C(N, n) in logs; zero when fewer than n occurrences did not fire f
    rest = Nt - c
    some = ok & (rest >= n)  # else every n occurrences include one that fired f: the ratio is 0
    r, t = np.where(some, rest, n), np.where(some, Nt, n)  # in range for gammaln where the ratio is used
    log_ratio = np.where(some, gammaln(r + 1) - gammaln(r - n + 1) - gammaln(t + 1) + gammaln(t - n + 1), -np.inf)
    contrib = np.where(ok, 1.0 - np.exp(log_ratio), 0.0)
    out = np.bincount(tokens, weights=contrib, minlength=token_counts.shape[0])
    out[token_counts < n] = np.nan
    return out


def _bins(counts: np.ndarray) -> np.ndarray:
    return np.floor(np.log10(counts) / BIN_WIDTH).astype(np.int64)


def binned_permutation_test(values, is_function, counts, n_permutations: int, seed: int) -> dict:
    """Function vs content within count bins (the module docstring's statistic and p-value)."""
    values, is_function = np.asarray(values, float), np.asarray(is_function, bool)
    bins = _bins(np.asarray(counts, float))
    groups = []
    for b in np.unique(bins):
        m = bins == b
        k = int(is_function[m].sum())
        if 0 < k < int(m.sum()):
            groups.append((values[m], is_function[m], k))
    n_fn = sum(k for _, _, k in groups)
    n_ct = sum(len(v) - k for v, _, k in groups)
    out = {"n_bins": len(groups), "n_function": n_fn, "n_content": n_ct, "n_permutations": int(n_permutations)}
    if n_fn < MIN_TOKENS or n_ct < MIN_TOKENS:
        return {**out, "difference": float("nan"), "p": float("nan"), "p_se": float("nan")}

    def stat(fsums) -> np.ndarray:  # fsums: per bin, the function group's sum of values (any leading shape)
        d = 0.0
        for (v, _, k), fs in zip(groups, fsums):
            d = d + k * (fs / k - (v.sum() - fs) / (len(v) - k))
        return d / n_fn

    obs = float(stat([v[f].sum() for v, f, _ in groups]))
    rng = np.random.default_rng(seed)
    perm = np.zeros(n_permutations)
    for lo in range(0, n_permutations, 1000):  # chunks bound the memory: 1000 x (tokens in a bin)
        m = min(1000, n_permutations - lo)
        sums = []
        for v, _, k in groups:
            pick = np.argpartition(rng.random((m, len(v))), k - 1, axis=1)[:, :k]
            sums.append(v[pick].sum(axis=1))
        perm[lo : lo + m] = stat(sums)
    hits = int(np.sum(np.abs(perm) >= abs(obs) - 1e-12))
    p = (1 + hits) / (1 + n_permutations)
    return {**out, "difference": obs, "p": p, "p_se": float(np.sqrt(p * (1 - p) / n_permutations))}


def closed_class_control(g, labels: np.ndarray, sizes, n_permutations: int, seed: int) -> dict:
    """Per rarefaction size n: the test over the tokens seen at least n times.

    labels: int8[vocab], 1 function-labelled, 0 content-labelled, -1 neither."""
    counts = g.token_counts()
    edges = g.edges()
    out = {}
    for n in sizes:
        d = rarefied_degree(edges, counts, int(n))
        keep = ~np.isnan(d) & (labels >= 0)
        r = binned_permutation_test(d[keep], labels[keep] == 1, counts[keep], n_permutations, seed)
        fn, ct = keep & (labels == 1), keep & (labels == 0)
        r["mean_function"] = float(d[fn].mean()) if fn.any() else float("nan")
        r["mean_content"] = float(d[ct].mean()) if ct.any() else float("nan")
        out[int(n)] = r
    return out


def token_labels(tok, token_counts: np.ndarray, classes) -> np.ndarray:
    """int8[vocab]: `function_label` of every token seen (1 function, 0 content, -1 neither or unseen)."""
    out = np.full(token_counts.shape[0], -1, np.int8)
    for t in np.flatnonzero(token_counts > 0):
        lab = function_label(tok.decode([int(t)]), classes)
        out[t] = -1 if lab is None else int(lab == "function")
    return out
