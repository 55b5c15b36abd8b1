"""Chapter 4's claims (feature growth, degree-curve steepness, the sparsity coefficient),
each decided by the rule written in its note."""

from __future__ import annotations

import math

import numpy as np

from functok.book.results import claim
from functok.chapters.common import paper_numbers
from functok.chapters.feature_growth.search import INCREASING


def _diff_rule(first: np.ndarray, last: np.ndarray) -> tuple[float, float]:
    """(difference of means last - first, its standard error from the seed spread; nan with one seed)."""
    d = float(last.mean() - first.mean())
    if first.size < 2 or last.size < 2:
        return d, float("nan")
    return d, float(math.sqrt(first.var(ddof=1) / first.size + last.var(ddof=1) / last.size))


def growth(rows: list[dict], key: str = "learned_features_seeds") -> dict:
    a = np.array(rows[0][key], float)
    b = np.array(rows[-1][key], float)
    d, se = _diff_rule(a, b)
    return {
        "first_step": rows[0]["step"],
        "last_step": rows[-1]["step"],
        "first_mean": float(a.mean()),
        "last_mean": float(b.mean()),
        "factor": float(b.mean() / a.mean()) if a.mean() else float("nan"),
        "difference": d,
        "standard_error": se,
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


def _verdict(d: float, se: float, sign: float) -> str:
    """holds: the change has the claimed sign and exceeds 2 standard errors over seeds; fails: it has
    the wrong sign (or is zero); inconclusive: the claimed sign within 2 standard errors (or one seed)."""
    if not math.isfinite(d) or d * sign <= 0:
        return "fails" if math.isfinite(d) else "inconclusive"
    return "holds" if math.isfinite(se) and d * sign > 2 * se else "inconclusive"


def make_claims(rows: list[dict], cfg) -> list[dict]:
    paper = paper_numbers("feature_growth")
    g, st = growth(rows), steepness(rows)
    n_seeds = len(rows[0]["learned_features_seeds"])
    ends_matched = rows[0]["matched"] and rows[-1]["matched"]
    unmatched = (
        ""
        if ends_matched
        else "; inconclusive: the earliest or final SAE misses the target score, so the comparison is not at equal "
        "reconstruction"
    )
    claims = [
        claim(
            "learned_features_grow",
            "Learned features grow from the earliest to the final checkpoint",
            f"{paper['learned_features']['early']:,} -> {paper['learned_features']['late']:,} (about "
            f"{paper['growth_factor']}-fold)",
            f"{g['first_mean']:,.0f} -> {g['last_mean']:,.0f} ({g['factor']:.2f}-fold; steps {g['first_step']} -> "
            f"{g['last_step']})",
            _verdict(g["difference"], g["standard_error"], +1) if ends_matched else "inconclusive",
            f"mean over {n_seeds} SAE seeds of the distinct features firing on {cfg.n_activations:,} held-out "
            "activations; "
            "holds if the increase exceeds 2 standard errors of the seed spread, fails if there is no increase. The "
            "verdict "
            f"is on growth, not on the paper's magnitude: our dictionaries have {rows[0]['d_sae']:,} features "
            f"(the paper's 65,536){unmatched}",
        )
    ]
    gf = growth(rows, "frequent_features_seeds")
    claims.append(
        claim(
            "frequent_features_grow",
            "Beyond the paper: the growth holds for features that fire on at least 1 in 10,000 activations",
            "not measured",
            f"{gf['first_mean']:,.0f} -> {gf['last_mean']:,.0f} ({gf['factor']:.2f}-fold)",
            _verdict(gf["difference"], gf["standard_error"], +1) if ends_matched else "inconclusive",
            f"features firing on >= {rows[0]['frequent_min_fires']} of the {rows[0]['n_activations']:,} sampled "
            "activations, mean "
            "over seeds; a short SAE training leaves features that fire once or twice, which the paper's count "
            "includes; "
            f"same rule as above{unmatched}",
        )
    )
    scores = [r["ce_reconstruction_score"] for r in rows]
    n_ok = sum(r["matched"] for r in rows)
    claims.append(
        claim(
            "ce_scores_matched",
            "The cross-entropy reconstruction scores of the compared SAEs are matched",
            "about equal (Fig 12)",
            f"{min(scores):.3f} .. {max(scores):.3f} (target {cfg.target_ce_score} +- {cfg.ce_tolerance})",
            "holds" if n_ok == len(rows) else "fails",
            f"holds if every checkpoint's chosen SAE lands within the tolerance ({n_ok} of {len(rows)} do); the "
            "coefficient "
            f"search trains at most {cfg.search_steps} SAEs per checkpoint",
        )
    )
    c0, c1 = rows[0]["sparsity_coefficient"], rows[-1]["sparsity_coefficient"]
    inc = INCREASING.get(cfg.architecture, False)
    ok = all(r["matched"] for r in (rows[0], rows[-1]))
    claims.append(
        claim(
            "later_checkpoints_harder",
            "Later checkpoints need a weaker sparsity penalty to reach the same reconstruction score",
            "lambda " + " / ".join(str(x) for x in paper["sparsity_coefficients"]) + " at steps 3k / 50k / 130k",
            f"{c0:.3g} -> {c1:.3g}",
            ("holds" if (c1 > c0 if inc else c1 < c0) else "fails") if ok else "inconclusive",
            "the coefficient chosen for the final checkpoint against the earliest one; inconclusive if either misses "
            "the "
            "target score" + (" (for top-k SAEs: a larger k)" if inc else ""),
        )
    )
    claims.append(
        claim(
            "degree_curve_steepens",
            "The token degree-vs-frequency-rank curve steepens over training",
            "qualitative (Fig 8b)",
            f"slope {st['first_slope']:.2f} -> {st['last_slope']:.2f}; top-{cfg.top_tokens} tokens reach "
            f"{st['first_top_coverage']:.0%} -> {st['last_top_coverage']:.0%} of connected features",
            _verdict(st["difference"], st["standard_error"], -1) if ends_matched else "inconclusive",
            f"steepness = least-squares slope of log(degree) on log(rank) over the {cfg.slope_ranks} most frequent "
            "tokens of the "
            "sample (more negative = steeper), mean over seeds; holds if it decreases by more than 2 standard "
            "errors, fails if "
            f"it does not decrease{unmatched}",
        )
    )
    return claims
