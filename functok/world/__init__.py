"""The embedded world, from corpus to checkpoints: corpus, tokenizers, the function-token rule, loss
groups, token windows, pre-training, and read-only access to runs. Imports only `functok.book`."""
