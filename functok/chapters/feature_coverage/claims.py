"""Chapter 2's claims, each decided by the rule written in its note."""

from __future__ import annotations

from functok.book.results import claim
from functok.chapters.common import paper_numbers


def _paper() -> dict:
    return paper_numbers("feature_coverage")


def _middle(layers: list[int]) -> int:
    return sorted(layers)[len(layers) // 2] if len(layers) != 2 else sorted(layers)[1]


def make_claims(results: dict, cfg) -> list[dict]:

    paper = _paper()
    order = results["layer_order"]
    lay = results["layers"]
    mid = _middle(order)
    K = cfg.top_k
    cov = {L: lay[L]["coverage_topk"][-1] if lay[L]["coverage_topk"] else float("nan") for L in order}
    k_used = len(lay[mid]["coverage_topk"])
    claims = [
        claim(
            "top10_coverage_middle",
            f"The {K} most frequent tokens activate over 70% of the SAE's features at the middle layer",
            paper["coverage_topk"][20][-1],
            round(cov[mid], 4),
            ("holds" if cov[mid] >= 0.70 else "fails") if k_used == K else "inconclusive",
            f"top-{k_used} cumulative coverage of d_sae at layer {mid} of {results['n_layers']}; holds if >= 70% (the "
            "paper: "
            f"'over 70%', 76.46% at layer 20 of 42)",
        )
    ]
    if len(order) >= 3:
        best = max(order, key=lambda L: cov[L])
        claims.append(
            claim(
                "middle_layer_highest",
                "The middle layer has the highest top-k coverage of the three layers",
                "yes (48.5%, 76.5%, 68.3%)",
                ", ".join(f"L{L}: {cov[L]:.1%}" for L in order),
                "holds" if best == mid and sum(cov[L] == cov[mid] for L in order) == 1 else "fails",
                f"holds if layer {mid}'s top-{K} coverage is strictly the largest",
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
