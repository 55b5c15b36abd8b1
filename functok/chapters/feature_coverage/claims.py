"""Chapter 2's claims, each decided by the rule written in its note."""

from __future__ import annotations

from functok.chapters.common import paper_numbers
from functok.core.results import claim, precondition
from functok.sae.quality import QUALITY_BAR, quality_failures


def _paper() -> dict:
    return paper_numbers("feature_coverage")


def _middle(layers: list[int]) -> int:
    return sorted(layers)[len(layers) // 2] if len(layers) != 2 else sorted(layers)[1]


MAX_DENSITY = QUALITY_BAR["max_density"]  # coverage means something only if a position fires <= 1% of the features
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


def _precondition(where: str) -> str:
    b = QUALITY_BAR
    return (
        f"precondition: the SAE meets the quality bar{where} (density L0/d_sae <= {b['max_density']:.0%}, the paper's "
        f"Gemma Scope: {PAPER_DENSITY}; L0 <= {b['max_l0']:g}; explained variance >= {b['min_explained_variance']:g} "
        f"and CE score >= {b['min_ce_score']:g} on held-out windows; >= {b['min_alive']:.0%} of features firing in the "
        "sample), inconclusive otherwise"
    )


def quality_bar(v: dict) -> list[str]:
    """What keeps one layer's SAE below functok.sae.quality.QUALITY_BAR: L0 and alive features measured on the
    whole sample; explained variance and CE score on the held-out evaluation windows (published SAEs that
    the chapter does not evaluate are judged on what was measured)."""
    q = v.get("quality") or {}
    published = "l0_registry" in q or not q
    return quality_failures(
        v["l0_in_pass"],
        v["d_sae"],
        q.get("explained_variance"),
        q.get("ce_reconstruction_score"),
        v["connected_share"],
        skip_unmeasured=published,
    )


def make_claims(results: dict, cfg) -> list[dict]:
    """Chapter 2's claims in the scorecard's order: coverage, the middle layer, the null, the frequency
    controls."""
    order = results["layer_order"]
    lay = results["layers"]
    mid = _middle(order)
    cov = {L: lay[L]["coverage_topk"][-1] if lay[L]["coverage_topk"] else float("nan") for L in order}
    bar = {L: quality_bar(lay[L]) for L in order}
    return [
        _top_coverage_claim(results, cfg, mid, cov, bar),
        _middle_layer_claim(results, cfg, mid, cov, bar),
        _null_curve_claim(results, mid),
        frequency_claim(results, mid),
        closed_class_claim(results, mid),
        frequency_explains_claim(results),
    ]


def paper_firings_per_feature(layer: int = 20) -> float:
    """Firings per SAE feature behind the paper's Table 1 at one of its layers: n_tokens x L0 / d_sae."""
    p = _paper()
    return p["n_tokens"] * p["canonical_l0"][layer] / p["d_sae"]


def _top_coverage_claim(results: dict, cfg, mid: int, cov: dict, bar: dict) -> dict:
    """top10_coverage_middle: at the paper's scale, the top-k tokens cover over 70% of d_sae at the middle layer."""
    paper = _paper()
    lay = results["layers"]
    K = cfg.top_k
    k_used = len(lay[mid]["coverage_topk"])
    m = lay[mid].get("matched_scale")
    if k_used != K:
        verdict, why, ours = "inconclusive", f"the sample has fewer than {K} distinct tokens", round(cov[mid], 4)
    elif m is None:
        verdict, why, ours = "inconclusive", "no matched-scale coverage in these results", round(cov[mid], 4)
    else:
        ours = round(m["coverage"], 4)
        if bar[mid]:
            verdict, why = "inconclusive", f"the SAE misses the bar: {', '.join(bar[mid])}"
        else:
            verdict = "holds" if m["coverage"] >= COVERAGE else "fails"
            why = f"{m['coverage']:.1%} {'>=' if m['coverage'] >= COVERAGE else '<'} 70%"
    scale = (
        f"matched scale: the paper's setup gives {m['paper_firings_per_feature']:.0f} firings per feature "
        f"({paper['n_tokens']:,} tokens x L0 {paper['canonical_l0'][20]} / {paper['d_sae']:,} at layer 20), "
        f"ours {m['firings_per_feature']:,.0f}; the top-"
        f"{k_used} tokens' occurrences are thinned at random, each kept with probability "
        f"{m['fraction_kept']:.3f}, and the expected coverage is exact from the graph's edge counts (1 - (1 - q)^m "
        f"per feature); unthinned: {cov[mid]:.1%}"
        if m
        else "no matched scale"
    )
    return claim(
        "top10_coverage_middle",
        f"The {K} most frequent tokens activate over 70% of the SAE's features at the middle layer (at the "
        "paper's scale)",
        paper["coverage_topk"][20][-1],
        ours,
        verdict,
        f"top-{k_used} cumulative coverage of d_sae at layer {mid} of {results['n_layers']} (the paper: 'over "
        f"70%', 76.46% at layer 20 of 42); {scale}; {_precondition('')}; then holds if >= 70%, fails otherwise "
        f"(the nulls are a separate claim, topk_beats_null_curve); {verdict}: {why}",
    )


def _middle_layer_claim(results: dict, cfg, mid: int, cov: dict, bar: dict) -> dict:
    """middle_layer_highest: of three or more layers, the middle one has the highest top-k coverage."""
    order = results["layer_order"]
    lay = results["layers"]
    K = cfg.top_k
    if len(order) < 3:
        return claim(
            "middle_layer_highest",
            "The middle layer has the highest top-k coverage of the three layers",
            "yes",
            f"{len(order)} layer(s)",
            "inconclusive",
            "needs three layers; the model is too shallow",
        )
    best = max(order, key=lambda L: cov[L])
    if any(bar.values()):
        verdict = "inconclusive"
        why = "below the bar: " + "; ".join(f"L{L}: {', '.join(b)}" for L, b in bar.items() if b)
    else:
        verdict = "holds" if best == mid and sum(cov[L] == cov[mid] for L in order) == 1 else "fails"
        why = "precondition met (density " + ", ".join(f"L{L}: {lay[L]['density']:.3%}" for L in order) + ")"
    means = ", ".join(f"L{L}: {_null(lay[L])['mean']:.1%}" if _null(lay[L]) else f"L{L}: none" for L in order)
    n0 = _null(lay[mid])
    return claim(
        "middle_layer_highest",
        "The middle layer has the highest top-k coverage of the three layers",
        "yes (48.5%, 76.5%, 68.3%)",
        ", ".join(f"L{L}: {cov[L]:.1%}" for L in order),
        verdict,
        f"{_precondition(' at every layer')}; then holds if layer {mid}'s top-{K} coverage is strictly the "
        f"largest; baseline: the null's mean coverage of as many random positions, {means}"
        + (f" ({n0['draws']} draws of {n0['N']:,} of {lay[mid]['n_tokens']:,} positions at L{mid})" if n0 else "")
        + f"; {verdict}: {why}",
    )


MIN_DRAWS = 200  # the null curve's intervals need this many draws
FAR_FROM_CEILING = 0.5  # compare where the random-position null covers at most half the connected features


def comparison_point(c: dict, ceiling: float) -> int | None:
    """Index of the curve point the null claim is decided at: the most positions at which the random-position
    null's mean is at most FAR_FROM_CEILING x the ceiling (None: near its ceiling everywhere)."""
    ok = [j for j, v in enumerate(c["random"]["mean"]) if v <= FAR_FROM_CEILING * ceiling]
    return max(ok) if ok else None


def _null_verdict(top: float, nulls: dict) -> tuple[str, str]:
    """holds above both drawn nulls' 97.5% percentiles, fails below either's 2.5%, inconclusive between."""
    if any(v["hi"] != v["hi"] for v in nulls.values()):
        return "inconclusive", "a null is undefined at this point (too few token types)"
    if all(top > v["hi"] for v in nulls.values()):
        return "holds", "above both nulls' intervals"
    if any(top < v["lo"] for v in nulls.values()):
        return "fails", "below " + " and ".join(k for k, v in nulls.items() if top < v["lo"]) + "'s interval"
    return "inconclusive", "inside " + " and ".join(k for k, v in nulls.items() if top <= v["hi"]) + "'s interval"


def _null_curve_claim(results: dict, mid: int) -> dict:
    """topk_beats_null_curve: the top-k tokens' occurrences against random positions and whole token types,
    at the same number of positions, where the nulls are far from their ceiling."""
    lay = results["layers"]
    k_used = len(lay[mid]["coverage_topk"])
    c = lay[mid].get("null_curves")
    rule = (
        f"layer {mid}; curves over N = N_{k_used} / 2^j positions (j = 0..12): the top-{k_used} tokens' occurrences "
        "thinned at random to N (expected coverage, exact), N random positions and whole token types other than "
        f"the top {k_used} drawn until their occurrences reach N (each over the draws, 2.5-97.5 percentiles), and "
        "N content-token positions (expected coverage, shown); decided at the largest N where the random-position "
        f"null covers at most {FAR_FROM_CEILING:.0%} of the connected features (far from its ceiling): holds if the "
        "top tokens are above both drawn nulls' intervals, fails if below either, inconclusive otherwise; "
        f"precondition: at least {MIN_DRAWS} draws"
    )
    statement = (
        f"Beyond the paper: the {k_used} most frequent tokens cover more features than as many random positions "
        "or whole random token types"
    )
    if c is None or "random" not in c:
        return claim("topk_beats_null_curve", statement, "not measured", "no null curves", "inconclusive", rule)
    j = comparison_point(c, lay[mid]["connected_share"])
    draws = min(c["random"]["n_draws"], c["token_identity"]["n_draws"])
    if j is None:
        verdict, ours, why = "inconclusive", "the null is near its ceiling at every N", "no point far from it"
    else:
        nulls = {k: {q: c[k][q][j] for q in ("mean", "lo", "hi")} for k in ("random", "token_identity")}
        verdict, why = _null_verdict(c["top"][j], nulls)
        if draws < MIN_DRAWS:
            verdict, why = "inconclusive", f"precondition not met: {draws} draws"
        r, t = nulls["random"], nulls["token_identity"]
        ct = c["content"][j]
        ours = (
            f"N = {c['n_positions'][j]:,}: {c['top'][j]:.1%} vs random positions {r['mean']:.1%} [{r['lo']:.1%}, "
            f"{r['hi']:.1%}], token types {t['mean']:.1%} [{t['lo']:.1%}, {t['hi']:.1%}], content positions "
            + (f"{ct:.1%}" if ct == ct else "too few")
        )
    return claim("topk_beats_null_curve", statement, "not measured", ours, verdict, f"{rule}; {verdict}: {why}")


def make_preconditions(results: dict, cfg) -> list[dict]:
    """What chapter 2's claims rest on, per layer: the SAE's quality bar, and connected features (which, with a
    sparse SAE, restates the bar's alive-features test: shown, not scored)."""
    order = results["layer_order"]
    lay = results["layers"]
    out = []
    for L in order:
        v, fails = lay[L], quality_bar(lay[L])
        q = v.get("quality") or {}
        ev, ce = q.get("explained_variance"), q.get("ce_reconstruction_score")
        out.append(
            precondition(
                f"sae_quality_bar[L{L}]",
                f"Layer {L}'s SAE meets the quality bar",
                f"density {v['density']:.3%}, L0 {v['l0_in_pass']:.1f}"
                + (f", explained variance {ev:.3f}" if ev is not None else "")
                + (f", CE score {ce:.3f}" if ce is not None else "")
                + (f"; misses: {', '.join(fails)}" if fails else ""),
                not fails,
                _precondition("").removeprefix("precondition: ") + " (claims at this layer)",
            )
        )
    c = lay[_middle(order)].get("null_curves") or {}
    draws = min((c.get(k) or {}).get("n_draws", 0) for k in ("random", "token_identity"))
    out.append(
        precondition(
            "null_draws",
            "The coverage nulls have enough draws for their intervals",
            f"{draws} draws",
            draws >= MIN_DRAWS,
            f"met with at least {MIN_DRAWS} draws of random positions and of whole token types (null_draws); the "
            "null-curve claim is inconclusive otherwise",
        )
    )
    out.append(
        precondition(
            "connected_share",
            "Most SAE features are connected to at least one token in the sample (the paper: 87.7%-92.1%)",
            ", ".join(f"L{L}: {lay[L]['connected_share']:.1%}" for L in order),
            min(lay[L]["connected_share"] for L in order) >= QUALITY_BAR["min_alive"],
            f"met if at least {QUALITY_BAR['min_alive']:.0%} of d_sae fires on some token at every layer, over "
            f"{lay[order[0]]['n_tokens']:,} positions; with a sparse SAE every live feature is connected, so this is "
            "the quality bar's alive-features test",
        )
    )
    return out


def _fmt_p(p: float) -> str:
    return f"{p:.3g}" if p == p else "none"


def _layer_line(L: int, r: dict, m: dict) -> str:
    """One layer's two controls, for the note."""
    reg = (
        f"g {r['g']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}], p {_fmt_p(r['p'])}, Holm p {_fmt_p(r['p_holm'])}"
        if r["g"] == r["g"]
        else f"no regression ({r['n_function']} function tokens seen)"
    )
    mat = (
        f"matched diff {m['mean_diff']:+.3f} [{m['lo']:+.3f}, {m['hi']:+.3f}], Holm p {_fmt_p(m['p_holm'])}"
        if m["mean_diff"] == m["mean_diff"]
        else "too few matched for a matched estimate"
    )
    return f"L{L}: {reg}; {mat} ({m['n_matched']} matched, {m['n_unmatched']} unmatched)"


def _direction(x: dict) -> int:
    """+1 / -1 when the estimate is significant at the corrected level, 0 otherwise."""
    est = x["g"] if "g" in x else x["mean_diff"]
    if not (est == est and x.get("p_holm", float("nan")) < x.get("alpha", 0.05)):
        return 0
    return 1 if est > 0 else -1


def frequency_claim(results: dict, mid: int) -> dict:
    """Function tokens vs content tokens of the same frequency (`frequency.frequency_control`), decided at the
    middle layer by the regression's g at the Holm-corrected level; the matched pairs can only veto."""
    order = results["layer_order"]
    ctl = {L: results["layers"][L]["frequency_control"] for L in order}
    r, m = ctl[mid]["regression"], ctl[mid]["matched"]
    alpha, n_tests = r["alpha"], r["n_tests"]
    d_reg, d_mat = _direction(r), _direction(m)
    if r["g"] != r["g"]:
        verdict, why = "inconclusive", f"fewer than 5 function tokens seen at layer {mid}"
    elif d_reg and d_mat == -d_reg:
        verdict, why = "inconclusive", "the regression and the matched pairs are significant in opposite directions"
    elif d_reg:
        verdict = "holds" if d_reg > 0 else "fails"
        why = f"g {'>' if d_reg > 0 else '<'} 0 at Holm p {_fmt_p(r['p_holm'])} < {alpha:g}"
    else:
        verdict, why = "inconclusive", f"g not significant at the corrected level (Holm p {_fmt_p(r['p_holm'])})"
    dirs = {L: _direction(ctl[L]["regression"]) for L in order}
    if len({d for d in dirs.values() if d}) > 1:
        why += "; the layers disagree: " + ", ".join(
            f"L{L} {'higher' if d > 0 else 'lower' if d < 0 else 'not significant'}" for L, d in dirs.items()
        )
    ours = (
        f"g = {r['g']:+.2f} ({r['factor']:.2f}x the 1 + degree) [{r['lo']:+.2f}, {r['hi']:+.2f}], "
        f"Holm p = {_fmt_p(r['p_holm'])}"
        if r["g"] == r["g"]
        else f"{r['n_function']} function tokens seen"
    )
    if m["mean_diff"] == m["mean_diff"]:
        ours += f"; matched {m['n_matched']}/{m['n_function_seen']}: diff {m['mean_diff']:+.2f}"
    return claim(
        "frequency_matched",
        "Beyond the paper: at the same frequency, function tokens activate more features than content tokens",
        "not measured",
        ours,
        verdict,
        f"layer {mid} decides; function tokens are chapter 1's frequency-defined list, so this asks about the "
        "most frequent tokens (closed_class_degree uses labels that counts do not decide); baseline: content "
        f"tokens of the same frequency. Regression {r['model']} over the "
        f"{r['n_function']} function and {r['n_content']} content tokens seen (degree 0 kept via log(1 + degree): "
        f"{r['n_zero_degree']['function']} function, {r['n_zero_degree']['content']} content), knots evenly spaced "
        f"in log count over the content tokens; {r['n_bootstrap']} per-token bootstrap resamples (seed "
        f"{r['seed']}), {r['level']:.0%} percentile interval, two-sided p Holm-corrected across the {n_tests} "
        f"layers tested (family-wise alpha {alpha:g}). Rule: holds if g > 0 at Holm p < {alpha:g}, fails if "
        "g < 0 at Holm p < alpha, inconclusive otherwise or if the matched pairs are significant the other way. "
        f"Matched pairs: content tokens with count within {m['window']:g}x of the function token's; "
        f"{m['n_matched']} of {m['n_function_seen']} function tokens matched, {m['n_unmatched']} unmatched (no "
        f"content token in their window; the most frequent). Per layer: "
        + "; ".join(_layer_line(L, ctl[L]["regression"], ctl[L]["matched"]) for L in order)
        + f". {verdict}: {why}",
    )


R2_RULE = 0.5


def frequency_explains_claim(results: dict) -> dict:
    """R2 of the content tokens' line at every layer; the verdict needs the layers to agree."""
    order = results["layer_order"]
    fits = {L: results["layers"][L]["degree_fit"] for L in order}
    r2 = {L: fits[L]["r2_all"] for L in order}
    ok = {L: v for L, v in r2.items() if v == v}
    sizes = ", ".join(f"L{L}: {fits[L]['n_content'] + fits[L]['n_function']}" for L in order)
    if len(ok) < len(order):
        verdict = "inconclusive"
        why = "too few content tokens at " + ", ".join(f"L{L}" for L in order if L not in ok)
    elif all(v >= R2_RULE for v in ok.values()):
        verdict, why = "holds", f"R2 >= {R2_RULE} at every layer"
    elif all(v < R2_RULE for v in ok.values()):
        verdict, why = "fails", f"R2 < {R2_RULE} at every layer"
    else:
        verdict = "inconclusive"
        why = (
            f"the layers disagree: R2 >= {R2_RULE} at "
            + ", ".join(f"L{L}" for L, v in ok.items() if v >= R2_RULE)
            + ", below at "
            + ", ".join(f"L{L}" for L, v in ok.items() if v < R2_RULE)
        )
    return claim(
        "frequency_explains_degree",
        "Beyond the paper: a token's number of occurrences alone explains most of the variance of its log degree",
        "not measured",
        ", ".join(f"L{L}: R2 {r2[L]:.2f}" if L in ok else f"L{L}: too few tokens" for L in order),
        verdict,
        "per layer, a line log10(degree) ~ log10(occurrences) fitted on content tokens, R2 over all tokens seen "
        f"with degree > 0 ({sizes} tokens); holds if R2 >= {R2_RULE} at every layer, fails if below at every "
        f"layer, inconclusive if the layers disagree; {verdict}: {why}",
    )


CLOSED_ALPHA = 0.05


def closed_class_claim(results: dict, mid: int) -> dict:
    """closed_class_degree: closed-class words and punctuation against content words of the same count, by
    rarefied degree (`closed_class.closed_class_control`), decided at the middle layer and the middle size."""
    order = results["layer_order"]
    ctl = {L: results["layers"][L].get("closed_class_control") for L in order}
    statement = (
        "Beyond the paper: closed-class words and punctuation activate more distinct features per sampled "
        "occurrence than content words seen as often"
    )
    if ctl[mid] is None:
        return claim("closed_class_degree", statement, "not measured", "not run", "inconclusive", "no control")
    sizes = sorted(ctl[mid], key=int)
    n = sizes[len(sizes) // 2]
    r = ctl[mid][n]
    if r["difference"] != r["difference"]:
        verdict, why = "inconclusive", f"fewer than 5 tokens of a label seen {n} times in shared count bins"
    elif r["p"] < CLOSED_ALPHA:
        verdict = "holds" if r["difference"] > 0 else "fails"
        why = f"difference {r['difference']:+.2f} at p {r['p']:.4f} < {CLOSED_ALPHA}"
    else:
        verdict, why = "inconclusive", f"p {r['p']:.4f} >= {CLOSED_ALPHA}"
    ours = (
        f"D_{n}: {r['difference']:+.2f} features (p = {r['p']:.4f} +- {r['p_se']:.4f}; {r['n_function']} function vs "
        f"{r['n_content']} content tokens)"
        if r["difference"] == r["difference"]
        else f"{r['n_function']} function, {r['n_content']} content tokens"
    )
    per = "; ".join(
        f"L{L} "
        + ", ".join(
            f"n={m}: {c['difference']:+.2f} (p {c['p']:.3g})" if c["difference"] == c["difference"] else f"n={m}: -"
            for m, c in sorted(ctl[L].items(), key=lambda kv: int(kv[0]))
        )
        for L in order
        if ctl[L]
    )
    return claim(
        "closed_class_degree",
        statement,
        "not measured",
        ours,
        verdict,
        "labels that counts do not decide: closed-class words of data/closed_class_words.yaml (with their leading "
        "space) and punctuation / white space are function, other whole words content, fragments and numbers "
        f"neither; rarefied degree D_n = expected distinct features among n occurrences drawn without replacement, "
        f"n = {', '.join(str(m) for m in sizes)} (tokens seen fewer than n times left out); the difference of the "
        "labels' mean D_n within bins of log10 count 0.1 wide, weighted by the bin's function tokens; two-sided "
        f"p from {r['n_permutations']:,} seeded permutations of the labels within the bins (its standard error "
        f"beside it). Rule: decided at layer {mid} and n = {n}: holds if the difference > 0 at p < {CLOSED_ALPHA}, "
        f"fails if < 0 at p < {CLOSED_ALPHA}, inconclusive otherwise. Per layer: {per}. {verdict}: {why}",
    )
