"""Chapter loss_split: `analysis.analyze(cfg) -> ChapterResult` and `plots`."""
