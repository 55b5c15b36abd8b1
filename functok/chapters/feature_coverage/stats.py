"""Chapter 2's statistics on a token-feature graph: per-layer coverage, firing counts, SAE density and
features fired per occurrence of function and content tokens (`layer_stats`), the frequency-matched
comparison and the degree-vs-occurrences fit."""

from __future__ import annotations

import math

import numpy as np

from functok.chapters.feature_coverage.null import null_summary, topk_positions


def matched_comparison(degree: np.ndarray, counts: np.ndarray, is_function: np.ndarray, ratio: float = 2.0) -> dict:
    """Function tokens vs content tokens of the same frequency.

    Tokens seen in the sample are binned by occurrences: bin b = floor(log(count) / log(ratio)).
    Each function token is compared with the median degree of the content tokens of its bin (a
    function token whose bin holds no content token is left unmatched). Returns per-token rows, the
    number matched, the share above their matched median, the median of degree / matched median, and
    one-sided sign-test p-values (ties dropped) for 'function > content' and 'function < content'."""
    from scipy.stats import binomtest

    seen = counts > 0
    b = np.full(counts.shape, -1, dtype=np.int64)
    b[seen] = np.floor(np.log(counts[seen]) / math.log(ratio) + 1e-9).astype(np.int64)
    content = seen & ~is_function
    rows = []
    for t in np.flatnonzero(seen & is_function):
        peers = np.flatnonzero(content & (b == b[t]))
        row = {
            "token_id": int(t),
            "count": int(counts[t]),
            "degree": int(degree[t]),
            "bin": int(b[t]),
            "n_matched": int(peers.size),
        }
        if peers.size:
            med = float(np.median(degree[peers]))
            row.update(matched_median=med, ratio=float((degree[t] + 1) / (med + 1)))
        rows.append(row)
    matched = [r for r in rows if r["n_matched"]]
    above = sum(r["degree"] > r["matched_median"] for r in matched)
    below = sum(r["degree"] < r["matched_median"] for r in matched)
    n = above + below
    out = {
        "ratio": ratio,
        "n_function_seen": len(rows),
        "n_matched": len(matched),
        "n_above": int(above),
        "n_below": int(below),
        "share_above": above / len(matched) if matched else float("nan"),
        "median_ratio": float(np.median([r["ratio"] for r in matched])) if matched else float("nan"),
        "p_greater": float(binomtest(above, n, 0.5, alternative="greater").pvalue) if n else float("nan"),
        "p_less": float(binomtest(above, n, 0.5, alternative="less").pvalue) if n else float("nan"),
        "rows": rows,
    }
    return out


def degree_vs_occurrences(degree: np.ndarray, counts: np.ndarray, is_function: np.ndarray) -> dict:
    """Least-squares line log10(degree) = a + b log10(occurrences) over content tokens seen with
    degree > 0; its R^2 over content tokens and over all such tokens, and the mean residual of
    function tokens (10**residual: how many times more features than frequency alone predicts)."""
    ok = (counts > 0) & (degree > 0)
    x, y = np.log10(np.maximum(counts, 1)), np.log10(np.maximum(degree, 1))
    c = ok & ~is_function
    f = ok & is_function
    if c.sum() < 3:
        return {
            "slope": float("nan"),
            "intercept": float("nan"),
            "r2_content": float("nan"),
            "r2_all": float("nan"),
            "function_residual": float("nan"),
            "n_content": int(c.sum()),
            "n_function": int(f.sum()),
        }
    slope, icpt = np.polyfit(x[c], y[c], 1)

    def r2(m):
        res = y[m] - (icpt + slope * x[m])
        tot = ((y[m] - y[m].mean()) ** 2).sum()
        return float(1 - (res**2).sum() / tot) if tot > 0 else float("nan")

    fres = float(np.mean(y[f] - (icpt + slope * x[f]))) if f.any() else float("nan")
    return {
        "slope": float(slope),
        "intercept": float(icpt),
        "r2_content": r2(c),
        "r2_all": r2(ok),
        "function_residual": fres,
        "function_factor": float(10**fres) if f.any() else float("nan"),
        "n_content": int(c.sum()),
        "n_function": int(f.sum()),
    }


def layer_stats(g, is_function: np.ndarray, top_k: int, match_ratio: float, null_min_rank=None) -> dict:
    """Everything one layer reports, from its graph, and the coverage null model's summary for Table 1's
    rows when `null_min_rank` (`null.CoverageNull.min_rank`, positions ranked as the graph's) is given."""
    counts = g.token_counts()
    ranking = g.ranking()
    seen = ranking[counts[ranking] > 0]
    degree = g.degree()
    fdeg = g.feature_degree()
    connected = int(np.count_nonzero(fdeg))
    k = min(top_k, seen.size)
    cov = g.coverage_topk(seen, k, of="all") if k else np.zeros(0)
    cov_c = cov * g.d_sae / connected if connected else cov * 0
    fn, ct = g.feature_fire_counts(is_function)
    fired = (fn + ct) > 0
    occ_f, occ_c = int(counts[is_function].sum()), int(counts[~is_function].sum())
    null = (
        {}
        if null_min_rank is None
        else {"null_coverage_topk": null_summary(null_min_rank, topk_positions(counts, seen, k))}
    )
    return {
        "d_sae": int(g.d_sae),
        "n_tokens": int(counts.sum()),
        "n_distinct_tokens": int(seen.size),
        "n_firings": int(g.n_firings),
        "l0_in_pass": g.n_firings / max(int(counts.sum()), 1),
        "density": g.n_firings / max(int(counts.sum()), 1) / g.d_sae,  # L0 / d_sae: share of features per position
        "n_edges": int(g.n_edges),
        "connected_features": connected,
        "connected_share": connected / g.d_sae,
        "coverage_topk": [float(v) for v in cov],
        "coverage_topk_connected": [float(v) for v in cov_c],
        **null,
        "topk_token_ids": [int(t) for t in seen[:k]],
        "topk_is_function": [bool(is_function[t]) for t in seen[:k]],
        "function_firing_share": float(fn.sum() / max(fn.sum() + ct.sum(), 1)),
        "features_fired_by_function": int(np.count_nonzero(fn)),
        "features_only_function": int(np.count_nonzero((fn > 0) & (ct == 0))),
        "features_only_content": int(np.count_nonzero((ct > 0) & (fn == 0))),
        "features_mostly_function": int(np.count_nonzero(fired & (fn > ct))),
        "function_token_share_of_occurrences": float(counts[is_function].sum() / max(counts.sum(), 1)),
        "features_per_occurrence": {  # firings by the group's occurrences / its occurrences (its mean L0)
            "function": float(fn.sum() / occ_f) if occ_f else float("nan"),
            "content": float(ct.sum() / occ_c) if occ_c else float("nan"),
        },
        "matched": matched_comparison(degree, counts, is_function, match_ratio),
        "degree_fit": degree_vs_occurrences(degree, counts, is_function),
        "_degree": degree,
        "_counts": counts,
        "_ranking": seen,
        "_fire_function": fn,
        "_fire_content": ct,
    }
