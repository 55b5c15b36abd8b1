"""Figures and tables of the reactivation chapter (Fig 6, Fig 7, Fig 11).

Each function takes the dict returned by functok.chapters.reactivation.analysis.analyze and returns a Figure or a
DataFrame."""

from __future__ import annotations

import pandas as pd

from functok.chapters.common import show_token, sns_theme
from functok.chapters.reactivation.cards import card_href
from functok.chapters.reactivation.claims import precision_bound


def features_table(analysis: dict) -> pd.DataFrame:
    """The feature of each concept: how it was chosen and how selective it is."""
    rows = []
    for c, v in analysis.results["concepts"].items():
        on, fired, lb = precision_bound(v)
        rows.append(
            {
                "concept": repr(c),
                "feature": v["feature"],
                "chosen by": v["chosen_by"],
                "occurrences (select / measure)": f"{v['n_occurrences']} ({v.get('n_occurrences_select', '-')} / "
                f"{v.get('n_occurrences_measure', '-')})",
                "P(fires | concept)": round(v["p_fire_on_concept"], 3),
                "P(fires | other tokens)": round(v["p_fire_elsewhere"], 4),
                "episode precision (held out)": "{} of {} = {:.3f}".format(on, fired, v["precision"]) if fired else "-",
                "precision, 95% lower bound": round(lb, 3),
                "precision at the concept's token": round(v.get("precision_at_token", float("nan")), 3),
                "mean activation on concept": round(v["mean_activation_on_concept"], 3),
                "model predicts it (unsteered)": "{predicted} of {contexts}".format(**v["unsteered"])
                if "unsteered" in v
                else "",
            }
        )
    return pd.DataFrame(rows).set_index("concept")


def fig6(analysis: dict):
    """Fig 6: per-token activation of each concept's feature over each trace prompt (function tokens in
    red on the x axis)."""
    import matplotlib.pyplot as plt

    sns = sns_theme()
    traces = analysis.results["traces"]
    fig, axes = plt.subplots(
        len(traces),
        1,
        figsize=(
            max(8, 0.45 * max(len(t["tokens"]) for t in traces)),
            1.2 + 0.45 * len(traces[0]["acts"]) * len(traces),
        ),
        squeeze=False,
    )
    for ax, t in zip(axes[:, 0], traces):
        feats = analysis.results["concepts"]
        m = pd.DataFrame(
            {f"{c.strip()} (#{feats[c]['feature']})": v for c, v in t["acts"].items()},
            index=[show_token(x) for x in t["tokens"]],
        ).T
        sns.heatmap(m, ax=ax, cmap="Reds", cbar_kws={"label": "activation"}, linewidths=0.5, linecolor="white", vmin=0)
        for lab, fn in zip(ax.get_xticklabels(), t["function"]):
            lab.set_color("#d62728" if fn else "black")
        ax.set_xticklabels(ax.get_xticklabels(), rotation=60, ha="right")
        ax.set_title(t["prompt"], fontsize=10)
    fig.suptitle("Fig 6: feature activation per token (function tokens in red)")
    fig.tight_layout()
    return fig


def reactivation_figure(analysis: dict):
    """Firing rate of each concept's feature after the concept (function / content tokens) and on
    function tokens of windows without it."""
    import matplotlib.pyplot as plt

    sns = sns_theme()
    rows = []
    for c, v in analysis.results["concepts"].items():
        r = v["reactivation"]
        rows += [
            {"concept": c.strip(), "where": "function tokens after the concept", "rate": r["fn_after_rate"]},
            {"concept": c.strip(), "where": "content tokens after the concept", "rate": r["ct_after_rate"]},
            {"concept": c.strip(), "where": "function tokens, windows without it", "rate": r["fn_base_rate"]},
        ]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    sns.barplot(
        pd.DataFrame(rows), x="concept", y="rate", hue="where", ax=ax, palette=["#d62728", "#ff7f0e", "#7f7f7f"]
    )
    ax.set(
        ylabel="share of tokens on which the feature fires",
        title=f"Re-activation within {analysis.results['horizon']} tokens after the concept",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def card_links(analysis, out_dir: str):
    """Links to the feature cards of the features the claims below use, and of the depth scan's (the site's cards
    pages)."""
    from IPython.display import HTML

    def link(name: str, c: dict, layer=None) -> str:
        where = "" if layer is None else f"layer {layer}, "
        return (
            f'<a class="functok-card-link" href="{card_href(out_dir, c["feature"], layer)}">{name.strip()}: {where}'
            f"feature {c['feature']}</a>"
        )

    cards = analysis.results.get("feature_cards") or {}
    links = ", ".join(link(n, c) for n, c in cards.items())
    scan = analysis.results.get("depth_scan") or {}
    more = ", ".join(link(n, c, int(L)) for L, d in scan.items() for n, c in d["feature_cards"].items())
    return HTML(
        f"<p>Feature cards of the features these claims use: {links or 'none'}."
        + (f" Of the depth scan: {more}." if more else "")
        + "</p>"
    )


def depth_table(analysis, cfg) -> pd.DataFrame:
    """Per layer scanned (the chapter's own and the depth scan's) and concept: the feature selected on the first
    half of the documents, its occurrences and episode precision on the second with the Wilson 95% interval,
    whether the layer's SAE meets the quality bar, and whether the feature passes the chapter's precondition
    (at least min_occurrences, the interval's lower bound at least min_precision)."""
    r = analysis.results
    layers = {int(r["layer"]): {"concepts": r["concepts"], "sae_quality": r.get("sae_quality") or {}}}
    layers.update({int(L): d for L, d in (r.get("depth_scan") or {}).items()})
    rows = []
    for L in sorted(layers):
        d = layers[L]
        bar = not (d["sae_quality"] or {}).get("failures")
        for c, v in d["concepts"].items():
            on, fired, lb = precision_bound(v)
            lo, hi = v.get("precision_interval") or (float("nan"), float("nan"))
            rows.append(
                {
                    "layer": f"{L} (depth {L / r['n_layers']:.2f})" + (" *" if L == int(r["layer"]) else ""),
                    "concept": c.strip(),
                    "feature": v["feature"],
                    "occurrences": v["n_occurrences"],
                    "episode precision [95%]": f"{on}/{fired} [{lo:.3f}, {hi:.3f}]" if fired else "never fires",
                    "SAE meets the bar": "yes" if bar else "no",
                    "passes": "yes"
                    if bar and v["n_occurrences"] >= cfg.min_occurrences and lb == lb and lb >= cfg.min_precision
                    else "no",
                }
            )
    return pd.DataFrame(rows).set_index(["layer", "concept"]) if rows else pd.DataFrame()


def distance_table(analysis: dict) -> pd.DataFrame:
    """Per concept and distance from its last occurrence: the feature's firing rate on function and on content
    tokens with Wilson 95% intervals, and the content rate matched to the function tokens' distances."""
    rows = []
    for c, v in analysis.results["concepts"].items():
        r = v["reactivation"]
        for b in r.get("by_distance", []):
            rows.append(
                {
                    "concept": c.strip(),
                    "distance": f"{b['lo']}-{b['hi']}",
                    "function tokens": f"{b['fn_fired']} of {b['fn']}",
                    "function rate [95%]": _rate(b["fn_rate"], b["fn_interval"]),
                    "content tokens": f"{b['ct_fired']} of {b['ct']}",
                    "content rate [95%]": _rate(b["ct_rate"], b["ct_interval"]),
                }
            )
        if "ct_after_rate_matched" in r:
            rows.append({"concept": c.strip(), "distance": "all (content matched)",
                         "function rate [95%]": _rate(r["fn_after_rate"], r["fn_after_interval"]),
                         "content rate [95%]": f"{r['ct_after_rate_matched']:.3f}"})  # fmt: skip
    return pd.DataFrame(rows).set_index(["concept", "distance"]) if rows else pd.DataFrame()


def _rate(rate: float, interval: list) -> str:
    return "-" if rate != rate else f"{rate:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def steering_table(analysis: dict) -> pd.DataFrame:
    """Fig 7 / Fig 11 as numbers: share of prompts whose continuation names the concept, per alpha."""
    res = analysis.results
    df = pd.DataFrame(
        {
            c.strip(): {f"alpha {a}": v["steering_success"][str(a)] for a in res["alphas"]}
            for c, v in res["concepts"].items()
        }
    ).T
    return df.style.format("{:.0%}")


def steering_probability_figure(analysis: dict):
    """Mean log-probability of the concept's first token as the next token, against alpha."""
    import matplotlib.pyplot as plt

    sns_theme()
    res = analysis.results
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for c, v in res["concepts"].items():
        ax.plot(res["alphas"], [v["steering_logprob"][str(a)] for a in res["alphas"]], "o-", label=c.strip())
    ax.set(
        xlabel="alpha (x the layer's mean activation norm)",
        ylabel="log P(concept next)",
        title="Steering the last function token: the concept's next-token probability",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def steering_examples(analysis: dict, n_prompts: int = 4) -> pd.DataFrame:
    """Fig 11's layout: a few prompts x (unsteered, each concept at its best alpha) with the continuations."""
    res = analysis.results
    rows = [r for r in res["steering"] if r.get("condition", "last") == "last"]
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))[:n_prompts]
    steered = [a for a in res["alphas"] if a != 0]
    out = {}
    for p in prompts:
        row = {}
        base = [r for r in rows if r["prompt"] == p and r["alpha"] == 0]
        if base:
            row["unsteered"] = base[0]["continuation"]
        for c, v in res["concepts"].items():
            if not steered:
                continue
            best = max(steered, key=lambda a: v["steering_success"][str(a)])
            hit = [r for r in rows if r["prompt"] == p and r["concept"] == c and r["alpha"] == best]
            if hit:
                row[f"{c.strip()} (alpha {best})"] = hit[0]["continuation"] + (" ✓" if hit[0]["success"] else "")
        out[p] = row
    return pd.DataFrame(out).T


def steering_control_table(analysis: dict) -> pd.DataFrame:
    """Per concept and alpha: successes of n prompts in each cell of the position control (the unsteered answer of
    each cell's own prompts at alpha 0)."""
    res = analysis.results
    rows = []
    for c, v in res["concepts"].items():
        for a in res["alphas"]:
            row = {"concept": c.strip(), "alpha": a}
            for k, cell in v.get("steering_counts", {}).items():
                hits, n = cell[str(a)]
                row[k.replace("_", " ")] = f"{hits} of {n}"
            rows.append(row)
    return pd.DataFrame(rows).set_index(["concept", "alpha"]) if rows else pd.DataFrame()


def appendix_a_table(analysis: dict) -> pd.DataFrame | None:
    """Appendix A per trait: the success rates of the unsteered answers, the raw trait activation (at the
    chapter's layer and at each scanned layer), the top-k SAE vector at the last function token, at the last
    content token and at every position, and the k the search found (None: no top-k set)."""
    app = analysis.results.get("appendix_a")
    if not app:
        return None
    out = {}
    for name, t in app["traits"].items():
        row = {
            "trait prompt shows it": "yes" if t["trait_prompt_shows_trait"] else "no",
            "unsteered": t["base"]["rate"],
        }
        row[f"raw, layer {analysis.results['layer']}"] = t["raw"]["rate"]
        row |= {f"raw, layer {L}": r for L, r in t.get("layers", {}).items()}
        row["k (of active)"] = (
            f"{t['k']} (of {t['active_features']})" if t["k"] else f"none (of {t['active_features']})"
        )
        for key, label in (
            ("topk_last", "top-k, last \\n"),
            ("topk_content", "top-k, content"),
            ("topk_every", "top-k, every"),
        ):
            row[label] = t[key]["rate"] if key in t else float("nan")
        out[name] = row
    df = pd.DataFrame(out).T
    rates = [c for c in df.columns if c not in ("trait prompt shows it", "k (of active)")]
    return df.style.format("{:.0%}", subset=rates, na_rep="–")


def appendix_a_examples(analysis: dict, n_prompts: int = 4) -> pd.DataFrame | None:
    """A few test prompts: the unsteered answer and, per trait, the answer with the raw activation and with
    the top-k SAE vector at the final "\\n" (✓: the trait's pattern matches)."""
    app = analysis.results.get("appendix_a")
    if not app:
        return None
    out: dict = {}

    def put(answers, label):
        for a in answers[:n_prompts]:
            out.setdefault(a["prompt"], {})[label] = a["answer"].strip() + (" ✓" if a["shows_trait"] else "")

    for i, (name, t) in enumerate(app["traits"].items()):
        if i == 0:  # the unsteered answers are the same for every trait
            put(t["base"]["answers"], "unsteered")
        put(t["raw"]["answers"], f"{name}: raw activation")
        if "topk_last" in t:
            put(t["topk_last"]["answers"], f"{name}: top-{t['k']} features")
    return pd.DataFrame(out).T
