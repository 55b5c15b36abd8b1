"""Figures and tables of the loss-split chapter (Fig 9a/9b/9c, the scaling table, Fig 10).

Each function takes the dict returned by functok.chapters.loss_split.analysis.analyze and returns a Figure or a
DataFrame / Styler."""

from __future__ import annotations

import numpy as np
import pandas as pd

from functok.chapters.common import show_token, sns_theme
from functok.chapters.loss_split.stats import KEYS


def _colors():
    sns_theme()
    return {
        "function->function": "#1f77b4",
        "function->content": "#d62728",
        "content->function": "#2ca02c",
        "content->content": "#ff7f0e",
        "all": (0.2, 0.2, 0.2),
    }


def _xaxis(ax, label: str = "training step") -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel(label + " (symlog)")


def over_training(analysis: dict) -> dict:
    """The models with checkpoints over training (a real pretrained model has only its final weights)."""
    per = analysis.detail["models"]
    return {n: p for n, p in per.items() if sum(c["step"] is not None for c in p["result"]["checkpoints"]) >= 2}


def final_losses_table(analysis: dict) -> pd.DataFrame:
    """One row per model: its four final group losses (and all tokens) with intervals, the order they
    fall in and the windows they were measured on (each model's own tokenizer cuts the same documents)."""
    rows = []
    for name, p in analysis.detail["models"].items():
        r, c = p["result"], p["result"]["checkpoints"][-1]
        row = {"model": name, "layers": r["n_layers"], "function tokens": r["n_function_tokens"]}
        for k in KEYS:
            lo, hi = c["ci"][k]
            row[k] = f"{c['groups'][k]:.3f} [{lo:.3f}, {hi:.3f}]"
        row["order (lowest first)"] = " < ".join(sorted((k for k in KEYS if k != "all"), key=lambda k: c["groups"][k]))
        row["predictions"] = f"{c['counts']['all']:,}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def group_curves(analysis: dict):
    """Fig 9a/9b: per model, the four groups and the average over training. Lines: the training log
    (every step, centred rolling mean); markers with bars: held-out checkpoints with their intervals;
    dotted: the learning milestone, the unigram model's held-out loss over all predictions (checkpoints
    below it are past the milestone; hollow markers: not past it)."""
    import matplotlib.pyplot as plt

    per = over_training(analysis)
    colors = _colors()
    fig, axes = plt.subplots(1, len(per), figsize=(6 * len(per), 4.2), squeeze=False, sharey=True)
    for ax, (name, p) in zip(axes[0], per.items()):
        if p["log"] is not None:
            sm = p["log"]["smooth"]
            for k in KEYS:
                ax.plot(sm["step"], sm[k], color=colors[k], lw=1.0, alpha=0.55, ls="--" if k == "all" else "-")
        f = p["frame"].dropna(subset=["step"])
        past = {c["step"]: c["past_milestone"] for c in p["result"]["checkpoints"]}
        for k in KEYS:
            d = f[f["group"] == k]
            ax.errorbar(
                d["step"],
                d["loss"],
                yerr=[d["loss"] - d["lo"], d["hi"] - d["loss"]],
                fmt="none",
                capsize=2,
                color=colors[k],
            )
            ok = d["step"].map(past).fillna(False).astype(bool)
            ax.plot(d["step"][ok], d["loss"][ok], "o", ms=4, color=colors[k], label=k if k != "all" else "all tokens")
            ax.plot(d["step"][~ok], d["loss"][~ok], "o", ms=4, mfc="none", color=colors[k])
        u = p["result"]["unigram_loss"]
        ax.axhline(u, color=colors["all"], ls=":", lw=1.2, label=f"unigram model, all tokens ({u:.2f}): milestone")
        _xaxis(ax)
        ax.set(
            ylabel="cross-entropy (nats)",
            title=f"{name} ({p['result']['n_layers']} layer{'s' if p['result']['n_layers'] > 1 else ''})",
        )
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        "Fig 9a/9b: loss by group over training (lines: training log; points: held-out checkpoints, "
        f"{analysis.results['ci']['level']:.0%} intervals, hollow before the milestone; dotted: unigram model)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def next_token_curves(analysis: dict):
    """Fig 9c: the loss of predicting each chosen function token as the next token vs the average,
    held-out checkpoints with intervals; dotted lines mark each series' convergence step."""
    import matplotlib.pyplot as plt

    sns = sns_theme()
    per = over_training(analysis)
    fig, axes = plt.subplots(1, len(per), figsize=(6 * len(per), 4.2), squeeze=False, sharey=True)
    for ax, (name, p) in zip(axes[0], per.items()):
        f = p["next_frame"].dropna(subset=["step"])
        series = list(dict.fromkeys(f["next token"]))
        pal = sns.color_palette("deep", len(series))
        conv = p["convergence"]["heldout"]
        for color, t in zip(pal, series):
            d = f[f["next token"] == t]
            label = repr(t) if t != "average (all)" else t
            ax.errorbar(
                d["step"],
                d["loss"],
                yerr=[d["loss"] - d["lo"], d["hi"] - d["loss"]],
                fmt="o",
                ms=3,
                capsize=2,
                color=color,
                label=label,
                ls="--" if t == "average (all)" else "-",
            )
            s = conv.get("all" if t == "average (all)" else t)
            if s is not None:
                ax.axvline(s, color=color, ls=":", lw=1)
        _xaxis(ax)
        ax.set(ylabel="cross-entropy (nats)", title=f"{name}: loss of the next token")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Fig 9c: predicting function tokens vs the average (dotted: convergence step)", fontsize=10)
    fig.tight_layout()
    return fig


def scaling_table(analysis: dict) -> pd.DataFrame:
    """The scaling table: final group losses of the shallow and the deep model, their difference with
    its interval, beside the paper's 1.5B (2-layer) and 8B (32-layer) values."""
    sc = analysis.detail["scaling"]
    m = sc["models"]
    rows = []
    for r in sc["rows"]:
        lo, hi = r["difference_ci"]
        rows.append(
            {
                "group": r["group"],
                f"{m['shallow']}": r["shallow"],
                f"{m['deep']}": r["deep"],
                "difference": r["difference"],
                "interval": f"[{lo:.3f}, {hi:.3f}]",
                "paper 1.5B (2 layers)": r.get("paper_shallow", np.nan),
                "paper 8B (32 layers)": r.get("paper_deep", np.nan),
                "paper difference": r.get("paper_difference", np.nan),
            }
        )
    df = pd.DataFrame(rows).set_index("group")
    num = [c for c in df.columns if c != "interval"]
    return df.style.format({c: "{:.3f}" for c in num}, na_rep="")


def counts_table(analysis: dict) -> pd.DataFrame:
    """Each group's count of held-out predictions, share, and final mean with its interval, per model."""
    rows = []
    for name, p in analysis.detail["models"].items():
        c = p["result"]["checkpoints"][-1]
        n_all = c["counts"]["all"]
        for k in KEYS:
            lo, hi = c["ci"][k]
            rows.append(
                {
                    "model": name,
                    "group": k,
                    "predictions": c["counts"][k],
                    "share": c["counts"][k] / n_all,
                    "final loss": c["groups"][k],
                    "interval": f"[{lo:.3f}, {hi:.3f}]",
                }
            )
    df = pd.DataFrame(rows).set_index(["model", "group"])
    return df.style.format({"share": "{:.1%}", "final loss": "{:.3f}", "predictions": "{:,}"})


def checkpoint_table(analysis: dict, name: str) -> pd.DataFrame:
    """Held-out group means at every checkpoint of one model (the numbers behind Fig 9a/9b), the
    unigram model's in the last row, and whether each checkpoint is past the milestone (below it)."""
    r = analysis.detail["models"][name]["result"]
    rows = [{"step": str(c["step"]), **c["groups"], "past milestone": c["past_milestone"]} for c in r["checkpoints"]]
    rows.append({"step": "unigram model", **r["unigram"]["groups"], "past milestone": None})
    df = pd.DataFrame(rows).set_index("step")[[*KEYS, "past milestone"]]
    return df.style.format({k: "{:.3f}" for k in KEYS}).format(
        {"past milestone": lambda v: "" if v is None else ("yes" if v else "no")}
    )


def convergence_table(analysis: dict) -> pd.DataFrame:
    """Convergence step of every series: held-out checkpoints and the training log."""
    rows = []
    for name, p in analysis.detail["models"].items():
        conv = p["convergence"]
        for k in dict.fromkeys([*conv["heldout"], *conv["train_log"]]):
            rows.append(
                {
                    "model": name,
                    "series": repr(k) if k not in KEYS else k,
                    "held-out checkpoints": conv["heldout"].get(k),
                    "training log": conv["train_log"].get(k),
                    "final step": conv["final_step"],
                }
            )
    return pd.DataFrame(rows).set_index(["model", "series"]).astype("Int64")


def _layers(n: int) -> str:
    return f"{n} layer{'s' if n != 1 else ''}"


def depth_summary(analysis: dict) -> str:
    """What depth does to the final loss, in words read from the scaling table: overall, then per group
    (a difference counts only where its bootstrap interval excludes 0)."""
    sc = analysis.detail["scaling"]
    m, level = sc["models"], analysis.results["ci"]["level"]
    rows = {r["group"]: r for r in sc["rows"]}

    def verdict(r) -> str:
        lo, hi = r["difference_ci"]
        return "lower" if lo > 0 else ("higher" if hi < 0 else "not clearly different")

    a = rows["all"]
    lo, hi = a["difference_ci"]
    overall = verdict(a)
    words = {
        "lower": "lower: depth helps overall",
        "higher": "higher: depth hurts overall at this training budget",
        "not clearly different": "not clearly different: the interval includes 0",
    }[overall]
    groups = {v: [k for k in KEYS[:-1] if verdict(rows[k]) == v] for v in ("lower", "higher", "not clearly different")}
    parts = [f"{v} in {', '.join(ks)}" for v, ks in groups.items() if ks]
    return (
        f"All tokens: the final loss of **{m['deep']}** ({_layers(m['deep_layers'])}) is "
        f"{abs(a['difference']):.3f} nats {'below' if a['difference'] > 0 else 'above'} that of **{m['shallow']}** "
        f"({_layers(m['shallow_layers'])}), {level:.0%} interval of the difference [{lo:.3f}, {hi:.3f}], so it is "
        f"{words}. By group, the deep model's loss is {'; '.join(parts)}."
    )


def greedy_table(analysis: dict, name: str):
    """Fig 10: the greedy next-token prediction at every position of the prompt (rows) at every
    checkpoint (columns). Shaded: the prediction is a function token; bold: it is the actual next token."""
    g = analysis.detail["models"][name]["greedy"]
    steps = list(g)
    first = g[steps[0]]
    df = pd.DataFrame(
        {
            "input": [show_token(r["token"]) for r in first],
            "next": [show_token(r["next"]) if r["next"] is not None else "" for r in first],
        }
    )
    fn = pd.DataFrame({"input": [r["token_is_function"] for r in first], "next": False})
    ok = pd.DataFrame({"input": False, "next": False}, index=df.index)
    for s in steps:
        col = f"step {s}"
        df[col] = [show_token(r["prediction"]) for r in g[s]]
        fn[col] = [r["prediction_is_function"] for r in g[s]]
        ok[col] = [r["correct"] for r in g[s]]

    def style(_):
        out = pd.DataFrame("", index=df.index, columns=df.columns)
        out[fn.astype(bool)] = "background-color: #cfe2f3"
        out[ok.astype(bool)] += "; font-weight: bold"
        return out

    return df.style.apply(style, axis=None)


def greedy_share_figure(analysis: dict):
    """Beyond Fig 10: on held-out positions, the share of greedy predictions that are function tokens
    and the share that are right, at every checkpoint."""
    import matplotlib.pyplot as plt

    sns = sns_theme()
    per = over_training(analysis)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    pal = sns.color_palette("deep", len(per))
    for color, (name, p) in zip(pal, per.items()):
        cks = [c for c in p["result"]["checkpoints"] if c["step"] is not None]
        steps = [c["step"] for c in cks]
        ax.plot(
            steps,
            [c["greedy_function_share"] for c in cks],
            "-o",
            ms=3,
            color=color,
            label=f"{name}: prediction is a function token",
        )
        ax.plot(
            steps, [c["greedy_accuracy"] for c in cks], "--s", ms=3, color=color, label=f"{name}: prediction is right"
        )
    _xaxis(ax)
    ax.set(ylabel="share of held-out positions", ylim=(0, 1.02), title="Greedy predictions on held-out text")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
