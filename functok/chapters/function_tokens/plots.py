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


# ---------------------------------------------------------------------------------------------
# Our Llama-3 list beside the paper's Table 2 (results["table2"])


def table2_summary(t: dict) -> pd.DataFrame:
    """The sizes of the two lists and their overlap."""
    rows = {
        "paper's rows (Table 2)": t["n_paper_rows"],
        "paper's tokens usable here (one Llama-3 token each, known, not repeated)": t["n_paper_tokens"],
        "of which the extraction is sure": t["n_paper_sure"],
        "our function tokens (Llama-3, our corpus)": t["n_ours"],
        "shared": t["n_shared"],
        "Jaccard (shared / union)": round(t["jaccard"], 3),
        "share of the paper's sure tokens in our list": f"{t['sure_share_in_ours']:.0%}",
        "Spearman of fractions over the shared tokens": round(t["spearman_shared_fractions"], 3),
        "equal size: the paper's usable tokens vs our as many most frequent": (
            f"{t['equal_size']['n_shared']} of {t['equal_size']['n']} shared"
        ),
        "equal size: Jaccard": round(t["equal_size"]["jaccard"], 3),
        f"equal size: rank-biased overlap (p = {t['equal_size']['rbo_p']:g})": round(t["equal_size"]["rbo"], 3),
        "paper's top 15 (sure) in our top 15": f"{t['top15']['in_our_top']} of {t['top15']['paper_top']}",
    }
    return pd.DataFrame({"value": rows})


def table2_rows(t: dict) -> pd.DataFrame:
    """The paper's Table 2, row by row, with our rank and fraction for each token."""
    df = pd.DataFrame(t["rows"])
    df["token"] = df["token"].map(lambda s: show_token(s) if s else "(lost)")
    df = df[["paper_rank", "token", "sure", "paper_fraction", "our_rank", "our_fraction", "status"]]
    return df.set_index("paper_rank").style.format(
        {"paper_fraction": "{:.2%}", "our_fraction": lambda x: "" if x != x or x is None else f"{x:.2%}"},
        na_rep="",
    )


def table2_only_ours(t: dict) -> pd.DataFrame:
    df = pd.DataFrame(t["only_ours"] or [{"token": "", "our_rank": None, "our_fraction": None, "id": None}])
    df["token"] = df["token"].map(show_token)
    return df[["our_rank", "token", "id", "our_fraction"]].set_index("our_rank")


def table2_figure(t: dict):
    """Left: the two lists as counts (paper only, shared, ours only). Right: token fraction in the paper
    against ours over the shared tokens, log-log, with the diagonal."""
    import matplotlib.pyplot as plt

    sns_theme()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    only_paper = sum(r["status"] == "paper only" for r in t["rows"])
    bars = {"paper only": only_paper, "shared": t["n_shared"], "ours only": len(t["only_ours"])}
    a.bar(list(bars), list(bars.values()), color=["#999999", "#4c72b0", "#dd8452"])
    for i, v in enumerate(bars.values()):
        a.text(i, v, str(v), ha="center", va="bottom")
    a.set_ylabel("tokens")
    a.set_title(f"Function tokens, Llama-3: Jaccard {t['jaccard']:.2f}")
    shared = [r for r in t["rows"] if r["status"] == "shared"]
    x = np.array([r["paper_fraction"] for r in shared])
    y = np.array([r["our_fraction"] for r in shared])
    b.scatter(x, y, s=14)
    for r in shared[:12]:
        b.annotate(show_token(r["token"]), (r["paper_fraction"], r["our_fraction"]), fontsize=7)
    if x.size:
        lo, hi = min(x.min(), y.min()) * 0.8, max(x.max(), y.max()) * 1.2
        b.plot([lo, hi], [lo, hi], ls="--", c="grey", lw=1)
        b.set_xscale("log")
        b.set_yscale("log")
    b.set_xlabel("fraction in the paper (SlimPajama)")
    b.set_ylabel("fraction here")
    b.set_title(f"Shared tokens: Spearman {t['spearman_shared_fractions']:.2f}")
    fig.tight_layout()
    return fig


def set_size_table(per: dict, paper: dict) -> pd.DataFrame:
    """The size of the function-token set per tokenizer at the chapter's threshold, beside the paper's."""
    rows = [
        {
            "tokenizer": spec,
            "vocabulary": p["vocab_size"],
            "function tokens": p["n_function_tokens"],
            "share of vocabulary": f"{p['n_function_tokens'] / p['vocab_size']:.2%}",
            "corpus": "this book's",
        }
        for spec, p in per.items()
    ]
    rows.append(
        {
            "tokenizer": "paper (Llama-3.1)",
            "vocabulary": paper["vocab_size"],
            "function tokens": paper["n_function_tokens"],
            "share of vocabulary": f"{paper['n_function_tokens'] / paper['vocab_size']:.2%}",
            "corpus": "SlimPajama",
        }
    )
    return pd.DataFrame(rows).set_index("tokenizer")


def table2_differences(t: dict) -> str:
    """The paragraph naming which differences from the paper's list come from the corpus."""
    symbols = t["symbol_like_paper_only"]
    only = [r["token"] for r in t["only_ours"]]
    return (
        f"Differences that come from the corpus: the paper's list has {len(symbols)} digit, symbol and markup tokens "
        f"we do not ({', '.join(f'`{show_token(x)}`' for x in symbols[:15]) or 'none'}): SlimPajama holds web pages, "
        "code and LaTeX, ours is encyclopedia intros, speeches and books. Ours has "
        f"{len(only)} tokens the paper's lacks ({', '.join(f'`{show_token(x)}`' for x in only[:15]) or 'none'}), "
        "words frequent in our three sources."
    )


def burst_table(p: dict) -> pd.DataFrame:
    """Fig 3's tokens per document (observed, expected under random placement, z) beside the bin CVs."""
    rows = {}
    for t, b in p["bursts"].items():
        if "error" in b:
            continue
        rows[show_token(t)] = {
            "occurrences": sum(b["bins"]),
            "documents": b["documents"],
            "expected if random": round(b["documents_expected"], 1),
            "ratio": round(b["document_ratio"], 2),
            "z": round(b["document_z"], 1),
            "CV of bin rates": round(b["cv"], 2),
            "CV if random": round(b["cv_null"], 2),
        }
    return pd.DataFrame(rows).T
