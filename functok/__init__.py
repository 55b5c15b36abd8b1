"""functok: reproduce 'Memory Retrieval and Consolidation in LLMs through Function Tokens'.

Four layers, imports flowing one way (tests/test_layers.py checks it):

    chapters -> sae -> world -> book

- `functok.book`: configs, validation and presets, the chapter registry, the artifact cache, results
  files, the CLI, running notebooks and building the site. Imports nothing heavy.
- `functok.world`: the embedded world from corpus to checkpoints: corpus, tokenizers, the
  function-token rule, loss groups, token windows, pre-training and read-only access to runs.
- `functok.sae`: models and hooks, activations, SAE loading/encoding/training/quality, the
  token-feature graph.
- `functok.chapters.<chapter>`: each chapter's analysis, claims and plots; `chapters.common` holds
  what they share. Chapters never import each other.
"""

__version__ = "0.1.0"
