"""Chapter 2's statistics on a token-feature graph: per-layer coverage, firing counts, SAE density and
features fired per occurrence of function and content tokens (`layer_stats`), the frequency control
(`frequency.frequency_control`: regression and matched pairs) and the degree-vs-occurrences line."""

from __future__ import annotations

import numpy as np

from functok.chapters.feature_coverage.frequency import ControlParams, frequency_control
from functok.chapters.feature_coverage.null import null_summary, topk_positions
from functok.chapters.feature_coverage.null_curve import matched_scale, null_curves


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


def layer_stats(
    g,
    is_function: np.ndarray,
    top_k: int,
    null_min_rank=None,
    control: ControlParams = ControlParams(),
    curves: tuple[int, int, float] | None = None,
) -> dict:
    """Everything one layer reports, from its graph, and the coverage null model's summary for Table 1's
    rows when `null_min_rank` (`null.CoverageNull.min_rank`, positions ranked as the graph's) is given.
    With `curves` = (draws, seed, the paper's firings per feature): the coverage curves against the nulls
    and the matched-scale coverage (`null_curve`). The frequency control's p-values are per layer here;
    `frequency.correct_layers` adjusts them."""
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
    if curves is not None and k:
        n_draws, seed, paper_fpf = curves
        edges, top = g.edges(), [int(t) for t in seen[:k]]
        null["null_curves"] = null_curves(g, edges, is_function, top, null_min_rank, n_draws, seed)
        null["matched_scale"] = matched_scale(g, edges, top, paper_fpf)
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
        # features only one token type ever fires: token detectors, not features shared across contexts
        "single_token_feature_share": int(np.count_nonzero(fdeg == 1)) / connected if connected else float("nan"),
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
        "frequency_control": frequency_control(degree, counts, is_function, control),
        "degree_fit": degree_vs_occurrences(degree, counts, is_function),
        "_degree": degree,
        "_counts": counts,
        "_ranking": seen,
        "_fire_function": fn,
        "_fire_content": ct,
    }
