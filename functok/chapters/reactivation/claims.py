"""Chapter 5's claims (re-activation by function tokens, steering the last function token), each
decided by the rule written in its note."""

from __future__ import annotations

import numpy as np

from functok.book.results import claim
from functok.chapters.common import paper_numbers


def _paper() -> dict:
    return paper_numbers("reactivation")


def make_claims(res: dict, cfg) -> list[dict]:

    paper = _paper()
    cs = res["concepts"]
    claims = []
    ratios = {c: v["reactivation"]["fn_ratio"] for c, v in cs.items()}
    ok = [c for c, r in ratios.items() if r == r and r >= 2]
    judged = [c for c, r in ratios.items() if r == r]
    ours = ", ".join(
        f"{c.strip()} {v['reactivation']['fn_after_rate']:.1%} vs {v['reactivation']['fn_base_rate']:.1%}"
        for c, v in cs.items()
    )
    claims.append(
        claim(
            "reactivation",
            "A feature a content token activates is re-activated by later function tokens (Fig 6)",
            paper["reactivation"],
            ours,
            "inconclusive" if not judged else ("holds" if len(ok) * 2 > len(judged) else "fails"),
            f"per concept: share of function tokens within {cfg.horizon} tokens after the concept on which its feature "
            f"fires, vs function tokens of windows without the concept; holds if at least twice the baseline for most "
            f"concepts ({len(ok)} of {len(judged)})",
        )
    )
    fn_more = [c for c, v in cs.items() if v["reactivation"]["fn_after_rate"] > v["reactivation"]["ct_after_rate"]]
    claims.append(
        claim(
            "reactivation_function_vs_content",
            "Beyond the paper: after a concept, function tokens re-activate its feature more often than content "
            "tokens do",
            "not measured",
            ", ".join(
                f"{c.strip()} {v['reactivation']['fn_after_rate']:.1%} vs {v['reactivation']['ct_after_rate']:.1%}"
                for c, v in cs.items()
            ),
            "holds" if len(fn_more) * 2 > len(cs) else "fails",
            f"firing rate on function vs content tokens in the same {cfg.horizon}-token spans; holds for most concepts "
            f"({len(fn_more)} of {len(cs)})",
        )
    )
    steered = [a for a in res["alphas"] if a != 0]
    if 0 in res["alphas"] and steered:
        best = {c: max(steered, key=lambda a: v["steering_success"][str(a)]) for c, v in cs.items()}
        base = float(np.mean([v["steering_success"]["0"] for v in cs.values()]))
        top = float(np.mean([v["steering_success"][str(best[c])] for c, v in cs.items()]))
        verdict = "holds" if top >= 0.5 and top - base >= 0.3 else "fails"
        ours = (
            f"{top:.0%} steered (best alpha per concept: "
            + ", ".join(f"{c.strip()} {best[c]}" for c in cs)
            + f") vs {base:.0%} unsteered"
        )
    else:
        verdict, ours = "inconclusive", "needs alpha 0 and a non-zero alpha"
    if 0 in res["alphas"] and steered:
        gain = {
            c: max(v["steering_logprob"][str(a)] for a in steered) - v["steering_logprob"]["0"] for c, v in cs.items()
        }
        up = [c for c, g in gain.items() if g > np.log(2)]
        claims.append(
            claim(
                "steering_probability",
                "Beyond the paper: steering the last function token raises the probability that the next token starts "
                "the concept",
                "not measured",
                ", ".join(f"{c.strip()} x{np.exp(g):.1f}" for c, g in gain.items()),
                "holds" if len(up) * 2 > len(cs) else "fails",
                "mean over prompts of the log-probability of the concept's first token as the next token, best "
                "non-zero "
                f"alpha vs unsteered (shown as a factor); holds if it at least doubles for most concepts ({len(up)} "
                f"of {len(cs)})",
            )
        )
    claims.append(
        claim(
            "steering",
            "Adding a feature to the last function token's activation steers the output to its concept (Fig 7, Fig 11)",
            paper["steering"],
            ours,
            verdict,
            f"share of {len(cfg.steer_prompts)} prompts whose {cfg.n_new_tokens}-token greedy continuation names the "
            f"concept, mean over concepts; holds if at least 50% and at least 30 points above unsteered",
        )
    )
    return claims
