"""Chapter 5's claims (re-activation by function tokens, steering the last function token), each
decided by the rule written in its note."""

from __future__ import annotations

import numpy as np

from functok.chapters.common import paper_numbers
from functok.core.results import claim, precondition, with_seeds


def _paper() -> dict:
    return paper_numbers("reactivation")


def precision_bound(v: dict) -> tuple[int, int, float]:
    """(firings on the concept, firings in all, the Wilson 95% lower bound of precision P(concept | fires)).
    The counts come back from the recorded rates: on = P(fires | concept) x occurrences, fired = on /
    precision. A bound, not the point estimate, meets min_precision: a feature that fired once, on the
    concept, has precision 1 and a bound of 0.21."""
    from scipy.stats import binomtest

    if "precision_counts" in v:  # episode precision on the held-out half: firings in an episode / all firings
        on, fired = v["precision_counts"]
        lb = float(binomtest(on, fired).proportion_ci(0.95, method="wilson").low) if fired else float("nan")
        return on, fired, lb
    on = int(round(v["p_fire_on_concept"] * v["n_occurrences"]))
    prec = v.get("precision", float("nan"))
    fired = int(round(on / prec)) if on and prec == prec and prec > 0 else 0
    if fired == 0:
        return on, fired, float("nan")
    return on, fired, float(binomtest(on, fired).proportion_ci(0.95, method="wilson").low)


def preconditions(res: dict, cfg) -> dict[str, dict]:
    """Per concept, whether the setup can express the paper's claims (issue 13): re-activation needs a
    feature that stands for the concept (the 95% lower bound of its precision P(concept | fires) at least
    cfg.min_precision); steering also needs a model that produces the concept unsteered in at least one
    of its own contexts (greedy top-1 where the concept comes next)."""
    out = {}
    for c, v in res["concepts"].items():
        on, fired, lb = precision_bound(v)
        enough = v["n_occurrences"] >= getattr(cfg, "min_occurrences", 0)
        feature_ok = enough and lb == lb and lb >= cfg.min_precision
        un = v.get("unsteered", {"predicted": 0, "contexts": 0})
        prec = (
            f"feature precision {on}/{fired} = {on / fired:.1%}, 95% lower bound {lb:.1%} < {cfg.min_precision:.0%}"
            if fired
            else "the feature never fires on the concept"
        )
        out[c] = {
            "feature": feature_ok,
            "model": un["predicted"] > 0,
            "why": "; ".join(
                w
                for w, bad in (
                    (f"{v['n_occurrences']} occurrences < {cfg.min_occurrences}", not enough),
                    (prec, lb != lb or lb < cfg.min_precision),
                    (f"the model predicts it in 0 of {un['contexts']} contexts", un["predicted"] == 0),
                )
                if bad
            ),
        }
    return out


def make_preconditions(res: dict, cfg) -> list[dict]:
    """The page's preconditions table: the SAE's quality bar, then per concept the two checks of
    `preconditions` (a feature that stands for the concept; the model producing it unsteered)."""
    q = res.get("sae_quality") or {}
    bar = q.get("failures", [])
    out = []
    if q:
        out.append(
            precondition(
                "sae_quality_bar",
                "The SAE meets the quality bar (else none of its features is interpreted)",
                f"L0 {q['l0']:.1f} of {q['d_sae']:,}, explained variance {q['explained_variance']:.3f}, CE score "
                f"{q['ce_reconstruction_score']:.3f} (loss +{q['loss_increase_nats']:.3f} nats; "
                f"{q['mean_ablation_score']:.3f} against mean ablation), alive {q['alive']:.0%}"
                + (
                    f", {q['single_token_feature_share']:.0%} of them fired by one token type"
                    if q.get("single_token_feature_share") is not None
                    else ""
                )
                + (f"; misses: {', '.join(bar)}" if bar else ""),
                not bar,
                "functok.sae.quality.QUALITY_BAR on held-out windows; every claim is inconclusive when it is not met",
            )
        )
    if "appendix_a" in res:
        app = res["appendix_a"]
        out.append(
            precondition(
                "final_token_is_function",
                "The chat template's final token (where Appendix A steers) is a function token of the model's own list",
                ", ".join(repr(t) for t in app["final_token"]),
                bool(app["final_is_function"]),
                "the token ending every test prompt's template is among the model's function tokens (chapter 1's rule "
                "on the embedded corpus); Appendix A's claims are inconclusive otherwise",
            )
        )
    for c, p in preconditions(res, cfg).items():
        v = res["concepts"][c]
        on, fired, lb = precision_bound(v)
        un = v.get("unsteered", {"predicted": 0, "contexts": 0})
        out.append(
            precondition(
                f"concept_feature[{c.strip()}]",
                f"A feature stands for {c.strip()!r}",
                (f"{v['n_occurrences']} occurrences; " if "precision_counts" in v else "")
                + (f"precision {on}/{fired}, 95% lower bound {lb:.1%}" if fired else "never fires on the concept"),
                p["feature"],
                (
                    f"at least {cfg.min_occurrences} occurrences, and the Wilson 95% lower bound of the feature's "
                    f"episode precision at least {cfg.min_precision:.0%}: P(the concept at the firing or within "
                    f"{cfg.episode_window} positions before | fires), selected on the first half of the documents "
                    "and measured on the second"
                    if "precision_counts" in v
                    else f"Wilson 95% lower bound of P(concept | fires) at least {cfg.min_precision:.0%}"
                )
                + " (re-activation and steering claims)",
            )
        )
        out.append(
            precondition(
                f"concept_predicted[{c.strip()}]",
                f"The model produces {c.strip()!r} unsteered in some of its own contexts",
                f"{un['predicted']} of {un['contexts']} contexts",
                p["model"],
                "greedy top-1 where the concept comes next in at least one context (steering claims)",
            )
        )
    return out


def _excluded(pre: dict, key: str) -> str:
    bad = {c: p["why"] for c, p in pre.items() if not p[key] or (key == "model" and not p["feature"])}
    if len(bad) > 1 and len(bad) == len(pre) and len(set(bad.values())) == 1:
        return f"; excluded: every concept ({next(iter(bad.values()))})"
    return "; excluded: " + ", ".join(f"{c.strip()} ({w})" for c, w in bad.items()) if bad else ""


def make_claims(res: dict, cfg) -> list[dict]:
    """Chapter 5's claims in the scorecard's order: re-activation, steering, then Appendix A's (chat template)."""
    pre = preconditions(res, cfg)
    bar = (res.get("sae_quality") or {}).get("failures", [])
    if bar:  # an SAE below the quality bar: none of its features is interpreted
        for p in pre.values():
            p["feature"] = False
            p["why"] = "SAE below the quality bar: " + ", ".join(bar)
    claims = [_one_seed(c, res) for c in _reactivation_claims(res, cfg, pre) + _steering_claims(res, cfg, pre)]
    if "appendix_a" in res:
        app = chat_claims(res["appendix_a"], cfg, bar)
        if not res["appendix_a"].get("final_is_function", True):  # the paper's "last function token" is not one here
            final = ", ".join(repr(t) for t in res["appendix_a"]["final_token"])
            for c in app:
                c["verdict"] = "inconclusive"
                c["note"] += f"; inconclusive: the template's final token {final} is not in the model's function tokens"
        claims += app
    return claims


def _one_seed(c: dict, res: dict) -> dict:
    """A claim on the SAE's features, scored on the one SAE seed it reads (`per_seed`) when the chapter trained it;
    the other seeds of chapter 2 are not scanned and steered again (each would cost the chapter's time again)."""
    seed = res.get("sae_seed")
    if seed is None:
        return c
    c = {**c, "note": f"{c['note']}; scored on one SAE seed ({seed}: chapter 2's first), not on chapter 2's others"}
    return with_seeds(c, {seed: (c["verdict"], c["ours"])})


def _reactivation_claims(res: dict, cfg, pre: dict) -> list[dict]:
    """reactivation and reactivation_function_vs_content, over the concepts with a concept feature."""
    paper = _paper()
    cs = {c: v for c, v in res["concepts"].items() if pre[c]["feature"]}
    ratios = {c: v["reactivation"]["fn_ratio"] for c, v in cs.items()}
    ok = [c for c, r in ratios.items() if r == r and r >= 2]
    judged = [c for c, r in ratios.items() if r == r]
    ours = (
        ", ".join(
            f"{c.strip()} {v['reactivation']['fn_after_rate']:.1%} vs {v['reactivation']['fn_base_rate']:.1%}"
            for c, v in cs.items()
        )
        or "no concept passes the precondition"
    )
    fn_more = [c for c, v in cs.items() if _fn_above_content(v["reactivation"])]
    return [
        claim(
            "reactivation",
            "A feature a content token activates is re-activated by later function tokens (Fig 6)",
            paper["reactivation"],
            ours,
            "inconclusive" if not judged else ("holds" if len(ok) * 2 > len(judged) else "fails"),
            f"per concept: share of function tokens within {cfg.horizon} tokens after the concept on which its feature "
            f"fires, vs function tokens of windows without the concept; holds if at least twice the baseline for most "
            f"concepts ({len(ok)} of {len(judged)}). Baseline: the same feature on function tokens of windows without "
            f"the concept. Precondition: the 95% lower bound (Wilson) of the feature's precision P(concept | fires) at "
            f"least {cfg.min_precision:.0%}; "
            f"inconclusive when no concept passes" + _excluded(pre, "feature"),
        ),
        claim(
            "reactivation_function_vs_content",
            "Beyond the paper: after a concept, function tokens re-activate its feature more often than content "
            "tokens do",
            "not measured",
            ", ".join(
                f"{c.strip()} {v['reactivation']['fn_after_rate']:.1%} vs {_content_rate(v['reactivation']):.1%}"
                for c, v in cs.items()
            ),
            ("holds" if len(fn_more) * 2 > len(cs) else "fails") if cs else "inconclusive",
            f"firing rate on function vs content tokens in the same {cfg.horizon}-token spans, the content rate "
            "matched to the function tokens' distances from the concept (per distance bin 1-4, 5-16, 17-64, 65+, "
            "weighted by the function tokens' share); a concept counts when the function rate's Wilson 95% lower "
            "bound is above the matched content rate; holds for most concepts "
            f"({len(fn_more)} of {len(cs)}); same precondition as re-activation" + _excluded(pre, "feature"),
        ),
    ]


def _content_rate(r: dict) -> float:
    """The content tokens' rate matched to the function tokens' distances (older results: the raw rate)."""
    return r.get("ct_after_rate_matched", r["ct_after_rate"])


def _fn_above_content(r: dict) -> bool:
    lb = r.get("fn_after_interval", [r["fn_after_rate"]])[0]
    ct = _content_rate(r)
    return lb == lb and ct == ct and lb > ct


def _steering_claims(res: dict, cfg, pre: dict) -> list[dict]:
    """steering_probability and steering, over the concepts that pass both preconditions."""
    paper = _paper()
    steered = [a for a in res["alphas"] if a != 0]
    cs = {c: v for c, v in res["concepts"].items() if pre[c]["feature"] and pre[c]["model"]}
    steer_pre = (
        f"Preconditions: feature precision's 95% lower bound at least {cfg.min_precision:.0%} and the unsteered "
        "model predicts the concept (greedy) in at least one of its own contexts; inconclusive when no concept passes"
        + _excluded(pre, "model")
    )
    if not cs:
        verdict, ours, tests = "inconclusive", "no concept passes the preconditions", {}
    elif 0 in res["alphas"] and steered:
        tests = {c: _steered(v, steered) for c, v in cs.items()}
        won = [c for c, t in tests.items() if t["p_adjusted"] < ALPHA]
        verdict = "holds" if len(won) * 2 > len(cs) else "fails"
        ours = ", ".join(
            f"{c.strip()} {t['hits']}/{t['n']} at alpha {t['alpha']} vs {t['base']}/{t['n']} unsteered "
            f"(p {t['p_adjusted']:.2g})"
            for c, t in tests.items()
        )
    else:
        verdict, ours, tests = "inconclusive", "needs alpha 0 and a non-zero alpha", {}
    p_ours, p_verdict, p_count = _steering_probability(res, cs, steered, ours)
    return [
        claim(
            "steering_probability",
            "Beyond the paper: steering the last function token raises the probability that the next token starts "
            "the concept",
            "not measured",
            p_ours,
            p_verdict,
            "mean over prompts of the log-probability of the concept's first token as the next token, best non-zero "
            f"alpha vs unsteered (shown as a factor); holds if it at least doubles for most concepts{p_count}. "
            "Baseline: the same prompts unsteered. " + steer_pre,
        ),
        claim(
            "steering",
            "Adding a feature to the last function token's activation steers the output to its concept (Fig 7, Fig 11)",
            paper["steering"],
            ours,
            verdict,
            f"per concept, the prompts (of {len(cfg.steer_prompts)}) whose {cfg.n_new_tokens}-token greedy "
            "continuation names the concept with the vector at the last (function) token, at each non-zero alpha, "
            "against the same prompts unsteered: one-sided Fisher exact test, the smallest p times the number of "
            f"alphas (Bonferroni); a concept is steered at adjusted p < {ALPHA}; holds if most concepts are. "
            + steer_pre,
        ),
        _position_control(res, cs, tests, steer_pre),
    ]


ALPHA = 0.05  # the steering claims' test level


def _steered(v: dict, steered: list) -> dict:
    """The last-token cell's best alpha against unsteered: counts and the Bonferroni-adjusted Fisher p."""
    last = v["steering_counts"]["last"]
    ps = {a: _fisher_counts(last[str(a)], last["0"]) for a in steered}
    best = min(steered, key=lambda a: (ps[a], -last[str(a)][0]))
    return {"alpha": best, "hits": last[str(best)][0], "n": last[str(best)][1], "base": last["0"][0],
            "p_adjusted": min(1.0, ps[best] * len(steered))}  # fmt: skip


def _fisher_counts(a: list, b: list) -> float:
    """One-sided Fisher exact p that the success rate of a = [hits, n] exceeds b's."""
    from scipy.stats import fisher_exact

    if not a[1] or not b[1]:
        return 1.0
    return float(fisher_exact([[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]], alternative="greater")[1])


def _position_control(res: dict, cs: dict, tests: dict, steer_pre: str) -> dict:
    """steering_position_control: at each steered concept's alpha, the last function token against the last content
    token and against the same function token one position before the last."""
    steered = {c: t for c, t in tests.items() if t["p_adjusted"] < ALPHA}
    rows, both = [], []
    for c, t in steered.items():
        cells = cs[c].get("steering_counts", {})
        a = str(t["alpha"])
        if "last" not in cells or "content_last" not in cells or "function_earlier" not in cells:
            continue
        last, cl, fe = cells["last"][a], cells["content_last"][a], cells["function_earlier"][a]
        p_type, p_pos = _fisher_counts(last, cl), _fisher_counts(last, fe)
        rows.append(f"{c.strip()} alpha {a}: last function {last[0]}/{last[1]}, last content {cl[0]}/{cl[1]} "
                    f"(p {p_type:.2g}), function one before last {fe[0]}/{fe[1]} (p {p_pos:.2g})")  # fmt: skip
        if p_type < ALPHA and p_pos < ALPHA:
            both.append(c)
    judged = len(rows)
    verdict = "inconclusive" if not judged else ("holds" if len(both) * 2 > judged else "fails")
    return claim(
        "steering_position_control",
        "Beyond the paper: the steering effect belongs to the last function token, not to the last position or to "
        "any function token",
        "not measured (the paper steers the last function token only)",
        "; ".join(rows) or "no concept is steered at the last token: no effect to place",
        verdict,
        'the 2 x 2 control on the same words: the vector on the prompt\'s last function token ("The capital of"), '
        'on the content token before it as the last position ("The capital"), and on that function token one '
        'position before the last ("The capital of the"), at the alpha the steering claim chose; one-sided Fisher '
        f"exact tests of the last function token against each; a concept counts when both p < {ALPHA}; holds if most "
        "steered concepts count; inconclusive when no concept is steered (the position of an effect that is not "
        "there cannot be tested). The content token one before the last is in the results' counts too. " + steer_pre,
    )


def _steering_probability(res: dict, cs: dict, steered: list, ours: str) -> tuple[str, str, str]:
    """(ours, verdict, count for the note) of steering_probability: the concept's next-token probability
    gain at the best non-zero alpha; without alpha 0 and a non-zero alpha, the steering claim's words."""
    if not (cs and 0 in res["alphas"] and steered):
        return ours, "inconclusive", ""
    gain = {c: max(v["steering_logprob"][str(a)] for a in steered) - v["steering_logprob"]["0"] for c, v in cs.items()}
    up = [c for c, g in gain.items() if g > np.log(2)]
    return (
        ", ".join(f"{c.strip()} x{np.exp(g):.1f}" for c, g in gain.items()),
        ("holds" if len(up) * 2 > len(cs) else "fails"),
        f" ({len(up)} of {len(cs)})",
    )


def _fisher_greater(a_hits: int, b_hits: int, n: int) -> float:
    """One-sided Fisher exact p-value that rate a > rate b, n prompts each."""
    from scipy.stats import fisher_exact

    return float(fisher_exact([[a_hits, n - a_hits], [b_hits, n - b_hits]], alternative="greater")[1])


def chat_claims(app: dict, cfg, bar: list[str] = ()) -> list[dict]:
    """Appendix A through the chat template, per trait (functok.chapters.reactivation.appendix_a); `bar`: the
    SAE's quality-bar failures, which leave every top-k claim inconclusive (its features are not interpreted)."""
    n = len(cfg.test_prompts)
    out = []
    for name, t in app["traits"].items():
        base = round(t["base"]["rate"] * n)
        raw = round(t["raw"]["rate"] * n)
        if t.get("k") is None or bar:
            why = (
                "SAE below the quality bar: " + ", ".join(bar)
                if bar
                else f"the trait's own activation steers {raw}/{n} answers vs {base}/{n} unsteered, so no SAE features "
                "can be searched"
                if raw <= base
                else f"no top-k set of its {t['active_features']} active features reaches {cfg.trait_keep:.0%} of "
                f"the raw activation's {raw}/{n}"
            )
            ours = (
                f"raw activation {raw}/{n}, unsteered {base}/{n}, no top-k set"
                if t.get("k") is None
                else f"top-{t['k']} features: {round(t['topk_last']['rate'] * n)}/{n} vs {base}/{n} unsteered (not "
                "counted)"
            )
            for cid, statement in (
                (f"chat_steering:{name}", f"Steering the last function token with the '{name}' features works"),
                (
                    f"chat_steering_position:{name}",
                    f"The '{name}' edit works at the last function token, not at a content token",
                ),
            ):
                out.append(claim(cid, statement, "Fig 7, Fig 11", ours, "inconclusive", "precondition: " + why))
            continue
        last = round(t["topk_last"]["rate"] * n)
        content = round(t["topk_content"]["rate"] * n)
        every = round(t["topk_every"]["rate"] * n)
        p_base = _fisher_greater(last, base, n)
        out.append(
            claim(
                f"chat_steering:{name}",
                f"Steering the last function token with the '{name}' features works",
                "Fig 7, Fig 11 (e.g. Mount Fuji -> Russia)",
                f"top-{t['k']} features: {last}/{n} answers show it vs {base}/{n} unsteered",
                "holds" if last * 2 >= n and p_base < 0.05 else "fails",
                f"rule: holds if at least half of the {n} test prompts' greedy answers show the trait "
                f"(regular expression {t['pattern']!r}) and more than unsteered (one-sided Fisher exact p = "
                f"{p_base:.3g} < 0.05), fails "
                f"otherwise; the edit: the sum of the top-{t['k']} SAE features' activation x decoder row of the trait "
                f"prompt's final-token activation (Appendix A's binary search, keeping {cfg.trait_keep:.0%} of the raw "
                f"activation's {raw}/{n}); baseline: the unsteered answers; at every position it steers {every}/{n}",
            )
        )
        p_pos = _fisher_greater(last, content, n)
        out.append(
            claim(
                f"chat_steering_position:{name}",
                f"The '{name}' edit works at the last function token, not at a content token",
                "the paper edits only the last function token",
                f"last function token {last}/{n}, last content token {content}/{n}",
                "holds" if p_pos < 0.05 else ("fails" if content >= last else "inconclusive"),
                f"rule: the same top-{t['k']} vector added at the user's last content token instead; holds if the "
                f"function-token edit steers more answers (one-sided Fisher exact p = {p_pos:.3g} < 0.05), fails if "
                "the content-token edit steers as many or more, inconclusive otherwise (the reviewers' control)",
            )
        )
    return out
