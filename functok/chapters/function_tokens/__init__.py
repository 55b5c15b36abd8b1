"""Chapter function_tokens: `analysis.analyze(cfg) -> ChapterResult` and `plots`."""
