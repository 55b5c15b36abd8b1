"""Chapter 5's live form: the precision a concept's feature needs (min_precision) and the occurrences it needs
(min_occurrences) only change which concepts the claims judge, so the claims are re-judged from the run's
measurements; everything else re-runs the chapter."""

from __future__ import annotations

from functok.chapters.common import View, claims_table
from functok.chapters.reactivation import analysis as ra
from functok.chapters.reactivation.claims import make_claims, make_preconditions
from functok.core.results import ChapterResult


def update(cfg, analysis: ChapterResult) -> ChapterResult:
    """The claims judged again with cfg's cheap fields, on the same measurements."""
    r = analysis
    return ChapterResult(
        r.results, make_claims(r.results, cfg), r.data, r.artifacts, r.detail, make_preconditions(r.results, cfg)
    )


VIEWS = [View("What holds", ("min_precision", "min_occurrences"), lambda cfg, a: [claims_table(a.claims)])]


def parts(cfg, analysis) -> dict:
    """What functok.book.live.form builds chapter 5's live form from (`analysis = analyze(cfg)`)."""
    return {"views": VIEWS, "update": update, "analyze": ra.analyze}
