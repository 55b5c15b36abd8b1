"""Chapter reactivation: `analysis.analyze(cfg) -> ChapterResult` and `plots`."""
