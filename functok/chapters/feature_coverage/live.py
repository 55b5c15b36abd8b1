"""Chapter 2's live form: the frequency control's knobs (match_window, count_knots, n_bootstrap, alpha)
are re-computed from the run's per-layer degrees and token counts, and the claims judged again; every
other field needs a new pass of the model and SAEs and re-runs the chapter."""

from __future__ import annotations

import copy

from functok.chapters.common import View, claims_table
from functok.chapters.feature_coverage import analysis as fc
from functok.chapters.feature_coverage import plots
from functok.chapters.feature_coverage.claims import make_claims, make_preconditions
from functok.chapters.feature_coverage.frequency import (
    ControlParams,
    correct_layers,
    degree_regression,
    matched_pairs,
)
from functok.core.results import ChapterResult

CONTROL = ("match_window", "count_knots", "n_bootstrap", "alpha")


def _keys(cfg) -> dict[str, tuple]:
    """What each control reads: the regression the knots, the matched pairs the window; both the bootstrap."""
    boot = (cfg.n_bootstrap, cfg.seed, cfg.alpha)
    return {"regression": (cfg.count_knots, *boot), "matched": (cfg.match_window, *boot)}


def _memo(analysis: ChapterResult) -> dict:
    """Controls computed so far on this run, by (layer, control, what it reads): a knob moved back, or one
    that only one control reads, does not bootstrap the other again."""
    return analysis.detail.setdefault("_live_controls", {})


def remember_run(cfg, analysis: ChapterResult) -> None:
    """The run's own controls, as computed by `analyze` with cfg."""
    memo, keys = _memo(analysis), _keys(cfg)
    for L in analysis.results["layer_order"]:
        ctl = analysis.results["layers"][L]["frequency_control"]
        for part in keys:
            memo.setdefault((L, part, keys[part]), copy.deepcopy(ctl[part]))


def update(cfg, analysis: ChapterResult) -> ChapterResult:
    """The frequency control of every layer again (as `analyze` does it), then the claims."""
    results = copy.deepcopy(analysis.results)
    tok, is_function = analysis.detail["tokenizer"], analysis.detail["is_function"]
    order = results["layer_order"]
    memo, keys = _memo(analysis), _keys(cfg)
    for L in order:
        st = analysis.detail["per_layer"][L]
        ctl = {}
        for part, control in (("regression", degree_regression), ("matched", matched_pairs)):
            key = (L, part, keys[part])
            if key not in memo:
                memo[key] = control(st["_degree"], st["_counts"], is_function, ControlParams.of(cfg))
                if part == "matched":
                    for r in memo[key]["matched"] + memo[key]["unmatched"]:
                        r["token"] = tok.decode([r["token_id"]])
            ctl[part] = copy.deepcopy(memo[key])  # correct_layers writes into it
        results["layers"][L]["frequency_control"] = ctl
    correct_layers({L: results["layers"][L]["frequency_control"] for L in order}, cfg.alpha)
    return ChapterResult(
        results,
        make_claims(results, cfg),
        analysis.data,
        analysis.artifacts,
        analysis.detail,
        make_preconditions(results, cfg),
    )


VIEWS = [
    View(
        "Function tokens vs content tokens of the same frequency",
        CONTROL,
        lambda cfg, a: [plots.control_table(a), plots.frequency_prose(a)],
    ),
    View("Degree against occurrences", ("count_knots",), lambda cfg, a: [plots.degree_occurrence_figure(a)]),
    View(
        "Matched pairs",
        ("match_window", "n_bootstrap", "alpha"),
        lambda cfg, a: [plots.matched_figure(a), plots.matched_table(a), plots.unmatched_table(a)],
    ),
    View("What holds", CONTROL, lambda cfg, a: [claims_table(a.claims)]),
]


def parts(cfg, analysis) -> dict:
    """What functok.book.live.form builds chapter 2's live form from (`analysis = analyze(cfg)`)."""
    remember_run(cfg, analysis)
    return {"views": VIEWS, "update": update, "analyze": analyze}


def analyze(cfg) -> ChapterResult:
    """A new run's measurements, its controls remembered."""
    analysis = fc.analyze(cfg)
    remember_run(cfg, analysis)
    return analysis
