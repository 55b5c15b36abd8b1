"""Models and hooks, activations, SAEs (registry, loading, encoding, training, quality) and the
token-feature graph. Imports `functok.world` and `functok.core`."""
