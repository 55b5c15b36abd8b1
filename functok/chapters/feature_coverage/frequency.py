"""The frequency control of chapter 2: do function tokens activate more distinct SAE features (a higher
token degree) than content tokens of the same frequency?

A token that occurs 100,000 times gets 100,000 chances to fire a feature, and function tokens are the
most frequent tokens, so degree has to be compared at equal frequency. Two controls, per layer, over
the tokens seen in the sample (count >= 1); the outcome is y = log(1 + degree), so that tokens seen
with degree 0 (they fired nothing) stay in, and x = log(count), natural logs:

- **regression**: y = a + b x + sum_j c_j max(0, x - k_j) + g is_function, least squares over every
  seen token. The knots k_j (`n_knots` of them, 0 = the straight line a + b x) are evenly spaced in x
  between the rarest and the most frequent content token, so the frequency curve may bend (degree
  saturates as it nears the number of features) and g is the shift of function tokens off the curve
  that content tokens trace at the same count; exp(g) is the factor on 1 + degree. Interval and p: a
  per-token bootstrap, `n_bootstrap` seeded resamples of the tokens with replacement (function and
  content tokens resampled separately, so each resample keeps both groups' sizes); the percentile
  interval at `level`, and the two-sided p = 2 min(P*(g* <= 0), P*(g* >= 0)) with the usual +1.
- **matched pairs**: each function token t is matched to every content token whose count lies within
  a factor `window` of its own, [count_t / window, count_t * window]; its paired difference is y_t minus
  the mean y of those peers. Every function token is reported, matched (with its peers' number and
  median count) or unmatched with the reason: no content token in its window, which for the most
  frequent function tokens is because no content token is nearly as frequent. The mean paired
  difference gets the same per-token bootstrap (function tokens and content tokens both resampled,
  the peers' means recomputed in each resample).

Several layers are tested, so `correct_layers` adds Holm-Bonferroni adjusted p-values across the
layers (per control) and the family-wise alpha the claim uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_FUNCTION = 5  # fewer function tokens (seen, or matched) than this: no estimate


@dataclass(frozen=True)
class ControlParams:
    window: float = 1.25
    n_knots: int = 3
    n_bootstrap: int = 1000
    seed: int = 0
    alpha: float = 0.05

    @classmethod
    def of(cls, cfg) -> ControlParams:
        return cls(cfg.match_window, cfg.count_knots, cfg.n_bootstrap, cfg.seed, cfg.alpha)

    @property
    def level(self) -> float:
        return 1.0 - self.alpha


def _boot_p(draws: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'the estimate is 0': 2 min(P*(<= 0), P*(>= 0)), +1 corrected."""
    n = draws.size
    le, ge = int((draws <= 0).sum()), int((draws >= 0).sum())
    return float(min(1.0, 2 * (1 + min(le, ge)) / (n + 1)))


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    q = (1 - level) / 2
    return float(np.quantile(draws, q)), float(np.quantile(draws, 1 - q))


def _resample(rng, groups: list[np.ndarray], n: int) -> np.ndarray:
    """Per-token weights of one stratified bootstrap resample: how often each token is drawn."""
    w = np.zeros(n)
    for idx in groups:
        if idx.size:
            w += np.bincount(idx[rng.integers(0, idx.size, idx.size)], minlength=n)
    return w


# ---------------------------------------------------------------------------------------------
# Regression


def knots(x_content: np.ndarray, n_knots: int) -> np.ndarray:
    """n_knots interior knots evenly spaced between the smallest and the largest content log count."""
    if n_knots <= 0 or x_content.size == 0 or x_content.max() <= x_content.min():
        return np.zeros(0)
    return np.linspace(x_content.min(), x_content.max(), n_knots + 2)[1:-1]


def basis(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """[1, x, max(0, x - k_1), ...]: the frequency curve's columns."""
    return np.column_stack([np.ones_like(x), x, *[np.maximum(0.0, x - kj) for kj in k]])


def curve(x: np.ndarray, reg: dict, function: bool = False) -> np.ndarray:
    """The fitted log(1 + degree) at log counts x, of content tokens (or function tokens: + g)."""
    y = basis(np.asarray(x, float), np.asarray(reg["knots"])) @ np.asarray(reg["coef"])
    return y + (reg["g"] if function else 0.0)


def _solve(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    Xw = X if w is None else X * w[:, None]
    return np.linalg.lstsq(Xw.T @ X, Xw.T @ y, rcond=None)[0]


def degree_regression(degree, counts, is_function, p: ControlParams = ControlParams()) -> dict:
    """log(1 + degree) on log(count) (a piecewise line, p.n_knots knots) plus g * is_function; g's
    per-token bootstrap interval and p-value. nan estimates when fewer than MIN_FUNCTION function tokens
    or too few content tokens were seen."""
    seen = np.flatnonzero(np.asarray(counts) > 0)
    x = np.log(np.asarray(counts, float)[seen])
    y = np.log1p(np.asarray(degree, float)[seen])
    f = np.asarray(is_function, bool)[seen]
    k = knots(x[~f], p.n_knots)
    out = {
        "model": "log(1+degree) ~ a + b log(count)"
        + (f" + {k.size} hinges max(0, log(count) - k_j)" if k.size else "")
        + " + g is_function",
        "n_function": int(f.sum()),
        "n_content": int((~f).sum()),
        "n_zero_degree": {"function": int((y[f] == 0).sum()), "content": int((y[~f] == 0).sum())},
        "knots": [float(v) for v in k],
        "n_bootstrap": p.n_bootstrap,
        "seed": p.seed,
        "level": p.level,
    }
    nan = float("nan")
    if f.sum() < MIN_FUNCTION or (~f).sum() < k.size + 3:
        return {**out, "g": nan, "factor": nan, "lo": nan, "hi": nan, "p": nan, "b": nan, "coef": [], "r2": nan}
    X = np.column_stack([basis(x, k), f.astype(float)])
    coef = _solve(X, y)
    res = y - X @ coef
    tot = ((y - y.mean()) ** 2).sum()
    rng = np.random.default_rng(p.seed)
    groups = [np.flatnonzero(f), np.flatnonzero(~f)]
    gs = np.array([_solve(X, y, _resample(rng, groups, y.size))[-1] for _ in range(p.n_bootstrap)])
    lo, hi = _interval(gs, p.level)
    return {
        **out,
        "g": float(coef[-1]),
        "factor": float(math.exp(coef[-1])),
        "lo": lo,
        "hi": hi,
        "p": _boot_p(gs),
        "b": float(coef[1]),
        "coef": [float(v) for v in coef[:-1]],
        "r2": float(1 - (res**2).sum() / tot) if tot > 0 else nan,
    }


# ---------------------------------------------------------------------------------------------
# Matched pairs


def matched_pairs(degree, counts, is_function, p: ControlParams = ControlParams()) -> dict:
    """Each seen function token against the content tokens whose count is within a factor p.window of
    its own: matched rows (paired difference of log(1 + degree)), unmatched rows with the reason, the
    mean paired difference with its per-token bootstrap interval and p-value."""
    counts, degree = np.asarray(counts), np.asarray(degree)
    y = np.log1p(degree.astype(float))
    isf = np.asarray(is_function, bool)
    content = np.flatnonzero((counts > 0) & ~isf)
    content = content[np.argsort(counts[content], kind="stable")]
    cc = counts[content].astype(float)
    cy = y[content]
    func = np.flatnonzero((counts > 0) & isf)
    func = func[np.argsort(-counts[func], kind="stable")]  # the most frequent first
    matched, unmatched, spans = [], [], []
    for t in func:
        c = float(counts[t])
        lo_c, hi_c = c / p.window, c * p.window
        i0 = int(np.searchsorted(cc, lo_c * (1 - 1e-12), "left"))  # counts in [lo_c, hi_c], rounding aside
        i1 = int(np.searchsorted(cc, hi_c * (1 + 1e-12), "right"))
        row = {"token_id": int(t), "count": int(c), "degree": int(degree[t])}
        if i1 > i0:
            peers = slice(i0, i1)
            row.update(
                n_peers=i1 - i0,
                peer_median_count=float(np.median(cc[peers])),
                peer_mean_log_degree=float(cy[peers].mean()),
                diff=float(y[t] - cy[peers].mean()),
                log_count_gap=float(math.log(c) - np.log(cc[peers]).mean()),
            )
            matched.append(row)
            spans.append((t, i0, i1))
        else:
            if cc.size == 0:
                why = "no content token seen"
            elif lo_c > cc[-1]:
                why = f"more frequent than every content token (the most frequent: {int(cc[-1])}) by over {p.window:g}x"
            elif hi_c < cc[0]:
                why = f"rarer than every content token by over {p.window:g}x"
            else:
                why = "no content token in its window (a gap in the counts)"
            row.update(reason=f"no content token with count in [{lo_c:.4g}, {hi_c:.4g}]: {why}")
            unmatched.append(row)
    out = {
        "window": p.window,
        "n_function_seen": int(func.size),
        "n_function_unseen": int((isf & (counts == 0)).sum()),  # no occurrence in the sample: no degree
        "n_matched": len(matched),
        "n_unmatched": len(unmatched),
        "n_above": sum(r["diff"] > 0 for r in matched),
        "n_below": sum(r["diff"] < 0 for r in matched),
        "mean_log_count_gap": float(np.mean([r["log_count_gap"] for r in matched])) if matched else float("nan"),
        "n_bootstrap": p.n_bootstrap,
        "seed": p.seed,
        "level": p.level,
        "matched": matched,
        "unmatched": unmatched,
    }
    nan = float("nan")
    if len(matched) < MIN_FUNCTION:
        return {**out, "mean_diff": nan, "lo": nan, "hi": nan, "p": nan}
    diffs = np.array([r["diff"] for r in matched])
    ft = np.array([s[0] for s in spans])
    i0 = np.array([s[1] for s in spans])
    i1 = np.array([s[2] for s in spans])
    rng = np.random.default_rng(p.seed)
    n_f, n_c = ft.size, cc.size
    draws = np.empty(p.n_bootstrap)
    for b in range(p.n_bootstrap):
        wf = np.bincount(rng.integers(0, n_f, n_f), minlength=n_f).astype(float)
        wc = np.bincount(rng.integers(0, n_c, n_c), minlength=n_c).astype(float)
        sw = np.concatenate([[0.0], np.cumsum(wc)])
        swy = np.concatenate([[0.0], np.cumsum(wc * cy)])
        n_peer = sw[i1] - sw[i0]
        ok = (n_peer > 0) & (wf > 0)  # a function token whose peers all fell out is left out of this resample
        d = y[ft[ok]] - (swy[i1] - swy[i0])[ok] / n_peer[ok]
        draws[b] = (wf[ok] * d).sum() / wf[ok].sum() if ok.any() else nan
    draws = draws[np.isfinite(draws)]
    lo, hi = _interval(draws, p.level)
    return {**out, "mean_diff": float(diffs.mean()), "lo": lo, "hi": hi, "p": _boot_p(draws)}


def frequency_control(degree, counts, is_function, p: ControlParams = ControlParams()) -> dict:
    """Both controls for one layer (the Holm-adjusted p-values come from `correct_layers`)."""
    return {
        "regression": degree_regression(degree, counts, is_function, p),
        "matched": matched_pairs(degree, counts, is_function, p),
    }


# ---------------------------------------------------------------------------------------------
# Several layers


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down): the i-th smallest of m p-values becomes
    max over j <= i of min(1, (m - j + 1) p_(j)). Undefined (nan) p-values are not tests: they stay nan
    and do not count in m."""
    p = np.asarray(pvalues, float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(p.shape, np.nan)
    m = ok.size
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]


def correct_layers(controls: dict, alpha: float) -> None:
    """Adds, in place, `p_holm` (Holm across the layers, per control), `alpha` and `n_tests` (the
    layers with an estimate) to each layer's regression and matched pairs."""
    layers = list(controls)
    for key in ("regression", "matched"):
        ps = [controls[L][key]["p"] for L in layers]
        adj = holm(ps)
        for L, a in zip(layers, adj):
            controls[L][key].update(p_holm=a, alpha=alpha, n_tests=int(np.isfinite(ps).sum()))
