"""Chapter 2's live form: the frequency control's knobs (match_window, count_knots, n_bootstrap, alpha)
are re-computed from the run's per-layer degrees and token counts, and the claims judged again; every
other field needs a new pass of the model and SAEs and re-runs the chapter."""

from __future__ import annotations

import copy

from functok.book.live import Form, View
from functok.book.results import ChapterResult
from functok.chapters.common import claims_table
from functok.chapters.feature_coverage import analysis as fc
from functok.chapters.feature_coverage import plots
from functok.chapters.feature_coverage.claims import make_claims
from functok.chapters.feature_coverage.frequency import ControlParams, correct_layers, frequency_control

CONTROL = ("match_window", "count_knots", "n_bootstrap", "alpha")


def update(cfg, analysis: ChapterResult) -> ChapterResult:
    """The frequency control of every layer again (as `analyze` does it), then the claims."""
    results = copy.deepcopy(analysis.results)
    tok, is_function = analysis.detail["tokenizer"], analysis.detail["is_function"]
    order = results["layer_order"]
    for L in order:
        st = analysis.detail["per_layer"][L]
        ctl = frequency_control(st["_degree"], st["_counts"], is_function, ControlParams.of(cfg))
        m = ctl["matched"]
        for r in m["matched"] + m["unmatched"]:
            r["token"] = tok.decode([r["token_id"]])
        results["layers"][L]["frequency_control"] = ctl
    correct_layers({L: results["layers"][L]["frequency_control"] for L in order}, cfg.alpha)
    return ChapterResult(results, make_claims(results, cfg), analysis.data, analysis.artifacts, analysis.detail)


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


def form(cfg, analysis, **kwargs) -> Form:
    """The live form on a run of chapter 2 (`analysis = analyze(cfg)`)."""
    return Form(cfg, analysis, VIEWS, update=update, analyze=fc.analyze, **kwargs)
