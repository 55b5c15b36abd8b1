"""The robustness page: how stable each claim's verdict is when a chapter is re-run over a grid.

Generated, like the scorecard, from results files only: each sweep folder's index.json
(functok.book.sweep) and the results file of every finished run. Per claim: how many runs hold, fail
or are inconclusive, the range of the measured value ("ours"), and a figure of the measured value
against the swept parameter.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from functok.book.sweep import INDEX
from functok.chapters.registry import chapter as chapter_entry
from functok.chapters.registry import chapters
from functok.core.results import SCORED

VERDICTS = SCORED  # holds, fails, inconclusive, fragile
PALETTE = {"holds": "#2a9d5c", "fails": "#c8452c", "inconclusive": "#8a8a8a", "fragile": "#8250df"}
PER_RUN_COLUMNS = 6  # up to this many runs, the table shows each run's value and verdict
NUMBER = re.compile(r"-?\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?")


def numeric(x) -> float | None:
    """A measured value as a number: the number itself, or the first number in a string
    ('77 of 4,096 (1.88%)' -> 77, '61%' -> 61); None when there is none."""
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, (int, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, str):
        m = NUMBER.search(x)
        return float(m.group().replace(",", "")) if m else None
    return None


def sweep_folders(folder: Path) -> list[Path]:
    """The sweep folders under `folder` (each holds an index.json), in book order."""
    order = {c: i for i, c in enumerate(chapters())}
    found = [p.parent for p in Path(folder).glob(f"*/{INDEX}")]
    return sorted(found, key=lambda p: (order.get(json.loads((p / INDEX).read_text())["chapter"], 99), p.name))


def load(folder: Path) -> tuple[dict, list[tuple[dict, dict]]]:
    """A sweep's index and (index row, results file) of each finished run, in grid order."""
    index = json.loads((Path(folder) / INDEX).read_text())
    runs = []
    for row in index["runs"]:
        path = Path(folder) / row["results"]
        if path.exists():
            runs.append((row, json.loads(path.read_text())))
    return index, runs


def claim_rows(runs: list[tuple[dict, dict]]) -> list[dict]:
    """One row per claim id (first seen order): statement and paper of its first run, and per run its
    grid values, measured value and verdict."""
    rows: dict[str, dict] = {}
    for row, doc in runs:
        for c in doc["claims"]:
            r = rows.setdefault(c["id"], {"id": c["id"], "statement": c["statement"], "paper": c["paper"], "runs": []})
            r["runs"].append({"values": row["values"], "ours": c["ours"], "verdict": c["verdict"]})
    return list(rows.values())


def value_range(values: list) -> str:
    """'0.21 – 0.35' for numbers; for text, the values at the smallest and largest number in them."""
    if not values:
        return ""
    distinct = list(dict.fromkeys(json.dumps(v) for v in values))
    if len(distinct) == 1:
        return f"{_fmt(values[0])} (every run)"
    nums = [numeric(v) for v in values]
    if any(n is None for n in nums):
        return f"{len(distinct)} different values"
    lo, hi = values[nums.index(min(nums))], values[nums.index(max(nums))]
    return f"{_fmt(lo)} – {_fmt(hi)}"


def _fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _short(x, n: int = 40) -> str:
    text = _fmt(x)
    return text if len(text) <= n else text[: n - 1] + "…"


def _md(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _label(values: dict) -> str:
    return ", ".join(f"{k}={_fmt(v) if not isinstance(v, str) else v}" for k, v in values.items())


def figure(index: dict, rows: list[dict], path: Path) -> Path | None:
    """Small multiples, one per claim with a number in every run that is not the same in all: the measured
    value against the first swept parameter, each point coloured by its verdict (seaborn). None when no
    claim qualifies."""
    first = next(iter(index["grid"]))
    plottable = [
        r
        for r in rows
        if all(numeric(x["ours"]) is not None for x in r["runs"]) and len({numeric(x["ours"]) for x in r["runs"]}) > 1
    ]
    if not plottable:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    cols = min(4, len(plottable))
    nrows = math.ceil(len(plottable) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.6 * nrows), squeeze=False)
    for ax, r in zip(axes.flat, plottable):
        df = pd.DataFrame(
            {
                "x": [x["values"][first] for x in r["runs"]],
                "ours": [numeric(x["ours"]) for x in r["runs"]],
                "verdict": [x["verdict"] for x in r["runs"]],
                "other": [_label({k: v for k, v in x["values"].items() if k != first}) for x in r["runs"]],
            }
        )
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in df["x"])
        if not numbers:
            df["x"] = df["x"].map(str)
        sns.lineplot(data=df, x="x", y="ours", units="other", estimator=None, color="#bbbbbb", ax=ax, legend=False)
        sns.scatterplot(data=df, x="x", y="ours", hue="verdict", palette=PALETTE, hue_order=VERDICTS, s=50, ax=ax)
        ax.set_title(r["id"], fontsize=8)
        ax.set_xlabel(first, fontsize=8)
        ax.set_ylabel("ours", fontsize=8)
        ax.tick_params(labelsize=7)
        if numbers:
            ax.set_xticks(sorted(set(df["x"])))
        if ax.get_legend():
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(plottable) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=PALETTE[v], label=v) for v in VERDICTS]
    fig.legend(handles=handles, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def robustness_markdown(folder: Path, page_dir: Path) -> str:
    """The page (written by the caller into page_dir/robustness.md): one section per sweep folder under
    `folder`; figures are written to page_dir/robustness/<sweep folder>.png (the chapter, or chapter.model_run)."""
    lines = [
        "# Robustness of the verdicts",
        "",
        "Each chapter scores its claims on one run: one threshold, one seed, one set of choices. This page "
        "re-runs chapters over a small grid of parameter values (`functok sweep`, one run per parameter set, "
        "run in parallel on Ray) and counts, for every claim, how often it holds, fails or is inconclusive "
        "across the grid. A verdict that flips within a reasonable range of a parameter says more about the "
        "parameter than about the paper. The figures show the measured value (*ours*; for text values the "
        "first number in them) against the swept parameter. A claim's statement is shown as its first run "
        "words it (a statement naming the swept value, such as a coverage share, names each run's own value in "
        "that run). The [scorecard](scorecard.md) has the main run.",
        "",
    ]
    folders = sweep_folders(folder) if Path(folder).exists() else []
    if not folders:
        return "\n".join(
            lines + ["No sweeps yet: the preset's `robustness:` section lists them; run `functok book`.", ""]
        )
    for sweep_dir in folders:
        index, runs = load(sweep_dir)
        name, label = index["chapter"], index.get("model_run") or ""
        rows = claim_rows(runs)
        grid = "; ".join(f"`{k}` over {', '.join(_fmt(v) for v in vs)}" for k, vs in index["grid"].items())
        fixed = ", ".join(f"`{k}` = {json.dumps(v)}" for k, v in index["fixed"].items()) or "none"
        lines += [
            f"## [{chapter_entry(name).title}](chapters/{name}.ipynb)"
            if not label
            else f"## [{chapter_entry(name).title}: {label}](chapters/{label}/{name}.ipynb)",
            "",
            f"**Swept:** {grid}, on preset `{index['preset']}` (other parameters fixed: {fixed}); "
            f"{len(runs)} of {len(index['runs'])} runs finished.",
            "",
        ]
        if index.get("why"):
            lines += [f"**Why this sweep:** {index['why']}", ""]
        lines += [f"Reproduce: `{index['command']}`", ""]
        flips = [r["id"] for r in rows if len({x["verdict"] for x in r["runs"]}) > 1]
        lines += [
            f"{len(rows) - len(flips)} of {len(rows)} claims keep their verdict across the grid"
            + (f"; the verdict changes for {', '.join(f'`{i}`' for i in flips)}." if flips else "."),
            "",
        ]
        per_run = len(runs) <= PER_RUN_COLUMNS
        labels = [_label(row["values"]) for row, _ in runs]
        shown = [v for v in VERDICTS if v != "fragile" or any(x["verdict"] == v for r in rows for x in r["runs"])]
        head = "| claim | paper | " + " | ".join(shown) + " | range of ours |"
        head += "".join(f" {_md(label)} |" for label in labels) if per_run else ""
        lines += [head, "|---|---|" + "---:|" * len(shown) + "---|" + ("---|" * len(labels) if per_run else "")]
        for r in rows:
            counts = [sum(x["verdict"] == v for x in r["runs"]) for v in shown]
            cells = f"| {_md(r['statement'])} (`{r['id']}`) | {_md(_fmt(r['paper']))} | "
            cells += " | ".join(map(str, counts)) + f" | {_md(value_range([x['ours'] for x in r['runs']]))} |"
            if per_run:
                by_label = {_label(x["values"]): x for x in r["runs"]}
                for label in labels:
                    x = by_label.get(label)
                    cells += f" {_md(_short(x['ours']))}: {x['verdict']} |" if x else " |"
            lines.append(cells)
        lines.append("")
        png = figure(index, rows, Path(page_dir) / "robustness" / f"{sweep_dir.name}.png")
        if png:
            lines += [
                f"![The measured value of each claim against {next(iter(index['grid']))}]"
                f"(robustness/{sweep_dir.name}.png)",
                "",
                "Claims whose measured value is the same in every run are not plotted.",
                "",
            ]
    return "\n".join(lines)
