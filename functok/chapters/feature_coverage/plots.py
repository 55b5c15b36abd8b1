"""Figures and tables of the feature-coverage chapter (Fig 5, Table 1 with its null model, the SAEs'
density, connected features, the frequency-matched comparison, degree vs occurrences). Each takes the
ChapterResult `feature_coverage.analyze` returns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from functok.book.results import ChapterResult
from functok.chapters.common import show_token, sns_theme
from functok.chapters.feature_coverage.claims import MAX_DENSITY

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
    reconstruction score, and the L0 measured in the pass."""
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
                "L0 in this pass": v["l0_in_pass"],
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


def matched_figure(out: ChapterResult):
    """Each function token's degree against the median degree of content tokens of the same
    occurrence bin; above the diagonal: more features than content tokens as frequent."""
    sns_theme()
    import matplotlib.pyplot as plt

    layers = _layers(out)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.0 * len(layers), 3.6), squeeze=False)
    for ax, L in zip(axes[0], layers):
        rows = [r for r in out.detail["per_layer"][L]["matched_rows"] if r["n_matched"]]
        m = out.results["layers"][L]["matched"]
        if rows:
            x = np.array([r["matched_median"] for r in rows]) + 1
            y = np.array([r["degree"] for r in rows]) + 1
            ax.scatter(x, y, s=12, c=FUNCTION_COLOR)
            lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
            ax.plot([lo, hi], [lo, hi], c="k", lw=1, ls="--")
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("median degree of matched content tokens + 1")
        ax.set_title(f"layer {L}: {m['n_above']}/{m['n_matched']} above", fontsize=10)
    axes[0][0].set_ylabel("function token degree + 1")
    fig.tight_layout()
    return fig


def matched_table(out: dict, layer: int | None = None, n: int = 15) -> pd.DataFrame:
    """The most frequent function tokens with their matched content peers (one layer)."""
    layers = _layers(out)
    L = layers[len(layers) // 2] if layer is None else layer
    rows = sorted(out.detail["per_layer"][L]["matched_rows"], key=lambda r: -r["count"])[:n]
    return pd.DataFrame(
        [
            {
                "token": show_token(r["token"]),
                "occurrences": r["count"],
                "degree": r["degree"],
                "content tokens in bin": r["n_matched"],
                "their median degree": r.get("matched_median"),
                "ratio": round(r["ratio"], 2) if "ratio" in r else None,
            }
            for r in rows
        ]
    )


def degree_occurrence_figure(out: ChapterResult):
    """Degree against occurrences (log-log) per layer, with the line fitted on content tokens."""
    sns_theme()
    import matplotlib.pyplot as plt

    layers = _layers(out)
    isf = out.detail["is_function"]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.6), squeeze=False, sharey=True)
    for ax, L in zip(axes[0], layers):
        st = out.detail["per_layer"][L]
        c, d = st["_counts"], st["_degree"]
        ok = (c > 0) & (d > 0)
        ax.scatter(c[ok & ~isf], d[ok & ~isf], s=4, c=CONTENT_COLOR, alpha=0.4, label="content", rasterized=True)
        ax.scatter(c[ok & isf], d[ok & isf], s=10, c=FUNCTION_COLOR, label="function")
        fit = out.results["layers"][L]["degree_fit"]
        if fit["slope"] == fit["slope"]:
            xs = np.logspace(0, np.log10(max(c.max(), 1)), 50)
            ax.plot(
                xs,
                10 ** (fit["intercept"] + fit["slope"] * np.log10(xs)),
                c="k",
                lw=1,
                label=f"fit: slope {fit['slope']:.2f}, R² {fit['r2_all']:.2f}",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("occurrences in the sample")
        ax.set_title(f"layer {L}")
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("token degree")
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
