"""Chapter 3's live form: the training-log smoothing (log_smoothing), the convergence rule
(converge_fraction) and the checkpoints the claims over training need (min_checkpoints) are applied again
to the run's losses; every other field needs new evaluations and re-runs the chapter."""

from __future__ import annotations

from functok.chapters.common import View, claims_table
from functok.chapters.loss_split import analysis as ls
from functok.chapters.loss_split import plots
from functok.chapters.loss_split.claims import convergence, make_claims, make_preconditions
from functok.chapters.loss_split.stats import smooth_log
from functok.core.results import ChapterResult

RULES = ("min_checkpoints", "converge_fraction", "log_smoothing")


def update(cfg, analysis: ChapterResult) -> ChapterResult:
    """Smoothed logs, convergence steps and claims again, on the same held-out losses and training logs."""
    per = {}
    for name, p in analysis.detail["models"].items():
        q = dict(p)
        if q["log"] is not None:
            q["log"] = {**q["log"], "smooth": smooth_log(q["log"]["raw"], cfg.log_smoothing)}
        q["convergence"] = convergence(q, cfg)
        per[name] = q
    results = {**analysis.results, "convergence": {n: p["convergence"] for n, p in per.items()}}
    claims = make_claims(per, analysis.detail["scaling"], cfg)
    detail = {**analysis.detail, "models": per}
    return ChapterResult(results, claims, analysis.data, analysis.artifacts, detail, make_preconditions(per, cfg))


VIEWS = [
    View("Fig 9a/9b: the loss of each group over training", ("log_smoothing",), lambda c, a: [plots.group_curves(a)]),
    # Fig 9c marks the held-out convergence steps; the table adds the smoothed training log's
    View("Fig 9c: when each loss converges", ("converge_fraction",), lambda c, a: [plots.next_token_curves(a)]),
    View(
        "Convergence steps, held out and in the training log",
        ("converge_fraction", "log_smoothing"),
        lambda c, a: [plots.convergence_table(a)],
    ),
    View("What holds", RULES, lambda c, a: [claims_table(a.claims)]),
]


def parts(cfg, analysis) -> dict:
    """What functok.book.live.form builds chapter 3's live form from (`analysis = analyze(cfg)`)."""
    return {"views": VIEWS, "update": update, "analyze": ls.analyze}
