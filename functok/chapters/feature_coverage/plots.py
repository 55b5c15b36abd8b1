"""Figures and tables of the feature-coverage chapter (Fig 5, Table 1 with its null model, the SAEs'
density, connected features, the frequency control: regression, matched pairs, unmatched tokens). Each takes the
ChapterResult `feature_coverage.analyze` returns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from functok.chapters.common import show_token, sns_theme
from functok.chapters.feature_coverage.claims import MAX_DENSITY, comparison_point
from functok.chapters.feature_coverage.frequency import curve
from functok.core.results import ChapterResult

FUNCTION_COLOR, CONTENT_COLOR = "#d62728", "#7f7f7f"


def _layers(out: ChapterResult) -> list[int]:
    return list(out.results["layer_order"])


def _paper_layer(out: ChapterResult, i: int):
    """The paper's layer at the same position (9, 20, 31) as our i-th layer."""
    pl = out.detail["paper"]["layers"]
    n = len(_layers(out))
    return pl[i] if n == len(pl) else None


def fig5(out: ChapterResult):
    """Token degree against frequency rank (log-log), one panel per layer; function tokens in red."""
    sns_theme()
    import matplotlib.pyplot as plt

    layers = _layers(out)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.6), squeeze=False, sharey=True)
    isf = out.detail["is_function"]
    for ax, L in zip(axes[0], layers):
        st = out.detail["per_layer"][L]
        rank = st["_ranking"]
        deg = st["_degree"][rank]
        r = np.arange(1, rank.size + 1)
        f = isf[rank]
        ok = deg > 0
        ax.scatter(r[ok & ~f], deg[ok & ~f], s=4, c=CONTENT_COLOR, alpha=0.5, label="content tokens", rasterized=True)
        ax.scatter(r[ok & f], deg[ok & f], s=10, c=FUNCTION_COLOR, label="function tokens")
        ax.axhline(st["connected_features"], ls=":", c="k", lw=1, label="connected features")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frequency rank in the sample")
        ax.set_title(f"layer {L} (d_sae {st['d_sae']:,})")
    axes[0][0].set_ylabel("token degree (features activated)")
    axes[0][-1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def table1(out: ChapterResult) -> pd.DataFrame:
    """Cumulative coverage (share of d_sae) of the k most frequent tokens, ours beside the paper's; per
    layer also the null model's: as many random positions as those tokens' occurrences (column
    'positions'), mean coverage over the draws and its 95% interval [2.5, 97.5 percentiles]."""
    layers = _layers(out)
    lay = out.results["layers"]
    mid = lay[layers[len(layers) // 2]]
    pc = out.detail["paper"]["coverage_topk"]
    K = max(len(lay[L]["coverage_topk"]) for L in layers)
    rows = []
    for k in range(K):
        null_n = (mid.get("null_coverage_topk") or {}).get("n_positions", [])
        row = {
            "k": k + 1,
            "token (middle layer)": show_token(mid["topk_tokens"][k]) if k < len(mid["topk_tokens"]) else "",
            "positions": f"{null_n[k]:,}" if k < len(null_n) else "",
        }
        for i, L in enumerate(layers):
            c = lay[L]["coverage_topk"]
            row[f"ours L{L}"] = f"{c[k]:.2%}" if k < len(c) else ""
            n = lay[L].get("null_coverage_topk") or {}
            row[f"null L{L}"] = (
                f"{n['mean'][k]:.2%} [{n['lo'][k]:.2%}, {n['hi'][k]:.2%}]" if k < len(n.get("mean", [])) else ""
            )
        for i, L in enumerate(layers):
            pl = _paper_layer(out, i)
            if pl is not None and k < len(pc[pl]):
                row[f"paper L{pl}"] = f"{pc[pl][k]:.2%}"
        row["paper token"] = (
            show_token(out.detail["paper"]["topk_tokens"][k]) if k < len(out.detail["paper"]["topk_tokens"]) else ""
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("k")


def connected_table(out: ChapterResult) -> pd.DataFrame:
    """Connected features per layer (fired by at least one token), ours and the paper's."""
    rows = []
    for i, L in enumerate(_layers(out)):
        v = out.results["layers"][L]
        pl = _paper_layer(out, i)
        rows.append(
            {
                "layer": L,
                "hook_name": v["hook_name"],
                "d_sae": v["d_sae"],
                "connected features": v["connected_features"],
                "share": f"{v['connected_share']:.1%}",
                "tokens evaluated": v["n_tokens"],
                "distinct tokens": v["n_distinct_tokens"],
                "paper layer": pl if pl is not None else "",
                "paper connected": out.detail["paper"]["connected_features"][pl] if pl is not None else "",
                "paper share": f"{out.detail['paper']['connected_share'][pl]:.1%}" if pl is not None else "",
            }
        )
    return pd.DataFrame(rows).set_index("layer")


def quality_table(out: ChapterResult) -> pd.DataFrame:
    """Each SAE's quality: L0 and explained variance on held-out windows, the cross-entropy
    reconstruction score (against zero ablation), the loss increase in nats with the SAE spliced in, the score
    against mean ablation, the L0 measured in the pass and the share of connected features that a single
    token type fires."""
    rows = []
    for L in _layers(out):
        v = out.results["layers"][L]
        q = v.get("quality") or {}
        rows.append(
            {
                "layer": L,
                "sae": v["sae"],
                "d_sae": v["d_sae"],
                "L0 (held-out)": q.get("l0", q.get("l0_registry")),
                "explained variance": q.get("explained_variance"),
                "CE reconstruction score": q.get("ce_reconstruction_score"),
                "loss increase (nats)": q.get("loss_increase_nats"),
                "score vs mean ablation": q.get("mean_ablation_score"),
                "L0 in this pass": v["l0_in_pass"],
                "single-token-type features": v.get("single_token_feature_share"),
            }
        )
    return pd.DataFrame(rows).set_index("layer").round(3)


def density_table(out: ChapterResult) -> pd.DataFrame:
    """Per layer: the SAE's density (L0 in this pass / d_sae; the coverage claims need <= 1%), and the
    features fired per occurrence of function and of content tokens."""
    rows = []
    for L in _layers(out):
        v = out.results["layers"][L]
        fpo = v["features_per_occurrence"]
        rows.append(
            {
                "layer": L,
                "d_sae": v["d_sae"],
                "L0 in this pass": round(v["l0_in_pass"], 1),
                "density (L0 / d_sae)": f"{v['density']:.3%}",
                f"sparse enough (<= {MAX_DENSITY:.0%})": "yes" if v["density"] <= MAX_DENSITY else "no",
                "features per function-token occurrence": round(fpo["function"], 1),
                "features per content-token occurrence": round(fpo["content"], 1),
            }
        )
    return pd.DataFrame(rows).set_index("layer")


def top_tokens_table(out: ChapterResult) -> pd.DataFrame:
    layers = _layers(out)
    rows = {}
    for L in layers:
        v = out.results["layers"][L]
        rows[f"L{L}"] = [show_token(t) + (" (F)" if f else "") for t, f in zip(v["topk_tokens"], v["topk_is_function"])]
    n = max(len(c) for c in rows.values())
    return pd.DataFrame(
        {k: c + [""] * (n - len(c)) for k, c in rows.items()}, index=pd.RangeIndex(1, n + 1, name="rank")
    )


def _mid(out: ChapterResult, layer: int | None) -> int:
    layers = _layers(out)
    return layers[len(layers) // 2] if layer is None else layer


def _ci(est: float, lo: float, hi: float) -> str:
    return f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]" if est == est else "none"


def _p(p: float) -> str:
    return f"{p:.3g}" if p == p else "none"


def control_table(out: ChapterResult) -> pd.DataFrame:
    """Per layer, the frequency control: the regression's g (log(1 + degree) shift of function tokens at the
    same count) with its bootstrap interval, p and Holm-corrected p; the matched pairs' mean difference,
    how many function tokens were matched and unmatched; the R2 of the content tokens' line."""
    rows = []
    for L in _layers(out):
        v = out.results["layers"][L]
        r, m = v["frequency_control"]["regression"], v["frequency_control"]["matched"]
        rows.append(
            {
                "layer": L,
                "function / content tokens seen": f"{r['n_function']} / {r['n_content']}",
                f"g [{r['level']:.0%} interval]": _ci(r["g"], r["lo"], r["hi"]),
                "exp(g)": round(r["factor"], 2),
                "p": _p(r["p"]),
                "Holm p": _p(r.get("p_holm", float("nan"))),
                "matched / unmatched": f"{m['n_matched']} / {m['n_unmatched']}",
                f"matched diff [{m['level']:.0%} interval]": _ci(m["mean_diff"], m["lo"], m["hi"]),
                "matched Holm p": _p(m.get("p_holm", float("nan"))),
                "mean log-count gap": round(m["mean_log_count_gap"], 3),
                "R2 of the content line": round(v["degree_fit"]["r2_all"], 2),
            }
        )
    return pd.DataFrame(rows).set_index("layer")


def frequency_prose(out: ChapterResult, layer: int | None = None) -> str:
    """One paragraph of the page, every number read from the results."""
    L = _mid(out, layer)
    r = out.results["layers"][L]["frequency_control"]["regression"]
    m = out.results["layers"][L]["frequency_control"]["matched"]
    c = {x["id"]: x for x in out.claims}["frequency_matched"]
    if r["g"] != r["g"]:
        reg = f"At layer {L} only {r['n_function']} function tokens were seen: too few for the regression."
    else:
        reg = (
            f"At layer {L}, a function token has {r['factor']:.2f} times the 1 + degree of a content token of the "
            f"same count (g = {r['g']:+.3f}, {r['level']:.0%} interval [{r['lo']:+.3f}, {r['hi']:+.3f}], "
            f"Holm-corrected p = {_p(r['p_holm'])} over {r['n_tests']} layers)."
        )
    top = ", ".join(f"`{show_token(u['token'])}` ({u['count']:,})" for u in m["unmatched"][:5])
    mat = (
        f" {m['n_matched']} of {m['n_function_seen']} function tokens have a content token within "
        f"{m['window']:g}x of their count; the paired difference in log(1 + degree) averages "
        + (f"{m['mean_diff']:+.3f} [{m['lo']:+.3f}, {m['hi']:+.3f}]." if m["mean_diff"] == m["mean_diff"] else "n/a.")
        + (f" {m['n_unmatched']} stay unmatched, the most frequent first: {top}." if m["unmatched"] else "")
    )
    return reg + mat + f" Verdict: **{c['verdict']}**."


def matched_table(out: ChapterResult, layer: int | None = None, n: int = 15) -> pd.DataFrame:
    """The most frequent matched function tokens with their content peers (one layer)."""
    m = out.results["layers"][_mid(out, layer)]["frequency_control"]["matched"]
    return pd.DataFrame(
        [
            {
                "token": show_token(r["token"]),
                "occurrences": r["count"],
                "degree": r["degree"],
                "content peers": r["n_peers"],
                "their median count": r["peer_median_count"],
                "their mean log(1+degree)": round(r["peer_mean_log_degree"], 3),
                "difference": round(r["diff"], 3),
            }
            for r in m["matched"][:n]
        ]
    )


def unmatched_table(out: ChapterResult, layer: int | None = None) -> pd.DataFrame:
    """Every function token left unmatched (one layer), the most frequent first, with the reason."""
    m = out.results["layers"][_mid(out, layer)]["frequency_control"]["matched"]
    return pd.DataFrame(
        [
            {"token": show_token(r["token"]), "occurrences": r["count"], "degree": r["degree"], "reason": r["reason"]}
            for r in m["unmatched"]
        ],
        columns=["token", "occurrences", "degree", "reason"],
    )


def matched_figure(out: ChapterResult):
    """Each matched function token's paired difference in log(1 + degree) against its count; above 0:
    more features than content tokens as frequent. Unmatched function tokens: ticks at the bottom."""
    sns_theme()
    import matplotlib.pyplot as plt

    layers = _layers(out)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.0 * len(layers), 3.6), squeeze=False, sharey=True)
    for ax, L in zip(axes[0], layers):
        m = out.results["layers"][L]["frequency_control"]["matched"]
        if m["matched"]:
            ax.scatter([r["count"] for r in m["matched"]], [r["diff"] for r in m["matched"]], s=12, c=FUNCTION_COLOR)
        if m["unmatched"]:
            ax.plot(
                [r["count"] for r in m["unmatched"]],
                [0.0] * m["n_unmatched"],
                "|",
                c="k",
                ms=12,
                transform=ax.get_xaxis_transform(),
                label=f"unmatched ({m['n_unmatched']})",
            )
            ax.legend(fontsize=7, loc="upper right")
        ax.axhline(0, c="k", lw=1, ls="--")
        if m["mean_diff"] == m["mean_diff"]:
            ax.axhline(m["mean_diff"], c=FUNCTION_COLOR, lw=1, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("function token's occurrences")
        ax.set_title(f"layer {L}: {m['n_matched']} matched, {m['n_unmatched']} unmatched", fontsize=10)
    axes[0][0].set_ylabel("log(1+degree) minus its peers' mean")
    fig.tight_layout()
    return fig


def degree_occurrence_figure(out: ChapterResult):
    """1 + degree against occurrences (log-log) per layer, coloured by function/content, with the
    regression's fitted curves: content tokens' frequency curve and the same shifted by g."""
    sns_theme()
    import matplotlib.pyplot as plt

    layers = _layers(out)
    isf = out.detail["is_function"]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.6), squeeze=False, sharey=True)
    for ax, L in zip(axes[0], layers):
        st = out.detail["per_layer"][L]
        c, d = st["_counts"], st["_degree"]
        ok = c > 0
        ax.scatter(c[ok & ~isf], d[ok & ~isf] + 1, s=4, c=CONTENT_COLOR, alpha=0.4, label="content", rasterized=True)
        ax.scatter(c[ok & isf], d[ok & isf] + 1, s=10, c=FUNCTION_COLOR, label="function")
        reg = out.results["layers"][L]["frequency_control"]["regression"]
        if reg["g"] == reg["g"]:
            x = np.linspace(0, np.log(max(c.max(), 1)), 100)
            ax.plot(np.exp(x), np.exp(curve(x, reg)), c="k", lw=1, label="fit, content")
            ax.plot(
                np.exp(x),
                np.exp(curve(x, reg, function=True)),
                c=FUNCTION_COLOR,
                lw=1,
                label=f"fit + g ({reg['g']:+.2f})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("occurrences in the sample")
        ax.set_title(f"layer {L}: R² of the content line {out.results['layers'][L]['degree_fit']['r2_all']:.2f}")
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("1 + token degree")
    fig.tight_layout()
    return fig


def firing_table(out: ChapterResult) -> pd.DataFrame:
    """Per layer: how feature firings split between function and content tokens."""
    rows = []
    for L in _layers(out):
        v = out.results["layers"][L]
        rows.append(
            {
                "layer": L,
                "function tokens' share of occurrences": f"{v['function_token_share_of_occurrences']:.1%}",
                "function tokens' share of firings": f"{v['function_firing_share']:.1%}",
                "features fired by a function token": v["features_fired_by_function"],
                "features fired only by function tokens": v["features_only_function"],
                "features fired only by content tokens": v["features_only_content"],
                "features fired mostly by function tokens": v["features_mostly_function"],
            }
        )
    return pd.DataFrame(rows).set_index("layer")


def null_curve_figure(out: ChapterResult):
    """Coverage against the number of positions per layer (log x): the top-k tokens' occurrences thinned at
    random, random positions and whole token types (mean and 95% band over the draws), content positions;
    the dotted line is the connected share (the ceiling), the grey line the point the null claim reads."""
    sns_theme()
    import matplotlib.pyplot as plt

    layers = [L for L in _layers(out) if out.results["layers"][L].get("null_curves")]
    if not layers:
        return None
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.6), squeeze=False, sharey=True)
    for ax, L in zip(axes[0], layers):
        v = out.results["layers"][L]
        c = v["null_curves"]
        n = c["n_positions"]
        ax.plot(n, c["top"], c=FUNCTION_COLOR, lw=2, label=f"top {len(v['coverage_topk'])} tokens")
        for key, colour, label in (
            ("random", "#1f77b4", "random positions"),
            ("token_identity", "#2ca02c", "token types"),
        ):
            if key in c:
                ax.plot(n, c[key]["mean"], c=colour, lw=1, label=label)
                ax.fill_between(n, c[key]["lo"], c[key]["hi"], color=colour, alpha=0.2, lw=0)
        ax.plot(n, c["content"], c=CONTENT_COLOR, lw=1, ls="--", label="content positions")
        ax.axhline(v["connected_share"], c="k", ls=":", lw=1)
        j = comparison_point(c, v["connected_share"]) if "random" in c else None
        if j is not None:
            ax.axvline(n[j], c="0.5", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("positions")
        ax.set_title(f"layer {L}")
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("share of d_sae covered")
    fig.tight_layout()
    return fig


def closed_class_table(out: ChapterResult) -> pd.DataFrame:
    """Per layer and rarefaction size: closed-class words and punctuation against content words of the same
    count, by rarefied degree (means, the within-bin difference, its permutation p and the p's own error)."""
    rows = []
    for L in _layers(out):
        for n, r in sorted(
            (out.results["layers"][L].get("closed_class_control") or {}).items(), key=lambda kv: int(kv[0])
        ):
            rows.append(
                {
                    "layer": L,
                    "n": int(n),
                    "function tokens": r["n_function"],
                    "content tokens": r["n_content"],
                    "count bins": r["n_bins"],
                    "mean D_n, function": round(r["mean_function"], 2),
                    "mean D_n, content": round(r["mean_content"], 2),
                    "difference within bins": round(r["difference"], 2) if r["difference"] == r["difference"] else None,
                    "p (permutations)": _p(r["p"]) + (f" +- {r['p_se']:.4f}" if r["p"] == r["p"] else ""),
                }
            )
    return pd.DataFrame(rows).set_index(["layer", "n"]) if rows else pd.DataFrame()
