"""The embedded world, from corpus to checkpoints: corpus, tokenizers, the function-token rule, loss
groups, token windows, pre-training, read-only access to runs, and the one model resolver. Imports only
`functok.core`."""
