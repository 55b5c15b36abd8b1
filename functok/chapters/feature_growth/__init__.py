"""Chapter feature_growth: `analysis.analyze(cfg) -> ChapterResult` and `plots`."""
