"""Chapter 3's claims (function->content highest, function tokens learned first, what depth buys),
the convergence and scaling tables they read, each decided by the rule written in its note."""

from __future__ import annotations

from typing import Any

import numpy as np

from functok.book.results import claim
from functok.chapters.common import paper_numbers
from functok.chapters.loss_split.stats import (
    CONTENT_NEXT,
    FUNCTION_NEXT,
    KEYS,
    bootstrap_index,
    convergence_step,
    interval,
    ratio_means,
)
from functok.world.loss_groups import GROUPS


def convergence(p: dict, cfg) -> dict:
    """Convergence steps (rule: functok.chapters.loss_split.stats.convergence_step with cfg.converge_fraction) of the
    held-out next-token losses and of the average at checkpoints, and of the four groups and the
    average in the smoothed training log."""
    cks = [c for c in p["result"]["checkpoints"] if c["step"] is not None]
    out: dict[str, Any] = {
        "rule": f"first step after which the loss stays within {cfg.converge_fraction:.0%} of its "
        f"total decrease (first to last value) of its final value",
        "final_step": p["final_step"],
        "heldout": {},
        "train_log": {},
    }
    if len(cks) >= 2:
        steps = [c["step"] for c in cks]
        for t in cks[-1]["next_tokens"]:
            out["heldout"][t] = convergence_step(
                steps, [c["next_tokens"].get(t, np.nan) for c in cks], cfg.converge_fraction
            )
        for k in KEYS:
            out["heldout"][k] = convergence_step(steps, [c["groups"][k] for c in cks], cfg.converge_fraction)
    if p["log"] is not None:
        sm, raw = p["log"]["smooth"], p["log"]["raw"]
        for k in KEYS:
            col = "loss" if k == "all" else k
            vals = sm[k].to_numpy(dtype=float).copy()
            vals[0] = float(raw[col].iloc[0])  # the first step unsmoothed: the start of the decrease
            out["train_log"][k] = convergence_step(list(sm["step"]), vals, cfg.converge_fraction)
    return out


def scaling_table(per: dict, cfg) -> dict:
    """Final-checkpoint group losses of the shallowest and the deepest model and their difference
    (shallow - deep) with paired bootstrap intervals, beside the paper's table."""
    names = sorted(per, key=lambda n: (per[n]["result"]["n_layers"], list(per).index(n)))
    small, large = names[0], names[-1]
    ps, pl = per[small], per[large]
    paired = ps["n_windows"] == pl["n_windows"] and str(ps["windows"]) == str(pl["windows"])
    bs_s, bs_l = ps["boots"][-1], pl["boots"][-1]
    if not paired:  # independent resamples for different windows
        a = pl["evals"][-1]["arrays"]
        bs_l = ratio_means(a["sums"], a["counts"], bootstrap_index(pl["n_windows"], cfg.n_bootstrap, cfg.seed + 1))
    diff = bs_s - bs_l
    lo, hi = interval(diff, cfg.ci_level)
    paper = paper_numbers("loss_split")["final_losses"]
    rows = []
    for j, k in enumerate(KEYS):
        gs, gl = ps["result"]["checkpoints"][-1]["groups"][k], pl["result"]["checkpoints"][-1]["groups"][k]
        r = {
            "group": k,
            "shallow": gs,
            "deep": gl,
            "difference": gs - gl,
            "difference_ci": [float(lo[j]), float(hi[j])],
        }
        if k in paper:
            r.update(
                {
                    "paper_shallow": paper[k][0],
                    "paper_deep": paper[k][1],
                    "paper_difference": round(paper[k][0] - paper[k][1], 4),
                }
            )
        rows.append(r)
    cj = [KEYS.index(k) for k in CONTENT_NEXT]
    fj = [KEYS.index(k) for k in FUNCTION_NEXT]
    margin = diff[:, cj].min(1) - diff[:, fj].max(1)
    mlo, mhi = interval(margin, cfg.ci_level)
    point = min(rows[j]["difference"] for j in cj) - max(rows[j]["difference"] for j in fj)
    return {
        "rows": rows,
        "models": {
            "shallow": small,
            "deep": large,
            "shallow_layers": ps["result"]["n_layers"],
            "deep_layers": pl["result"]["n_layers"],
            "paired": paired,
        },
        "margin": {"point": float(point), "ci": [float(mlo), float(mhi)]},
        "diff_boot": diff,
    }


def _fmt_step(s, final) -> str:
    if s is None:
        return "never"
    return f"{s}" + (f" ({s / final:.1%})" if final else "")


def make_claims(per: dict, scaling: dict | None, cfg) -> list[dict]:
    paper = paper_numbers("loss_split")
    fc = KEYS.index("function->content")
    others = [KEYS.index(k) for k in GROUPS if k != "function->content"]
    claims = []
    for name, p in per.items():
        cks = p["result"]["checkpoints"]
        final = p["final_step"]
        # 1. function->content is the highest group at every checkpoint after the first few
        tested, ok_ci, ok_point, fails = [], 0, 0, []
        for c, bs in zip(cks, p["boots"]):
            if c["step"] is None or final is None or c["step"] < cfg.settle_fraction * final:
                continue
            tested.append(c["step"])
            d = bs[:, [fc]] - bs[:, others]  # [B, 3] f->c minus each other group
            lo, _ = interval(d, cfg.ci_level)
            point = np.array([c["groups"]["function->content"] - c["groups"][GROUPS[j]] for j in others])
            ok_point += bool((point > 0).all())
            ok_ci += bool((lo > 0).all())
            if not (point > 0).all():
                fails.append(c["step"])
        log_note = ""
        if p["log"] is not None and final:
            sm = p["log"]["smooth"]
            sm = sm[sm["step"] >= cfg.settle_fraction * final]
            top = sm[list(GROUPS)].idxmax(axis=1)
            share = (top == "function->content").mean()
            log_note = (
                f"; training log (smoothed over {cfg.log_smoothing} steps): highest at {share:.0%} of {len(sm)} steps"
            )
        n = len(tested)
        verdict = (
            "inconclusive" if n == 0 else ("holds" if ok_ci == n else ("fails" if ok_point < n else "inconclusive"))
        )
        claims.append(
            claim(
                f"function_content_highest[{name}]",
                "function->content has the highest loss of the four groups at every checkpoint after the first few "
                f"({name})",
                "highest throughout (Fig 9a/9b)",
                f"{ok_point}/{n} checkpoints by the mean, {ok_ci}/{n} with the {cfg.ci_level:.0%} interval of every "
                "difference above 0",
                verdict,
                f"checkpoints at steps {tested}; {results_first_few(cfg)}. Holds if at every tested checkpoint the "
                "paired "
                "bootstrap interval of (function->content minus each other group) lies above 0; fails if any mean is "
                "not "
                f"the highest" + (f" (steps {fails})" if fails else "") + "; inconclusive otherwise" + log_note,
            )
        )
        # 2. function tokens (as next tokens) converge first
        conv = p["convergence"]
        held = conv["heldout"]
        chosen = [t for t in cfg.next_tokens if held.get(t) is not None]
        avg = held.get("all")
        if chosen and avg is not None:
            earlier = [t for t in chosen if held[t] < avg]
            later = [t for t in chosen if held[t] > avg]
            verdict = "holds" if len(earlier) == len(chosen) else ("fails" if later else "inconclusive")
            ours = (
                ", ".join(f"{t!r} {_fmt_step(held[t], final)}" for t in chosen) + f"; average {_fmt_step(avg, final)}"
            )
        else:
            verdict, ours = "inconclusive", "not measurable (fewer than two checkpoints with steps, or no decrease)"
        pstep = paper["function_tokens_converged_by_step"]
        claims.append(
            claim(
                f"function_tokens_converge_first[{name}]",
                f"The losses of predicting {', '.join(repr(t) for t in cfg.next_tokens)} converge before the average "
                f"loss ({name})",
                f"converged within about {pstep:,} of 130,000 steps ({pstep / 130000:.1%}), before the average (Fig "
                "9c)",
                ours,
                verdict,
                f"held-out checkpoints; {conv['rule']}. Holds if every chosen token converges at an earlier "
                "checkpoint than "
                f"the average; fails if any converges later; inconclusive on ties",
            )
        )
        tl = conv["train_log"]
        if tl and all(tl.get(k) is not None for k in GROUPS):
            fn_last = max(tl[k] for k in FUNCTION_NEXT)
            ct_first = min(tl[k] for k in CONTENT_NEXT)
            verdict = (
                "holds"
                if fn_last < ct_first
                else (
                    "fails" if max(tl[k] for k in CONTENT_NEXT) < min(tl[k] for k in FUNCTION_NEXT) else "inconclusive"
                )
            )
            claims.append(
                claim(
                    f"function_next_groups_converge_first[{name}]",
                    "In the training log, the groups predicting a function token converge before the groups "
                    f"predicting a content token ({name})",
                    "function tokens are learned first (Fig 9c)",
                    ", ".join(f"{k} {_fmt_step(tl[k], final)}" for k in GROUPS),
                    verdict,
                    f"every logged step, centred rolling mean over {cfg.log_smoothing} steps; {conv['rule']}. Holds "
                    "if both "
                    f"function-next groups converge before both content-next groups; fails if both content-next groups "
                    f"converge first; inconclusive otherwise",
                )
            )
        # 3. beyond the paper: Fig 10's phases, measured on held-out positions
        shares = [c["greedy_function_share"] for c in cks]
        if len(shares) >= 3:
            peak_i = int(np.argmax(shares[:-1]))
            ok = shares[peak_i] >= 0.9 and shares[peak_i] > shares[-1]
            claims.append(
                claim(
                    f"greedy_function_phase[{name}]",
                    "Beyond the paper (Fig 10 measured): on the way from noise to phrases a checkpoint predicts "
                    f"almost only function tokens ({name})",
                    "step 3k predicts only function tokens (Fig 10)",
                    f"peak {shares[peak_i]:.0%} at step {cks[peak_i]['step']}, final {shares[-1]:.0%}, step 0 "
                    f"{shares[0]:.0%}",
                    "holds" if ok else "fails",
                    "share of held-out positions whose greedy prediction is a function token; holds if some "
                    "checkpoint before "
                    "the last reaches >= 90% and the last checkpoint's share is lower",
                )
            )
    # 4. scaling: gains and the order of the final losses
    if scaling is not None:
        rows = {r["group"]: r for r in scaling["rows"]}
        m = scaling["models"]
        margin = scaling["margin"]
        point_ok = margin["point"] > 0
        verdict = "holds" if point_ok and margin["ci"][0] > 0 else ("fails" if not point_ok else "inconclusive")
        claims.append(
            claim(
                "deeper_gain_on_content_next",
                f"The deeper model's gain is largest on the content-next groups ({m['shallow']} vs {m['deep']})",
                "gains: f->c 0.61, c->c 0.61 vs c->f 0.26, f->f 0.25",
                ", ".join(f"{k} {rows[k]['difference']:.3f}" for k in (*CONTENT_NEXT, *FUNCTION_NEXT)),
                verdict,
                "gain = shallow - deep final loss; margin = smaller content-next gain minus larger function-next "
                "gain = "
                f"{margin['point']:.3f}, {cfg.ci_level:.0%} {'paired ' if m['paired'] else ''}bootstrap interval "
                f"[{margin['ci'][0]:.3f}, {margin['ci'][1]:.3f}]. Holds if the interval lies above 0; fails if the "
                "margin is "
                f"not positive; inconclusive otherwise",
            )
        )
        all_lo = [rows[k]["difference_ci"][0] for k in GROUPS]
        claims.append(
            claim(
                "deeper_lower_every_group",
                f"The deeper model's final loss is lower in every group ({m['shallow']} vs {m['deep']})",
                "lower in all four (scaling table)",
                ", ".join(f"{k} {rows[k]['difference']:+.3f}" for k in GROUPS),
                "holds"
                if min(all_lo) > 0
                else ("fails" if min(rows[k]["difference"] for k in GROUPS) <= 0 else "inconclusive"),
                f"holds if every difference's {cfg.ci_level:.0%} bootstrap interval lies above 0; fails if any "
                "difference is not positive",
            )
        )
        paper_order = sorted(paper["final_losses"], key=lambda k: paper["final_losses"][k][1])
        ours_order = {n: sorted(GROUPS, key=lambda k: rows[k][n]) for n in ("shallow", "deep")}
        same = all(o == paper_order for o in ours_order.values())
        claims.append(
            claim(
                "final_group_order",
                "The four final group losses are ordered as in the paper (lowest to highest)",
                " < ".join(paper_order),
                " < ".join(ours_order["deep"])
                + (
                    ""
                    if ours_order["deep"] == ours_order["shallow"]
                    else f" (shallow: {' < '.join(ours_order['shallow'])})"
                ),
                "holds" if same else "fails",
                "holds if both models' final means are in the paper's order",
            )
        )
    return claims


def results_first_few(cfg) -> str:
    return f"'the first few' = checkpoints before {cfg.settle_fraction:.0%} of training"
