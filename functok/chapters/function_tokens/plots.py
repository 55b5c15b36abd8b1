"""Figures and tables of chapter 1 (Fig 2a, Fig 2b, Fig 3, Table 2, the threshold sweep). Each
function takes `analyze(cfg).detail["per_tokenizer"]` (or one tokenizer's entry) and returns a Figure
or a DataFrame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from functok.chapters.common import show_token, sns_theme


def zipf_figure(per: dict):
    """Fig 2a: frequency vs rank, log-log, one line per tokenizer, with the fitted power law."""
    import matplotlib.pyplot as plt

    sns = sns_theme()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (spec, p) in enumerate(per.items()):
        tc = p["_counts"]
        freq = np.sort(tc.counts[tc.counts > 0])[::-1] / tc.n_tokens
        rank = np.arange(1, freq.size + 1)
        color = sns.color_palette()[i]
        ax.loglog(rank, freq, color=color, label=f"{spec} (s = {p['zipf']['exponent']:.2f})")
        z = p["zipf"]
        r = np.array([z["lo_rank"], z["hi_rank"]])
        ax.loglog(r, np.exp(z["intercept"]) * r ** (-z["exponent"]) / tc.n_tokens, "--", color=color, lw=1)
    ax.set(xlabel="frequency rank", ylabel="token frequency", title="Fig 2a: Zipf plot (dashed: fit)")
    ax.legend()
    fig.tight_layout()
    return fig


def top_tokens_table(p: dict, paper_top15: list) -> pd.DataFrame:
    """Fig 2b: our top tokens beside the paper's (LLaMA-3.1 on SlimPajama)."""
    rows = []
    for i, r in enumerate(p["top"]):
        row = {
            "rank": i + 1,
            "token": show_token(r["token"]),
            "fraction": r["fraction"],
            "cumulative": r["cumulative"],
            "doc coverage": r["doc_coverage"],
        }
        if i < len(paper_top15):
            t, f, c, d = paper_top15[i]
            row.update(
                {"paper token": show_token(t), "paper fraction": f, "paper cumulative": c, "paper doc coverage": d}
            )
        rows.append(row)
    df = pd.DataFrame(rows).set_index("rank")
    pct = [c for c in df.columns if "token" not in c]
    return df.style.format({c: "{:.2%}" for c in pct}, na_rep="")


def burst_figure(p: dict, tokens: list[str], n_bins: int):
    """Fig 3a/3b: occurrences of a function and a content token across equal-size bins of documents."""
    import matplotlib.pyplot as plt

    sns_theme()
    ok = [t for t in tokens if "bins" in p["bursts"].get(t, {})]
    fig, axes = plt.subplots(1, max(len(ok), 1), figsize=(5 * max(len(ok), 1), 3.2), squeeze=False)
    for ax, t in zip(axes[0], ok):
        b = np.asarray(p["bursts"][t]["rate_per_1k"])
        ax.bar(np.arange(b.size), b, width=1.0)
        ax.set(
            title=f"{t!r}: CV {p['bursts'][t]['cv']:.2f}",
            xlabel=f"document bin (of {n_bins})",
            ylabel="occurrences per 1,000 tokens",
        )
    fig.suptitle("Fig 3a/3b: occurrences across bins of documents")
    fig.tight_layout()
    return fig


def coverage_rank_figure(per: dict):
    """Fig 3c: document coverage vs frequency rank, log-log."""
    import matplotlib.pyplot as plt

    sns_theme()
    fig, ax = plt.subplots(figsize=(6, 4))
    for spec, p in per.items():
        tc = p["_counts"]
        order = tc.ranking()[: int((tc.counts > 0).sum())]
        ax.loglog(
            np.arange(1, order.size + 1),
            tc.doc_counts[order] / tc.n_documents,
            ".",
            ms=2,
            label=f"{spec} (Spearman ρ = {p['freq_coverage_spearman']:.2f})",
        )
    ax.set(xlabel="frequency rank", ylabel="document coverage", title="Fig 3c: document coverage vs rank")
    ax.legend(markerscale=5)
    fig.tight_layout()
    return fig


def sweep_table(per: dict) -> pd.DataFrame:
    """How many tokens the rule selects as the coverage threshold moves."""
    cols = {}
    for spec, p in per.items():
        cols[f"{spec} (vocab {p['vocab_size']:,})"] = {
            r["coverage_threshold"]: r["n_function_tokens"] for r in p["threshold_sweep"]
        }
    df = pd.DataFrame(cols)
    df.index.name = "coverage threshold"
    return df


def function_token_table(p: dict) -> pd.DataFrame:
    """Table 2: the full function-token list."""
    df = pd.DataFrame(p["function_tokens"])
    df["token"] = df["token"].map(show_token)
    df = df[["rank", "token", "id", "count", "fraction", "cumulative", "doc_coverage"]].set_index("rank")
    return df.style.format({"fraction": "{:.2%}", "cumulative": "{:.2%}", "doc_coverage": "{:.2%}"})
