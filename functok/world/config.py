"""The world's config: the corpus fields every chapter that reads documents shares, and the preset's
`pretrain` section (`PretrainConfig`), which defines what 'embedded' means for corpus, tokenizer and models.
Imports nothing heavy: validation must answer in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from functok.core.config import ChapterConfig, param, resolve_config


@dataclass
class CorpusFields:
    """The documents a run reads (a shared field group: chapters inherit it and `retune` its defaults)."""

    corpus: str = param(
        "embedded",
        "documents: 'embedded' (the preset's corpus), a local .txt/.jsonl/.parquet path or glob, or a hub data set "
        "'name:split'",
        kind="corpus",
    )
    max_documents: int = param(0, "use only the first N documents of the corpus (0: all)", lo=0)


@dataclass
class PretrainConfig(CorpusFields, ChapterConfig):
    """The embedded default: corpus, BPE tokenizer and two Llama models pre-trained from scratch."""

    chapter: ClassVar[str] = "pretrain"

    heldout_fraction: float = param(0.02, "share of documents held out from training", lo=0.001, hi=0.5)
    vocab_size: int = param(
        4096, "vocabulary size of the BPE tokenizer trained on the training documents", lo=260, hi=200_000
    )
    coverage_threshold: float = param(
        0.40, "function tokens: the most frequent tokens covering this share of occurrences", lo=0.01, hi=0.99
    )
    d_model: int = param(128, "model width (both depths)", lo=8, hi=8192)
    n_heads: int = param(4, "attention heads", lo=1, hi=128)
    d_mlp: int = param(352, "SwiGLU hidden width", lo=8, hi=65536)
    depths: list = param(
        [2, 8], "number of layers of each model: the shallow and the deep one", kind="depths", min_items=2
    )
    context_size: int = param(256, "training context in tokens", lo=8, hi=8192)
    batch_size: int = param(8, "sequences per optimizer step", lo=1, hi=4096)
    train_tokens: int = param(
        6_000_000, "tokens each model trains on (steps = tokens / (batch_size * context_size))", lo=1000
    )
    lr: float = param(2e-3, "peak learning rate (AdamW)", lo=1e-6, hi=1.0)
    min_lr: float = param(3e-4, "learning rate at the end of the cosine decay", lo=0.0, hi=1.0)
    warmup_fraction: float = param(0.1, "share of steps with linear warm-up", lo=0.0, hi=0.5)
    weight_decay: float = param(0.1, "AdamW weight decay", lo=0.0, hi=1.0)
    n_checkpoints: int = param(14, "checkpoints on a log-spaced schedule from step 0 to the last step", lo=2, hi=200)


def pretrain_config(preset: str) -> PretrainConfig:
    """The preset's pretraining section: what 'embedded' means for corpus, tokenizer and models."""
    return resolve_config(PretrainConfig, preset)  # type: ignore[return-value]
