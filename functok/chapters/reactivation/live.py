"""Chapter 5's live form: the precision a concept's feature needs (min_precision) only changes which
concepts the claims judge, so the claims are re-judged from the run's measurements; everything else
re-runs the chapter."""

from __future__ import annotations

from functok.book.live import Form, View
from functok.book.results import ChapterResult
from functok.chapters.common import claims_table
from functok.chapters.reactivation import analysis as ra
from functok.chapters.reactivation.claims import make_claims


def update(cfg, analysis: ChapterResult) -> ChapterResult:
    """The claims judged again with cfg's cheap fields, on the same measurements."""
    r = analysis
    return ChapterResult(r.results, make_claims(r.results, cfg), r.data, r.artifacts, r.detail)


VIEWS = [View("What holds", ("min_precision",), lambda cfg, a: [claims_table(a.claims)])]


def form(cfg, analysis, **kwargs) -> Form:
    """The live form on a run of chapter 5 (`analysis = analyze(cfg)`)."""
    return Form(cfg, analysis, VIEWS, update=update, analyze=ra.analyze, **kwargs)
