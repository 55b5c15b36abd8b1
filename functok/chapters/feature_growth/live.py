"""Chapter 4's live form: every field needs new SAEs or new measurements, so the form shows the command
and the button that re-run the chapter; nothing is redrawn in place."""

from __future__ import annotations

from functok.book.live import Form
from functok.chapters.feature_growth import analysis as fg

VIEWS: list = []


def form(cfg, analysis, **kwargs) -> Form:
    """The live form on a run of chapter 4 (`analysis = analyze(cfg)`)."""
    return Form(cfg, analysis, VIEWS, analyze=fg.analyze, **kwargs)
