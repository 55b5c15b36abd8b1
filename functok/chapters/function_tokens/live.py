"""Chapter 1's live form: Fig 2b's rows (top_n), Fig 3's bins (n_bins) and the threshold sweep
(sweep_thresholds) redraw from the run's counts and token ids; everything else re-runs the chapter."""

from __future__ import annotations

from pathlib import Path

from functok.chapters.common import View, paper_numbers
from functok.chapters.function_tokens import analysis as ft
from functok.chapters.function_tokens import plots
from functok.core.config import ROOT
from functok.world.function_tokens import flat_tokens, token_table


def _labelled(per: dict, table) -> list:
    out = []
    for spec, p in per.items():
        out += [f"*{spec} tokenizer*", table(p)]
    return out


def top_tokens(cfg, analysis) -> list:
    """Fig 2b with cfg.top_n rows, ranked again from the run's counts."""
    paper = paper_numbers("function_tokens")["top15"]

    def table(p):
        ranking = p["_counts"].ranking()[: cfg.top_n]
        return plots.top_tokens_table({**p, "top": token_table(p["_tok"], p["_counts"], ranking)}, paper)

    return _labelled(analysis.detail["per_tokenizer"], table)


def _flat(p: dict):
    """The run's token ids (`analyze` keeps them; else read once from the cached tokens folder)."""
    if "_flat" not in p:
        p["_flat"] = flat_tokens(ROOT / Path(p["tokens"]))
    return p["_flat"]


def bursts(cfg, analysis) -> list:
    """Fig 3a/3b in cfg.n_bins bins of the run's documents (the per-document verdict does not move)."""
    out = []
    for spec, p in analysis.detail["per_tokenizer"].items():
        flat, offsets = _flat(p)
        b = {}
        for t, old in p["bursts"].items():
            if "error" in old:
                b[t] = old
                continue
            tid = ft.token_id(p["_tok"], t)
            b[t] = ft.occurrences_by_bin(flat, offsets, tid, cfg.n_bins, cfg.seed)
        q = {**p, "bursts": b}
        out += [f"*{spec} tokenizer*", plots.burst_table(q), plots.burst_figure(q, cfg.burst_tokens, cfg.n_bins)]
    return out


def sweep(cfg, analysis) -> list:
    """The threshold sensitivity table at cfg.sweep_thresholds, from the run's counts."""
    per = analysis.detail["per_tokenizer"]
    return [
        plots.sweep_table(
            {
                s: {**p, "threshold_sweep": ft.threshold_sweep(p["_counts"].counts, cfg.sweep_thresholds)}
                for s, p in per.items()
            }
        )
    ]


VIEWS = [
    View("Fig 2b: the most frequent tokens", ("top_n",), top_tokens),
    View("Fig 3: function tokens are everywhere, content tokens are bursty", ("n_bins",), bursts),
    View("How arbitrary is 40%?", ("sweep_thresholds",), sweep),
]


def parts(cfg, analysis) -> dict:
    """What functok.book.live.form builds chapter 1's live form from (`analysis = analyze(cfg)`)."""
    return {"views": VIEWS, "analyze": ft.analyze}
