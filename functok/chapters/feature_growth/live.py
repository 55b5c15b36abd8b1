"""Chapter 4's live form: every field needs new SAEs or new measurements, so the form shows the command
and the button that re-run the chapter; nothing is redrawn in place."""

from __future__ import annotations

from functok.chapters.feature_growth import analysis as fg

VIEWS: list = []


def parts(cfg, analysis) -> dict:
    """What functok.book.live.form builds chapter 4's live form from (`analysis = analyze(cfg)`)."""
    return {"views": VIEWS, "analyze": fg.analyze}
