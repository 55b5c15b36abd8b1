"""The foundation every layer stands on: config schema and presets, the artifact cache, results files
and their provenance, the paper's numbers. Imports nothing else of functok."""
