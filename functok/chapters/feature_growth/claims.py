"""Chapter 4's claims (feature growth, degree-curve steepness, matched SAE quality, the sparsity
coefficient's trend), each decided by the rule written in its note, which also names the baseline the
number is compared with and the sample size."""

from __future__ import annotations

import itertools
import math

import numpy as np

from functok.chapters.common import paper_numbers
from functok.chapters.feature_growth.search import INCREASING
from functok.core.results import claim, precondition, with_seeds

TREND_ALPHA = 0.05  # the coefficient trend holds when its one-sided permutation p-value is at most this

BASELINE_WORDS = {
    "mean_ablation": "loss recovered relative to mean ablation, (H_mean - H*) / (H_mean - H_orig)",
    "explained_variance": "explained variance of the activations",
    "zero_ablation": "the paper's CE score against zero ablation, (H* - H0) / (H_orig - H0)",
}


def _diff_rule(first: np.ndarray, last: np.ndarray) -> tuple[float, float]:
    """(difference of means last - first, its standard error from the seed spread; nan with one seed)."""
    d = float(last.mean() - first.mean())
    if first.size < 2 or last.size < 2:
        return d, float("nan")
    return d, float(math.sqrt(first.var(ddof=1) / first.size + last.var(ddof=1) / last.size))


def _ranks(x) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(np.asarray(x, dtype=float))


def spearman_trend(steps, values, sign: float) -> tuple[float, float]:
    """(Spearman's rho of `values` against `steps`, one-sided p-value of a trend of the sign `sign`):
    the share of orderings of the values, all n! of them for n <= 8 (else 20,000 seeded draws), whose
    rho is at least as far in that direction as the observed one (ties: average ranks)."""
    rs, rv = _ranks(steps), _ranks(values)
    n = len(rs)
    if n < 3 or np.ptp(rv) == 0:
        return float("nan"), float("nan")

    def rho(v) -> float:
        return float(np.corrcoef(rs, v)[0, 1])

    obs = rho(rv)
    if n <= 8:
        perms = (np.array(p) for p in itertools.permutations(rv))
        total = math.factorial(n)
    else:
        g = np.random.default_rng(0)
        perms = (g.permutation(rv) for _ in range(20_000))
        total = 20_000
    hits = sum(1 for p in perms if sign * rho(p) >= sign * obs - 1e-12)
    return obs, hits / total


def growth(rows: list[dict], key: str = "learned_features_seeds") -> dict:
    a = np.array(rows[0][key], float)
    b = np.array(rows[-1][key], float)
    d, se = _diff_rule(a, b)
    means = [float(np.mean(r[key])) for r in rows]
    rho, _ = spearman_trend([r["step"] for r in rows], means, +1) if len(rows) >= 3 else (float("nan"), 0)
    return {
        "first_step": rows[0]["step"],
        "last_step": rows[-1]["step"],
        "first_mean": float(a.mean()),
        "last_mean": float(b.mean()),
        "factor": float(b.mean() / a.mean()) if a.mean() else float("nan"),
        "difference": d,
        "standard_error": se,
        "spearman_all": rho,
    }


def steepness(rows: list[dict]) -> dict:
    a = np.array(rows[0]["degree_slope_seeds"], float)
    b = np.array(rows[-1]["degree_slope_seeds"], float)
    d, se = _diff_rule(a, b)
    ca = np.array(rows[0]["top_coverage_seeds"], float)
    cb = np.array(rows[-1]["top_coverage_seeds"], float)
    return {
        "first_slope": float(a.mean()),
        "last_slope": float(b.mean()),
        "difference": d,
        "standard_error": se,
        "first_top_coverage": float(ca.mean()),
        "last_top_coverage": float(cb.mean()),
    }


def coefficient_trend(rows: list[dict], architecture: str) -> dict:
    """Spearman's rho of the coefficient at the target (interpolated) against the step over every studied
    checkpoint, and its one-sided p-value in the paper's direction (a weaker penalty later: a smaller
    coefficient, or a larger k for top-k SAEs)."""
    sign = 1.0 if INCREASING.get(architecture, False) else -1.0
    cs = [r.get("coefficient_at_target") for r in rows]
    usable = all(c is not None for c in cs) and len(rows) >= 3
    rho, p = spearman_trend([r["step"] for r in rows], cs, sign) if usable else (float("nan"), float("nan"))
    return {"coefficients": cs, "steps": [r["step"] for r in rows], "spearman": rho, "p_one_sided": p, "sign": sign}


def _verdict(d: float, se: float, sign: float) -> str:
    """holds: the change has the claimed sign and exceeds 2 standard errors over seeds; fails: it has
    the wrong sign (or is zero); inconclusive: the claimed sign within 2 standard errors (or one seed)."""
    if not math.isfinite(d) or d * sign <= 0:
        return "fails" if math.isfinite(d) else "inconclusive"
    return "holds" if math.isfinite(se) and d * sign > 2 * se else "inconclusive"


def trend_verdict(rho: float, p: float, sign: float, alpha: float = TREND_ALPHA) -> str:
    """holds: rho has the claimed sign and p <= alpha; fails: rho is zero or has the other sign;
    inconclusive: the claimed sign but p > alpha, or no rho (fewer than 3 checkpoints, a constant)."""
    if not math.isfinite(rho):
        return "inconclusive"
    if rho * sign <= 0:
        return "fails"
    return "holds" if p <= alpha else "inconclusive"


def _capped(verdict: str, rows: list[dict], key: str, what: str) -> tuple[str, str]:
    """Saturation rule: a count within 10% of d_sae can only hide growth and flatten the degree curve,
    never create them. A saturated earliest checkpoint makes the claim inconclusive; a saturated final
    one turns a 'fails' into 'inconclusive' and leaves a 'holds' standing (the measured change is then a
    lower bound); saturated checkpoints in between are flagged in the note (the claim compares the two
    ends). Returns (verdict, the sentence for the note)."""
    sat = [r["step"] for r in rows if r[key]]
    if not sat:
        return verdict, f"saturation: no checkpoint's {what} count is within 10% of d_sae ({rows[0]['d_sae']:,})"
    where = f"saturation: step(s) {sat} have {what} counts within 10% of d_sae ({rows[0]['d_sae']:,})"
    if rows[0][key]:
        return "inconclusive", f"inconclusive: {where}, the earliest among them, so the ceiling hides any change"
    if rows[-1][key] and verdict == "fails":
        return "inconclusive", f"inconclusive: {where}; the ceiling caps the final checkpoint, so no failure is shown"
    if rows[-1][key] and verdict == "holds":
        return verdict, f"{where}; the ceiling can only reduce the change, so it holds as a lower bound"
    return verdict, f"{where}; the dictionary is too narrow to show the change at them"


def _zero_note(rows: list[dict]) -> str:
    """What the zero-ablation baseline does in this run: constant H0 (a bias-free model's uniform logits)
    or not."""
    h0 = [r["ce_loss_zero_ablation"] for r in rows]
    if max(h0) - min(h0) < 1e-3:
        return (
            f"the zero-ablation score is shown for comparison only: its baseline H0 is {h0[0]:.3f} nats at every "
            f"checkpoint (uniform logits over about {math.exp(h0[0]):,.0f} tokens), so it rewards an early "
            "checkpoint for being close to uniform"
        )
    return f"the zero-ablation score is shown for comparison (its baseline H0: {min(h0):.3f} .. {max(h0):.3f} nats)"


SEED_RULE = "holds if the increase exceeds 2 standard errors of the seed spread, fails if there is no increase"
PER_SEED_RULE = (
    "each seed is also scored on its own two SAEs (earliest and final checkpoint, same seed): it holds if its "
    "change has the claimed sign and exceeds 2 x the noise of one SAE pair, sqrt(var_earliest + var_final) over "
    "seeds, and fails if the sign is wrong; the claim's verdict is the seeds' common one, fragile if they "
    "disagree, and the pooled verdict above is kept in the note"
)


def per_seed_changes(rows: list[dict], key: str, sign: float, fmt) -> dict[int, tuple[str, str]]:
    """Each seed's verdict on the change final - earliest of `key` between its own two SAEs, judged against the
    noise of one SAE pair (sqrt(var_earliest + var_final) over seeds, ddof 1; none with one seed, which leaves
    a change of the claimed sign inconclusive): {seed: (verdict, what it measured, via fmt(earliest, final))}."""
    a = np.array(rows[0][key], float)
    b = np.array(rows[-1][key], float)
    noise = math.sqrt(a.var(ddof=1) + b.var(ddof=1)) if a.size > 1 else float("nan")
    seeds = [s["seed"] for s in rows[0]["seeds"]]
    return {seed: (_verdict(float(b[i] - a[i]), noise, sign), fmt(a[i], b[i])) for i, seed in enumerate(seeds)}


def _gate(rows: list[dict], ends_matched: bool, key: str, what: str):
    """A seed's verdict through the pooled verdict's rules: unmatched ends make it inconclusive, then the
    saturation rule (`_capped`)."""
    return lambda v: _capped(v if ends_matched else "inconclusive", rows, key, what)[0]


def _scored_per_seed(c: dict, per: dict[int, tuple[str, str]], gate) -> dict:
    """The claim `c` (its verdict the pooled one) scored per seed, each seed's verdict passed through `gate`
    (the same matched-ends and saturation rules as the pooled verdict)."""
    c = {**c, "note": f"{c['note']}; {PER_SEED_RULE}; pooled over seeds: {c['verdict']}"}
    return with_seeds(c, {s: (gate(v), ours) for s, (v, ours) in per.items()})


def _ends_matched(rows: list[dict]) -> bool:
    """Whether the earliest and the final checkpoint's SAEs both reach the target quality."""
    return rows[0]["matched"] and rows[-1]["matched"]


def _sample_words(rows: list[dict]) -> str:
    """The sample size, for the notes: seeds, held-out activations, checkpoints."""
    n_seeds, n_ck = len(rows[0]["learned_features_seeds"]), len(rows)
    return (
        f"n = {n_seeds} SAE seeds per checkpoint, {rows[0]['n_activations']:,} held-out activations, {n_ck} "
        f"checkpoints (steps {[r['step'] for r in rows]})"
    )


def _unmatched_words(rows: list[dict]) -> str:
    """The note's ending when the compared SAEs are not at equal reconstruction ('' when they are)."""
    return (
        ""
        if _ends_matched(rows)
        else "; inconclusive: the earliest or final SAE misses the target quality, so the comparison is not at "
        "equal reconstruction"
    )


def make_claims(rows: list[dict], cfg) -> list[dict]:
    """Chapter 4's claims in the scorecard's order: growth, frequent features, the coefficient's trend, the
    degree curve's steepness (the matched scores they rest on are a precondition: `make_preconditions`)."""
    paper = paper_numbers("feature_growth")
    return [
        _growth_claim(rows, cfg, paper),
        _frequent_claim(rows, cfg),
        _trend_claim(rows, cfg, paper),
        _steepness_claim(rows, cfg),
    ]


def _growth_claim(rows: list[dict], cfg, paper: dict) -> dict:
    """learned_features_grow: learned features, final against earliest checkpoint."""
    g = growth(rows)
    ends_matched = _ends_matched(rows)
    v, sat_note = _capped(
        _verdict(g["difference"], g["standard_error"], +1) if ends_matched else "inconclusive",
        rows,
        "saturated",
        "learned features",
    )
    c = claim(
        "learned_features_grow",
        "Learned features grow from the earliest to the final checkpoint",
        f"{paper['learned_features']['early']:,} -> {paper['learned_features']['late']:,} (about "
        f"{paper['growth_factor']}-fold; from a secondary summary, not the paper's text)",
        f"{g['first_mean']:,.0f} -> {g['last_mean']:,.0f} ({g['factor']:.2f}-fold; steps {g['first_step']} -> "
        f"{g['last_step']}"
        + (
            f"; Spearman rho over all checkpoints {g['spearman_all']:.2f})" if math.isfinite(g["spearman_all"]) else ")"
        ),
        v if ends_matched else "inconclusive",
        f"distinct features firing on the sampled activations, mean over seeds, final against earliest checkpoint "
        f"(baseline: the earliest count, and the seed spread as noise), SAEs matched on "
        f"{BASELINE_WORDS[cfg.match_on]}; {SEED_RULE}; {_sample_words(rows)}; the verdict is on growth, not on the "
        f"paper's magnitude (our d_sae "
        f"{rows[0]['d_sae']:,}, the paper's 65,536); {sat_note}{_unmatched_words(rows)}",
    )
    per = per_seed_changes(rows, "learned_features_seeds", +1, lambda x, y: f"{x:,.0f} -> {y:,.0f}")
    return _scored_per_seed(c, per, _gate(rows, ends_matched, "saturated", "learned features"))


def _frequent_claim(rows: list[dict], cfg) -> dict:
    """frequent_features_grow: the growth of features firing on at least 1 in 10,000 activations."""
    gf = growth(rows, "frequent_features_seeds")
    ends_matched = _ends_matched(rows)
    v, sat_note = _capped(
        _verdict(gf["difference"], gf["standard_error"], +1) if ends_matched else "inconclusive",
        rows,
        "frequent_saturated",
        "frequent features",
    )
    c = claim(
        "frequent_features_grow",
        "Beyond the paper: the growth holds for features that fire on at least 1 in 10,000 activations",
        "not measured",
        f"{gf['first_mean']:,.0f} -> {gf['last_mean']:,.0f} ({gf['factor']:.2f}-fold)",
        v if ends_matched else "inconclusive",
        f"features firing on >= {rows[0]['frequent_min_fires']} of the {rows[0]['n_activations']:,} sampled "
        "activations (a short SAE training leaves features that fire once or twice, which the paper's count "
        f"includes), mean over seeds, final against earliest checkpoint (baseline: the earliest count, and the "
        f"seed spread as noise); {SEED_RULE}; {_sample_words(rows)}; {sat_note}{_unmatched_words(rows)}",
    )
    per = per_seed_changes(rows, "frequent_features_seeds", +1, lambda x, y: f"{x:,.0f} -> {y:,.0f}")
    return _scored_per_seed(c, per, _gate(rows, ends_matched, "frequent_saturated", "frequent features"))


def make_preconditions(rows: list[dict], cfg) -> list[dict]:
    """scores_matched: every checkpoint's chosen SAE lands within the tolerance of the target quality (a check of
    the chapter's own search; a claim over an unmatched checkpoint is inconclusive and says so)."""
    scores = [r["score"] for r in rows]
    n_ok = sum(r["matched"] for r in rows)
    zero = [r["ce_reconstruction_score"] for r in rows]
    ev = [r["explained_variance"] for r in rows]
    return [
        precondition(
            "scores_matched",
            "The reconstruction quality of the compared SAEs is matched (the paper: about equal CE scores, Fig 12)",
            f"{cfg.match_on.replace('_', ' ')} {min(scores):.3f} .. {max(scores):.3f} (target {cfg.target_score} "
            f"+- {cfg.tolerance}); zero-ablation CE score {min(zero):.3f} .. {max(zero):.3f}; explained variance "
            f"{min(ev):.3f} .. {max(ev):.3f}",
            n_ok == len(rows),
            f"matched on {BASELINE_WORDS[cfg.match_on]}; met if at every checkpoint the search brackets the target "
            f"(an SAE on each side) and the chosen SAE lands within the tolerance ({n_ok} of n = {len(rows)} "
            f"checkpoints do); the search trains at most {cfg.search_steps} SAEs per checkpoint, plus one at the "
            "coefficient interpolated to the target; " + _zero_note(rows),
        )
    ]


def _trend_claim(rows: list[dict], cfg, paper: dict) -> dict:
    """later_checkpoints_harder: the coefficient at the target trends in the paper's direction over training."""
    n_ck = len(rows)
    tr = coefficient_trend(rows, cfg.architecture)
    inc = tr["sign"] > 0
    all_matched = sum(r["matched"] for r in rows) == n_ck
    coefs = " / ".join("-" if c is None else f"{c:.3g}" for c in tr["coefficients"])
    c = claim(
        "later_checkpoints_harder",
        "Later checkpoints need a weaker sparsity penalty to reach the same reconstruction quality",
        "lambda " + " / ".join(str(x) for x in paper["sparsity_coefficients"]) + " at steps 3k / 50k / 130k",
        f"{coefs} at steps {tr['steps']}; "
        + (
            f"Spearman rho {tr['spearman']:.2f} (one-sided p {tr['p_one_sided']:.3f})"
            if math.isfinite(tr["spearman"])
            else "no trend measured (fewer than 3 checkpoints, one unmatched, or a constant coefficient)"
        ),
        trend_verdict(tr["spearman"], tr["p_one_sided"], tr["sign"]) if all_matched else "inconclusive",
        "the coefficient at the target (log-linear interpolation between the two bracketing SAEs of the search) at "
        f"every studied checkpoint, matched on {BASELINE_WORDS[cfg.match_on]}; Spearman's rho of coefficient against "
        f"step over all {n_ck} checkpoints, with an exact permutation p-value (baseline: no trend, every ordering "
        f"equally likely); holds if rho {'> 0' if inc else '< 0'} and p <= {TREND_ALPHA} (for 5 checkpoints: "
        f"monotone, or one adjacent swap), fails if rho {'<= 0' if inc else '>= 0'}, inconclusive if p > "
        f"{TREND_ALPHA} or any checkpoint is unmatched"
        + (" (top-k SAEs: a larger k is the weaker penalty)" if inc else "")
        + f"; {_search_seed_words(rows, cfg)}",
    )
    return with_seeds(c, {cfg.seed: (c["verdict"], coefs)})


def _search_seed_words(rows: list[dict], cfg) -> str:
    """What the trend claim's seeds are: the search runs on the first seed only, and what a search per seed
    would cost (the SAEs this run's search trained, once more per further seed)."""
    n_search = sum(len(r["search"]) for r in rows)
    extra = n_search * (cfg.n_seeds - 1)
    return (
        f"scored on seed {cfg.seed}'s search only: a search per further seed would train {extra} more SAEs "
        f"({n_search} per seed in this run), which the build does not afford"
        if cfg.n_seeds > 1
        else f"scored on seed {cfg.seed}'s search (one seed)"
    )


def _steepness_claim(rows: list[dict], cfg) -> dict:
    """degree_curve_steepens: the slope of log(degree) on log(rank), final against earliest checkpoint."""
    st = steepness(rows)
    ends_matched = _ends_matched(rows)
    v, sat_note = _capped(
        _verdict(st["difference"], st["standard_error"], -1) if ends_matched else "inconclusive",
        rows,
        "saturated",
        "learned features",
    )
    c = claim(
        "degree_curve_steepens",
        "The token degree-vs-frequency-rank curve steepens over training",
        "qualitative (Fig 8b)",
        f"slope {st['first_slope']:.2f} -> {st['last_slope']:.2f}; top-{cfg.top_tokens} tokens reach "
        f"{st['first_top_coverage']:.0%} -> {st['last_top_coverage']:.0%} of connected features",
        v if ends_matched else "inconclusive",
        f"steepness = least-squares slope of log(degree) on log(rank) over the {cfg.slope_ranks} most frequent "
        "tokens of the sample (more negative = steeper), mean over seeds, final against earliest checkpoint "
        "(baseline: the earliest slope, and the seed spread as noise); holds if it decreases by more than 2 "
        f"standard errors, fails if it does not decrease; {_sample_words(rows)}; {sat_note}{_unmatched_words(rows)}",
    )
    per = per_seed_changes(rows, "degree_slope_seeds", -1, lambda x, y: f"slope {x:.2f} -> {y:.2f}")
    return _scored_per_seed(c, per, _gate(rows, ends_matched, "saturated", "learned features"))
