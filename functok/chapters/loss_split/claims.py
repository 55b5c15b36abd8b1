"""Chapter 3's claims (function->content highest, function tokens learned first, the greedy phase, what
depth buys), the convergence and scaling tables they read. Each claim is decided by the rule written in its
note, which also names its baseline and its sample size. The claims over training count only checkpoints
past the learning milestone: held-out loss below the unigram model's (functok.chapters.loss_split.unigram)."""

from __future__ import annotations

from typing import Any

import numpy as np

from functok.chapters.common import paper_numbers
from functok.chapters.loss_split.stats import (
    CONTENT_NEXT,
    FUNCTION_NEXT,
    KEYS,
    bootstrap_index,
    convergence_step,
    interval,
    order_share,
    ratio_means,
)
from functok.core.results import claim, precondition
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


def scaling_table(per: dict, cfg) -> dict | None:
    """Final-checkpoint group losses of the shallowest and the deepest model and their difference
    (shallow - deep) with paired bootstrap intervals, beside the paper's table."""
    # only models of the same tokenizer and windows (the embedded pair); real pretrained models
    # (kind "checkpoint", their own tokenizers) never enter it
    trained = [n for n in per if per[n]["spec"].kind != "checkpoint"]
    first = str(per[trained[0]]["windows"]) if trained else ""
    same = [n for n in trained if str(per[n]["windows"]) == first]
    if len(same) < 2:
        return None
    names = sorted(same, key=lambda n: (per[n]["result"]["n_layers"], list(per).index(n)))
    small, large = names[0], names[-1]
    ps, pl = per[small], per[large]
    paired = ps["n_documents"] == pl["n_documents"] and str(ps["windows"]) == str(pl["windows"])
    bs_s, bs_l = ps["boots"][-1], pl["boots"][-1]
    if not paired:  # independent resamples for different windows
        a = pl["evals"][-1]["arrays"]
        bs_l = ratio_means(a["sums"], a["counts"], bootstrap_index(pl["n_documents"], cfg.n_bootstrap, cfg.seed + 1))
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


PHASE_SHARE = 0.9  # "almost only function tokens": at least this share of held-out greedy predictions
CLEAR_MARGIN = 0.1  # nats: a checkpoint barely under the unigram model has learned little beyond frequency


def clearly_past(c: dict) -> bool:
    """The checkpoint's held-out loss is below the unigram model's by CLEAR_MARGIN, its whole interval too."""
    return c["minus_unigram_ci"][1] <= -CLEAR_MARGIN


def _at(c: dict) -> str:
    return "?" if c["step"] is None else str(c["step"])


def sample_text(p: dict) -> str:
    """Sample size of one model's held-out measurements."""
    c = p["result"]["checkpoints"][-1]["counts"]
    per_group = ", ".join(f"{k} {c[k]:,}" for k in GROUPS)
    return (
        f"sample: {p['n_documents']:,} held-out documents in {p['n_windows']:,} windows, {c['all']:,} predictions "
        f"per checkpoint ({per_group}), bootstrap over documents"
    )


def milestone_text(p: dict) -> str:
    """The learning milestone of one model and the checkpoints past it."""
    u, m = p["result"]["unigram"], p["result"]["milestone"]
    past = f" (steps {m['checkpoints_past']})" if m["checkpoints_past"] else ""
    return (
        f"milestone: the unigram model's held-out loss {u['groups']['all']:.3f} nats (counts: "
        f"{u['counts_from']['source']}, {u['counts_from']['n_tokens']:,} tokens; add-one smoothing over "
        f"{u['vocab_size']:,} tokens); {m['n_past']} of {m['n_checkpoints']} checkpoints past it{past}"
    )


def too_few(n: int, cfg) -> str:
    return (
        f"inconclusive: {n} checkpoint{'s' if n != 1 else ''} past the milestone, at least {cfg.min_checkpoints} "
        "needed (before it a model has learned less than token frequencies give, and any order or phase may be "
        "frequency alone)"
    )


def function_content_highest(name: str, p: dict, cfg) -> dict:
    """function->content has the highest loss at every checkpoint past the milestone."""
    fc = KEYS.index("function->content")
    others = [KEYS.index(k) for k in GROUPS if k != "function->content"]
    tested, ok_ci, ok_point, fails = [], 0, 0, []
    for c, bs in zip(p["result"]["checkpoints"], p["boots"]):
        if not c["past_milestone"]:
            continue
        tested.append(c)
        d = bs[:, [fc]] - bs[:, others]  # [B, 3] f->c minus each other group
        lo, _ = interval(d, cfg.ci_level)
        point = np.array([c["groups"]["function->content"] - c["groups"][GROUPS[j]] for j in others])
        ok_point += bool((point > 0).all())
        ok_ci += bool((lo > 0).all())
        if not (point > 0).all():
            fails.append(_at(c))
    n = len(tested)
    log_note = ""
    known = [c["step"] for c in tested if c["step"] is not None]
    if p["log"] is not None and known:
        sm = p["log"]["smooth"]
        sm = sm[sm["step"] >= min(known)]
        share = (sm[list(GROUPS)].idxmax(axis=1) == "function->content").mean()
        log_note = (
            f"; training log from step {min(known)} (the first checkpoint past the milestone), smoothed over "
            f"{cfg.log_smoothing} steps: highest at {share:.0%} of {len(sm)} steps"
        )
    if n < cfg.min_checkpoints:
        verdict, why = "inconclusive", too_few(n, cfg)
    else:
        verdict = "holds" if ok_ci == n else ("fails" if ok_point < n else "inconclusive")
        why = f"failing steps {fails}" if fails else ""
    u = p["result"]["unigram"]["groups"]
    top = max(GROUPS, key=lambda k: u[k])
    return claim(
        f"function_content_highest[{name}]",
        f"function->content has the highest loss of the four groups at every checkpoint past the learning milestone "
        f"({name})",
        "highest throughout (Fig 9a/9b)",
        f"{ok_point}/{n} checkpoints past the milestone by the mean, {ok_ci}/{n} with the {cfg.ci_level:.0%} interval "
        "of every difference above 0",
        verdict,
        "rule: at every checkpoint past the milestone, holds if the paired bootstrap interval of (function->content "
        "minus each other group) lies above 0, fails if any mean is not the highest, inconclusive otherwise or with "
        f"fewer than {cfg.min_checkpoints} such checkpoints; {milestone_text(p)}; baseline: frequency alone (the "
        f"unigram model) puts {top} highest ({', '.join(f'{k} {u[k]:.2f}' for k in GROUPS)}); {sample_text(p)}"
        + (f"; {why}" if why else "")
        + log_note,
    )


def function_phase(name: str, p: dict, cfg, paper: dict) -> dict:
    """Beyond the paper (Fig 10 measured): past the milestone, a checkpoint before the last predicts almost only
    function tokens, and the last one fewer."""
    cks = p["result"]["checkpoints"]
    past = [c for c in cks if c["past_milestone"]]
    early = [c for c in cks if not c["past_milestone"]]
    g = p["result"]["unigram"]["greedy_prediction"]
    u_share = 1.0 if g["is_function"] else 0.0
    last = cks[-1]
    ours = f"{len(past)} of {len(cks)} checkpoints past the milestone"
    if len(past) < max(2, cfg.min_checkpoints):
        verdict, why = "inconclusive", too_few(len(past), cfg)
    elif not last["past_milestone"]:
        verdict, why = "inconclusive", "inconclusive: the last checkpoint is not past the milestone"
    elif not [c for c in past[:-1] if clearly_past(c)]:
        verdict, why = "inconclusive", "inconclusive: no checkpoint before the last is clearly past the milestone"
    else:
        before = [c for c in past[:-1] if clearly_past(c)]
        peak = max(before, key=lambda c: c["greedy_function_share"])
        ps, ls = peak["greedy_function_share"], last["greedy_function_share"]
        verdict = "holds" if ps >= PHASE_SHARE and ps > ls else "fails"
        why = ""
        ours += f"; among them peak {ps:.0%} at step {_at(peak)}, last {ls:.0%} at step {_at(last)}"
    if early:
        e = max(early, key=lambda c: c["greedy_function_share"])
        ours += f"; before the milestone peak {e['greedy_function_share']:.0%} at step {_at(e)}"
    pstep = paper["function_phase_step"]
    return claim(
        f"greedy_function_phase[{name}]",
        "Beyond the paper (Fig 10 measured): on the way from noise to phrases, a checkpoint past the learning "
        f"milestone predicts almost only function tokens ({name})",
        f"step {pstep:,} predicts only function tokens (Fig 10)",
        ours,
        verdict,
        "rule: share of held-out positions whose greedy prediction is a function token; holds if a checkpoint "
        f"clearly past the milestone (its loss at least {CLEAR_MARGIN:g} nats below the unigram model's, the "
        "interval of the difference included), before the last, reaches "
        f">= {PHASE_SHARE:.0%} and the last checkpoint (past it too) is "
        f"lower, fails otherwise; inconclusive with fewer than {max(2, cfg.min_checkpoints)} checkpoints past the "
        f"milestone; {milestone_text(p)}; baseline: the unigram model predicts {g['token']!r} at every position "
        f"({u_share:.0%} function tokens), so a phase before the milestone is frequency alone; {sample_text(p)}"
        + (f"; {why}" if why else ""),
    )


def converge_first(name: str, p: dict, cfg, paper: dict) -> dict:
    """The chosen next tokens' losses converge before the average (held-out checkpoints)."""
    conv, final = p["convergence"], p["final_step"]
    held = conv["heldout"]
    chosen = [t for t in cfg.next_tokens if held.get(t) is not None]
    avg = held.get("all")
    if chosen and avg is not None:
        earlier = [t for t in chosen if held[t] < avg]
        later = [t for t in chosen if held[t] > avg]
        verdict = "holds" if len(earlier) == len(chosen) else ("fails" if later else "inconclusive")
        ours = ", ".join(f"{t!r} {_fmt_step(held[t], final)}" for t in chosen) + f"; average {_fmt_step(avg, final)}"
    else:
        verdict, ours = "inconclusive", "not measurable (fewer than two checkpoints with steps, or no decrease)"
    last = p["result"]["checkpoints"][-1]
    n_ck = sum(c["step"] is not None for c in p["result"]["checkpoints"])
    counts = ", ".join(f"{t!r} {n:,}" for t, n in last["next_counts"].items())
    pstep = paper["function_tokens_converged_by_step"]
    return claim(
        f"function_tokens_converge_first[{name}]",
        f"The losses of predicting {', '.join(repr(t) for t in cfg.next_tokens)} converge before the average loss "
        f"({name})",
        f"converged within about {pstep:,} of 130,000 steps ({pstep / 130000:.1%}), before the average (Fig 9c)",
        ours,
        verdict,
        f"rule: {conv['rule']}, at held-out checkpoints; holds if every chosen token converges at an earlier "
        "checkpoint than the average, fails if any converges later, inconclusive on ties; baseline: the average "
        f"loss over all predictions, same rule; sample: {n_ck} checkpoints with steps, {p['n_documents']:,} documents, "
        f"predictions of each token: {counts or 'none'}",
    )


def log_converge_first(name: str, p: dict, cfg) -> dict | None:
    """In the training log, the function-next groups converge before the content-next groups."""
    conv, final = p["convergence"], p["final_step"]
    tl = conv["train_log"]
    statement = (
        "In the training log, the groups predicting a function token converge before the groups predicting a "
        f"content token ({name})"
    )
    if not p.get("log_groups", True):  # a threshold sweep: the log was grouped by the run's own set
        return claim(
            f"function_next_groups_converge_first[{name}]",
            statement,
            "function tokens are learned first (Fig 9c)",
            "not measured: the training log's groups are the run's own function-token set",
            "inconclusive",
            "rule: as at the run's own threshold; the log was grouped during training by the run's function-token "
            f"set, so at coverage_threshold {p['result']['coverage_threshold']} it cannot be regrouped; "
            "baseline: none; sample: none",
        )
    if not tl or any(tl.get(k) is None for k in GROUPS):
        return None
    fn_last = max(tl[k] for k in FUNCTION_NEXT)
    ct_first = min(tl[k] for k in CONTENT_NEXT)
    both_content_first = max(tl[k] for k in CONTENT_NEXT) < min(tl[k] for k in FUNCTION_NEXT)
    verdict = "holds" if fn_last < ct_first else ("fails" if both_content_first else "inconclusive")
    raw = p["log"]["raw"]
    per_step = int(raw["tokens_seen"].iloc[-1] // max(1, raw["step"].iloc[-1]))
    return claim(
        f"function_next_groups_converge_first[{name}]",
        statement,
        "function tokens are learned first (Fig 9c)",
        ", ".join(f"{k} {_fmt_step(tl[k], final)}" for k in GROUPS),
        verdict,
        f"rule: {conv['rule']}, on every logged step (centred rolling mean over {cfg.log_smoothing} steps); holds if "
        "both function-next groups converge before both content-next groups, fails if both content-next groups "
        "converge first, inconclusive otherwise; baseline: the content-next groups under the same rule; sample: "
        f"{len(raw):,} logged steps of {per_step:,} training tokens each",
    )


def scaling_claims(per: dict, scaling: dict, cfg, paper: dict) -> list[dict]:
    """What depth buys: gains by group, lower in every group, the order of the final losses."""
    rows = {r["group"]: r for r in scaling["rows"]}
    m, margin = scaling["models"], scaling["margin"]
    deep = per[m["deep"]]
    sample = sample_text(deep) + (
        " (the same windows for both models: paired)" if m["paired"] else " (different windows: unpaired)"
    )
    point_ok = margin["point"] > 0
    out = [
        claim(
            "deeper_gain_on_content_next",
            f"The deeper model's gain is largest on the content-next groups ({m['shallow']} vs {m['deep']})",
            "gains: f->c 0.61, c->c 0.61 vs c->f 0.26, f->f 0.25",
            ", ".join(f"{k} {rows[k]['difference']:.3f}" for k in (*CONTENT_NEXT, *FUNCTION_NEXT)),
            "holds" if point_ok and margin["ci"][0] > 0 else ("fails" if not point_ok else "inconclusive"),
            "rule: gain = shallow - deep final loss; margin = smaller content-next gain minus larger function-next "
            f"gain = {margin['point']:.3f}, {cfg.ci_level:.0%} {'paired ' if m['paired'] else ''}bootstrap interval "
            f"[{margin['ci'][0]:.3f}, {margin['ci'][1]:.3f}]; holds if the interval lies above 0, fails if the margin "
            f"is not positive, inconclusive otherwise; baseline: equal gains (margin 0); all tokens: gain "
            f"{rows['all']['difference']:+.3f} [{rows['all']['difference_ci'][0]:.3f}, "
            f"{rows['all']['difference_ci'][1]:.3f}]; {sample}",
        )
    ]
    all_lo = [rows[k]["difference_ci"][0] for k in GROUPS]
    out.append(
        claim(
            "deeper_lower_every_group",
            f"The deeper model's final loss is lower in every group ({m['shallow']} vs {m['deep']})",
            "lower in all four (scaling table)",
            ", ".join(f"{k} {rows[k]['difference']:+.3f}" for k in GROUPS),
            "holds"
            if min(all_lo) > 0
            else ("fails" if min(rows[k]["difference"] for k in GROUPS) <= 0 else "inconclusive"),
            f"rule: holds if every difference's {cfg.ci_level:.0%} bootstrap interval lies above 0, fails if any "
            f"difference is not positive, inconclusive otherwise; baseline: no difference (the shallow model's loss); "
            f"{sample}",
        )
    )
    paper_order = sorted(paper["final_losses"], key=lambda k: paper["final_losses"][k][1])
    ours_order = {n: sorted(GROUPS, key=lambda k: rows[k][n]) for n in ("shallow", "deep")}
    u = deep["result"]["unigram"]["groups"]
    uni_order = sorted(GROUPS, key=lambda k: u[k])
    shares = {n: order_share(per[m[n]]["boots"][-1], paper_order) for n in ("shallow", "deep")}
    out.append(
        claim(
            "final_group_order",
            "The four final group losses are ordered as in the paper (lowest to highest)",
            " < ".join(paper_order),
            " < ".join(ours_order["deep"])
            + (
                ""
                if ours_order["deep"] == ours_order["shallow"]
                else f" (shallow: {' < '.join(ours_order['shallow'])})"
            )
            + "; the paper's order in "
            + ", ".join(f"{v:.0%} ({n})" for n, v in shares.items())
            + " of resamples",
            order_verdict(min(shares.values()), cfg.ci_level),
            f"{order_rule(cfg.ci_level)}, for both models (decided by the smaller share: "
            + ", ".join(f"{n} {v:.0%}" for n, v in shares.items())
            + f"); baseline: frequency alone (the unigram model) orders them {' < '.join(uni_order)}"
            + (" (the paper's order)" if uni_order == paper_order else " (not the paper's order)")
            + f"; {sample}",
        )
    )
    return out


def final_order(name: str, p: dict, paper: dict, level: float) -> dict:
    """The order of one model's four final group losses against the paper's (the models outside the scaling
    pair, e.g. the real pretrained ones, each get this claim)."""
    paper_order = sorted(paper["final_losses"], key=lambda k: paper["final_losses"][k][1])
    g = p["result"]["checkpoints"][-1]["groups"]
    ci = p["result"]["checkpoints"][-1]["ci"]
    ours = sorted(GROUPS, key=lambda k: g[k])
    u = p["result"]["unigram"]["groups"]
    uni_order = sorted(GROUPS, key=lambda k: u[k])
    separated = all(ci[a][1] < ci[b][0] for a, b in zip(ours, ours[1:]))
    share = order_share(p["boots"][-1], paper_order)
    return claim(
        f"final_group_order[{name}]",
        "The four final group losses are ordered as in the paper (lowest to highest)",
        " < ".join(paper_order),
        " < ".join(f"{k} {g[k]:.2f}" for k in ours) + f"; the paper's order in {share:.0%} of resamples",
        order_verdict(share, level),
        f"{order_rule(level)}; "
        + ("adjacent intervals do not overlap" if separated else "some adjacent intervals overlap")
        + f"; baseline: frequency alone (the unigram model) orders them {' < '.join(uni_order)}; {sample_text(p)}",
    )


def order_verdict(share: float, level: float) -> str:
    """holds if the resamples give the paper's order at least `level` of the time, fails if at most 1 - level."""
    return "holds" if share >= level else ("fails" if share <= 1 - level else "inconclusive")


def order_rule(level: float) -> str:
    return (
        "rule: the four final group means are recomputed on every bootstrap resample of the held-out documents (the "
        f"chapter's cluster bootstrap); holds if at least {level:.0%} of the resamples give the paper's order, fails "
        f"if at most {1 - level:.0%} do, inconclusive otherwise (a point order alone decides nothing)"
    )


def make_preconditions(per: dict, cfg) -> list[dict]:
    """Per model: enough checkpoints past the learning milestone for the order and phase claims to mean more
    than frequency (those claims are inconclusive otherwise, and say so)."""
    out = []
    for name, p in per.items():
        m = p["result"]["milestone"]
        out.append(
            precondition(
                f"checkpoints_past_milestone[{name}]",
                f"{name}: checkpoints past the learning milestone (held-out loss below the unigram model's)",
                f"{m['n_past']} of {m['n_checkpoints']}",
                m["n_past"] >= cfg.min_checkpoints,
                f"met with at least {cfg.min_checkpoints}; {milestone_text(p)}",
            )
        )
    return out


def make_claims(per: dict, scaling: dict | None, cfg) -> list[dict]:
    paper = paper_numbers("loss_split")
    claims = []
    pair = {scaling["models"]["shallow"], scaling["models"]["deep"]} if scaling is not None else set()
    for name, p in per.items():
        if name not in pair:
            claims.append(final_order(name, p, paper, cfg.ci_level))
        claims.append(function_content_highest(name, p, cfg))
        claims.append(converge_first(name, p, cfg, paper))
        log = log_converge_first(name, p, cfg)
        if log is not None:
            claims.append(log)
        claims.append(function_phase(name, p, cfg, paper))
    if scaling is not None:
        claims.extend(scaling_claims(per, scaling, cfg, paper))
    return claims
