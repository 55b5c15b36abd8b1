"""Chapter feature_coverage: `analysis.analyze(cfg) -> ChapterResult` and `plots`."""
