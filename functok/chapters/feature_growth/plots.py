"""Figures and tables of the feature-growth chapter (Fig 8a, Fig 8b, Fig 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def sns_theme():
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def _palette(n: int):
    return sns_theme().color_palette("viridis", n)


SCORE_LABELS = {
    "mean_ablation": "loss recovered vs mean ablation",
    "explained_variance": "explained variance",
    "zero_ablation": "CE score vs zero ablation",
}


def score_vs_coefficient(analysis: dict, target: float, tolerance: float):
    """Fig 12: the matched quality (results `match_on`) against the sparsity coefficient, one line per
    checkpoint, every SAE the search trained (circles; the one at the interpolated coefficient: a
    diamond) and the chosen one (star); the band is the target +- tolerance."""
    import matplotlib.pyplot as plt

    rows = analysis.results["checkpoints"]
    label = SCORE_LABELS.get(analysis.results.get("match_on"), "score")
    colors = _palette(len(rows))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.axhspan(target - tolerance, target + tolerance, color="0.85", zorder=0, label="target +- tolerance")
    for r, c in zip(rows, colors):
        pts = sorted((t["sparsity_coefficient"], t["score"]) for t in r["search"])
        x, y = zip(*pts)
        ax.plot(x, y, "o-", color=c, ms=4, lw=1, label=f"step {r['step']}")
        interp = [(t["sparsity_coefficient"], t["score"]) for t in r["search"] if t.get("interpolated")]
        if interp:
            ax.plot(*zip(*interp), "D", color=c, ms=6, mfc="none")
        ax.plot([r["sparsity_coefficient"]], [r["score"]], "*", color=c, ms=13, mec="k", mew=0.5)
    ax.set_xscale("log")
    lo = min(t["score"] for r in rows for t in r["search"])
    hi = max(t["score"] for r in rows for t in r["search"])
    bottom = max(lo - 0.01, target - 0.1)
    ax.set_ylim(bottom, min(max(hi, target + tolerance), 1.0) + 0.003)
    for r, c in zip(rows, colors):  # SAEs far below the target: a marker on the bottom edge
        low = [t["sparsity_coefficient"] for t in r["search"] if t["score"] < bottom]
        ax.plot(low, [bottom + 0.002] * len(low), "v", color=c, ms=7, clip_on=False)
    if lo < bottom:
        ax.text(0.99, 0.02, "v: score below the axis", transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    ax.set(
        xlabel="sparsity coefficient",
        ylabel=label,
        title="Fig 12: reconstruction quality vs sparsity coefficient",
    )
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def _step_ticks(ax, steps) -> None:
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(list(steps)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{int(s):,}" for s in steps])


def learned_features(analysis: dict, paper: dict | None = None):
    """Fig 8a: learned features at each checkpoint (mean over SAE seeds, error bar = one standard
    deviation, dots = single seeds); right: as a share of the dictionary beside the paper's."""
    import matplotlib.pyplot as plt

    rows = analysis.results["checkpoints"]
    steps = np.array([r["step"] for r in rows], dtype=float)
    mean = np.array([r["learned_features_mean"] for r in rows])
    std = np.nan_to_num(np.array([r["learned_features_std"] for r in rows], dtype=float))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    ax.errorbar(steps, mean, yerr=std, fmt="o-", capsize=4, color="C0", label="fire at least once (the paper's count)")
    for r in rows:
        ax.plot([r["step"]] * len(r["learned_features_seeds"]), r["learned_features_seeds"], ".", color="k", ms=4)
    if "frequent_features_seeds" in rows[0]:
        fq = np.array([np.mean(r["frequent_features_seeds"]) for r in rows])
        fsd = np.nan_to_num(
            np.array(
                [
                    np.std(r["frequent_features_seeds"], ddof=1) if len(r["frequent_features_seeds"]) > 1 else np.nan
                    for r in rows
                ]
            )
        )
        ax.errorbar(
            steps,
            fq,
            yerr=fsd,
            fmt="s--",
            capsize=4,
            color="C1",
            label=f"fire on >= {rows[0]['frequent_min_fires']} activations",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _step_ticks(ax, steps)
    ax.set(
        xlabel="training step",
        ylabel="learned features",
        title=f"Fig 8a: features firing on {rows[0]['n_activations']:,} activations",
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    last = max(r["step"] for r in rows)
    d_sae = rows[0]["d_sae"]
    ax.plot(steps / last, mean / d_sae, "o-", label=f"ours (d_sae {d_sae:,})")
    if paper:
        lf = paper["learned_features"]
        ax.plot(
            [0.02, 0.94],
            [lf["early"] / 65536, lf["late"] / 65536],
            "s--",
            color="C3",
            label="paper (d_sae 65,536; steps 3k and 130k)",
        )
    ax.axhline(0.9, color="0.5", ls=":", lw=1, label="saturated (within 10% of d_sae)")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set(xlabel="fraction of training", ylabel="share of the dictionary", title="learned features / d_sae")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def log_binned(values: np.ndarray, n_bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(geometric centre of each rank bin, mean of `values` over the bin) for log-spaced bins of rank
    1..len(values); the first ranks keep a bin each, so the top tokens stay visible."""
    n = values.size
    edges = np.unique(np.concatenate([np.arange(1, min(n, 10) + 1), np.geomspace(1, n + 1, n_bins).astype(int)]))
    edges = np.append(edges[edges <= n], n + 1)
    centres, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        v = values[lo - 1 : hi - 1]
        if v.size and v.mean() > 0:
            centres.append(np.sqrt(lo * (hi - 1)))
            means.append(v.mean())
    return np.array(centres), np.array(means)


def degree_curves(analysis: dict, top_tokens: int = 10):
    """Fig 8b: token degree (distinct features a token activates) against the token's frequency rank
    in the activation sample, log-log, one line per checkpoint (seed-0 SAEs)."""
    import matplotlib.pyplot as plt

    rows = analysis.results["checkpoints"]
    colors = _palette(len(rows))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for r, c in zip(rows, colors):
        deg = np.asarray(analysis.detail["curves"][r["step"]]["degree_by_rank"], dtype=float)
        rank, mean = log_binned(deg)
        ax.loglog(
            rank,
            mean,
            "-",
            color=c,
            lw=1.6,
            marker="o",
            ms=2.5,
            label=f"step {r['step']} (slope {r['degree_slope']:.2f})",
        )
    ax.axvline(top_tokens, color="0.5", ls=":", lw=1)
    ax.set(
        xlabel="token frequency rank (activation sample)",
        ylabel="token degree (mean over rank bin)",
        title="Fig 8b: token degree vs frequency rank",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def checkpoint_table(analysis: dict) -> pd.DataFrame:
    """One row per checkpoint: the chosen SAE's coefficient (and the one interpolated to the target), its
    quality against both baselines, the losses behind them, and the learned features with saturation."""
    rows = []
    for r in analysis.results["checkpoints"]:
        sd = r["learned_features_std"]
        cat = r.get("coefficient_at_target")
        rows.append(
            {
                "step": r["step"],
                "tokens seen": r["tokens_seen"],
                "coefficient": r["sparsity_coefficient"],
                "at target": cat if cat is not None else np.nan,
                "matched": "yes" if r["matched"] else "no",
                "vs mean abl.": r["mean_ablation_score"],
                "vs zero abl.": r["ce_reconstruction_score"],
                "expl. variance": r["explained_variance"],
                "L0": r["l0"],
                "H_orig": r["ce_loss_original"],
                "H*": r["ce_loss_with_sae"],
                "H_mean": r["ce_loss_mean_ablation"],
                "H0": r["ce_loss_zero_ablation"],
                "learned features": f"{r['learned_features_mean']:,.0f}"
                + ("" if not np.isfinite(sd) else f" +- {sd:,.0f}"),
                "of d_sae": r["saturation"],
                "saturated": "yes" if r["saturated"] else "no",
                "frequent features": f"{np.mean(r['frequent_features_seeds']):,.0f}",
                "single-token-type features": r.get("single_token_feature_share", np.nan),
                "degree slope": r["degree_slope"],
                "top-k coverage": r["top_coverage"],
            }
        )
    df = pd.DataFrame(rows).set_index("step")
    return df.style.format(
        {
            "tokens seen": "{:,}",
            "coefficient": "{:.3g}",
            "at target": "{:.3g}",
            "vs mean abl.": "{:.4f}",
            "vs zero abl.": "{:.4f}",
            "expl. variance": "{:.3f}",
            "L0": "{:.1f}",
            "H_orig": "{:.3f}",
            "H*": "{:.3f}",
            "H_mean": "{:.3f}",
            "H0": "{:.3f}",
            "of d_sae": "{:.1%}",
            "degree slope": "{:.2f}",
            "top-k coverage": "{:.1%}",
            "single-token-type features": "{:.1%}",
        }
    )


def search_table(analysis: dict) -> pd.DataFrame:
    """Every SAE the coefficient search trained (the points of Fig 12); `interpolated`: the SAE at the
    coefficient interpolated to the target."""
    df = analysis.detail["frames"]["search"].copy()
    df["sae"] = df["sae"].map(lambda p: str(p).split("/")[-1])
    return df.style.format(
        {
            "sparsity_coefficient": "{:.4g}",
            "score": "{:.4f}",
            "mean_ablation_score": "{:.4f}",
            "ce_reconstruction_score": "{:.4f}",
            "explained_variance": "{:.3f}",
            "l0": "{:.1f}",
            "delta_loss": "{:.4f}",
        }
    )


def training_summary(analysis: dict) -> pd.DataFrame:
    t = analysis.results["sae_training"]
    return pd.DataFrame(
        [
            {
                "SAEs": t["saes"],
                "activations": f"{t['activations']:,}",
                "training seconds": t["seconds"],
                "activations/s": f"{t['activations_per_s']:,.0f}" if t["activations_per_s"] else "-",
                "threads": t["threads"],
                "back end": t["backend"],
                "chapter seconds": analysis.results["seconds"],
            }
        ]
    ).set_index("SAEs")
