"""Chapter 2's claims, each decided by the rule written in its note."""

from __future__ import annotations

from functok.book.results import claim
from functok.chapters.common import paper_numbers


def _paper() -> dict:
    return paper_numbers("feature_coverage")


def _middle(layers: list[int]) -> int:
    return sorted(layers)[len(layers) // 2] if len(layers) != 2 else sorted(layers)[1]


MAX_DENSITY = 0.01  # coverage means something only if a position fires at most 1% of the features
PAPER_DENSITY = "about 100 / 2^20 = 0.01%"  # Gemma Scope's canonical 2^20-wide SAEs: L0 77-122
COVERAGE = 0.70


def _null(v: dict) -> dict | None:
    """The null at Table 1's last row k: mean, lo, hi, N_k, draws (None without a null)."""
    n = v.get("null_coverage_topk") or {}
    if not n.get("mean"):
        return None
    return {
        "mean": n["mean"][-1],
        "lo": n["lo"][-1],
        "hi": n["hi"][-1],
        "N": n["n_positions"][-1],
        "draws": n["n_draws"],
    }


def _baseline(v: dict, k: int) -> str:
    n = _null(v)
    if n is None:
        return "baseline: no null model in these results"
    return (
        f"baseline: {n['N']:,} positions drawn at random without replacement from the sample's {v['n_tokens']:,} (as "
        f"many as the top-{k} tokens' occurrences), {n['draws']} draws: mean {n['mean']:.1%}, 95% interval "
        f"[{n['lo']:.1%}, {n['hi']:.1%}]"
    )


def _precondition(where: str) -> str:
    return (
        f"precondition: SAE density L0/d_sae <= {MAX_DENSITY:.0%}{where} (the paper's Gemma Scope: {PAPER_DENSITY}), "
        "inconclusive otherwise"
    )


def make_claims(results: dict, cfg) -> list[dict]:

    paper = _paper()
    order = results["layer_order"]
    lay = results["layers"]
    mid = _middle(order)
    K = cfg.top_k
    cov = {L: lay[L]["coverage_topk"][-1] if lay[L]["coverage_topk"] else float("nan") for L in order}
    k_used = len(lay[mid]["coverage_topk"])
    dens = {L: lay[L]["density"] for L in order}
    null = _null(lay[mid])
    if k_used != K:
        verdict, why = "inconclusive", f"the sample has fewer than {K} distinct tokens"
    elif dens[mid] > MAX_DENSITY:
        verdict = "inconclusive"
        why = f"density {dens[mid]:.2%} > {MAX_DENSITY:.0%}: a dense SAE's features are covered by almost any positions"
        why += f" (the null's mean {null['mean']:.1%})" if null else ""
    elif null is None:
        verdict, why = "inconclusive", "no null model"
    else:
        verdict = "holds" if cov[mid] >= COVERAGE and cov[mid] > null["hi"] else "fails"
        why = (
            f"precondition met (density {dens[mid]:.3%}); {cov[mid]:.1%} {'>=' if cov[mid] >= COVERAGE else '<'} 70%, "
            f"{'above' if cov[mid] > null['hi'] else 'not above'} the null's {null['hi']:.1%}"
        )
    claims = [
        claim(
            "top10_coverage_middle",
            f"The {K} most frequent tokens activate over 70% of the SAE's features at the middle layer",
            paper["coverage_topk"][20][-1],
            round(cov[mid], 4),
            verdict,
            f"top-{k_used} cumulative coverage of d_sae at layer {mid} of {results['n_layers']} (the paper: 'over "
            f"70%', 76.46% at layer 20 of 42); {_precondition('')}; then holds if >= 70% and above the null's 95% "
            f"interval, fails otherwise; {_baseline(lay[mid], k_used)}; {verdict}: {why}",
        )
    ]
    if len(order) >= 3:
        best = max(order, key=lambda L: cov[L])
        if max(dens.values()) > MAX_DENSITY:
            verdict = "inconclusive"
            why = "density " + ", ".join(f"L{L}: {dens[L]:.2%}" for L in order) + f": above {MAX_DENSITY:.0%}"
        else:
            verdict = "holds" if best == mid and sum(cov[L] == cov[mid] for L in order) == 1 else "fails"
            why = "precondition met (density " + ", ".join(f"L{L}: {dens[L]:.3%}" for L in order) + ")"
        means = ", ".join(f"L{L}: {_null(lay[L])['mean']:.1%}" if _null(lay[L]) else f"L{L}: none" for L in order)
        n0 = _null(lay[mid])
        claims.append(
            claim(
                "middle_layer_highest",
                "The middle layer has the highest top-k coverage of the three layers",
                "yes (48.5%, 76.5%, 68.3%)",
                ", ".join(f"L{L}: {cov[L]:.1%}" for L in order),
                verdict,
                f"{_precondition(' at every layer')}; then holds if layer {mid}'s top-{K} coverage is strictly the "
                f"largest; baseline: the null's mean coverage of as many random positions, {means}"
                + (
                    f" ({n0['draws']} draws of {n0['N']:,} of {lay[mid]['n_tokens']:,} positions at L{mid})"
                    if n0
                    else ""
                )
                + f"; {verdict}: {why}",
            )
        )
    else:
        claims.append(
            claim(
                "middle_layer_highest",
                "The middle layer has the highest top-k coverage of the three layers",
                "yes",
                f"{len(order)} layer(s)",
                "inconclusive",
                "needs three layers; the model is too shallow",
            )
        )
    if null is None:
        verdict, ours = "inconclusive", "no null model"
    else:
        verdict = "holds" if cov[mid] > null["hi"] else ("fails" if cov[mid] < null["lo"] else "inconclusive")
        ours = f"{cov[mid]:.1%} vs {null['mean']:.1%} [{null['lo']:.1%}, {null['hi']:.1%}]"
    claims.append(
        claim(
            "topk_beats_random_positions",
            f"Beyond the paper: the {k_used} most frequent tokens cover more features than as many random positions",
            "not measured",
            ours,
            verdict,
            f"layer {mid}; top-{k_used} coverage of d_sae against the null: holds if above the null's 95% interval, "
            f"fails if below it, inconclusive inside it; {_baseline(lay[mid], k_used)}",
        )
    )
    shares = {L: lay[L]["connected_share"] for L in order}
    claims.append(
        claim(
            "connected_share",
            "Most SAE features are connected to at least one token in the sample",
            "87.7%-92.1%",
            ", ".join(f"L{L}: {shares[L]:.1%}" for L in order),
            "holds" if min(shares.values()) >= 0.8 else "fails",
            "holds if at least 80% of d_sae is connected at every layer",
        )
    )
    m = lay[mid]["matched"]
    if m["n_matched"] < 5:
        verdict = "inconclusive"
    elif m["p_greater"] < 0.05:
        verdict = "holds"
    elif m["p_less"] < 0.05:
        verdict = "fails"
    else:
        verdict = "inconclusive"
    claims.append(
        claim(
            "frequency_matched",
            "Beyond the paper: at matched frequency, function tokens activate more features than content tokens",
            "not measured",
            f"{m['n_above']}/{m['n_matched']} above matched median, median ratio {m['median_ratio']:.2f}"
            if m["n_matched"]
            else "no matched function tokens",
            verdict,
            f"layer {mid}; each function token vs the median degree of content tokens whose occurrence count is in the "
            f"same bin [{cfg.match_ratio:g}^b, {cfg.match_ratio:g}^(b+1)); one-sided sign test: holds if p(function > "
            "content) "
            "< 0.05, fails if p(function < content) < 0.05, inconclusive otherwise or with fewer than 5 matched "
            "tokens "
            f"(p> = {m['p_greater']:.3g}, p< = {m['p_less']:.3g})",
        )
    )
    fit = lay[mid]["degree_fit"]
    r2 = fit["r2_all"]
    claims.append(
        claim(
            "frequency_explains_degree",
            "Beyond the paper: a token's number of occurrences alone explains most of the variance of its log degree",
            "not measured",
            f"R2 = {r2:.2f}, slope {fit['slope']:.2f}" if r2 == r2 else "too few tokens",
            ("holds" if r2 >= 0.5 else "fails") if r2 == r2 else "inconclusive",
            f"layer {mid}; line log10(degree) ~ log10(occurrences) fitted on content tokens, R2 over all tokens with "
            "degree > 0; holds if R2 >= 0.5. "
            f"Function tokens sit {fit.get('function_factor', float('nan')):.2f}x the degree the line predicts",
        )
    )
    return claims
