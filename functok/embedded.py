"""The embedded default: corpus split and BPE tokenizer, cached under the preset's `pretrain` params.

Each artifact's cache key holds only the parameters that shape it, so changing, say, the model width
re-trains the models but reuses the tokenizer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import datasets

from .cache import cached_dir
from .config import PretrainConfig, pretrain_config


def corpus_params(cfg: PretrainConfig) -> dict:
    return {"corpus": cfg.corpus, "max_documents": cfg.max_documents, "heldout_fraction": cfg.heldout_fraction}


def tokenizer_params(cfg: PretrainConfig) -> dict:
    return {**corpus_params(cfg), "vocab_size": cfg.vocab_size}


def corpus_dir(preset: str) -> Path:
    """`train/` and `heldout/` Dataset folders (save_to_disk) of the preset's corpus."""
    cfg = pretrain_config(preset)

    def build(tmp: Path) -> None:
        from .corpus import load_corpus, split_documents

        train, held = split_documents(load_corpus(cfg.corpus, cfg.max_documents), cfg.heldout_fraction)
        train.save_to_disk(str(tmp / "train"))
        held.save_to_disk(str(tmp / "heldout"))

    return cached_dir("corpus", corpus_params(cfg), build)


@lru_cache(maxsize=8)
def documents(preset: str, split: str) -> datasets.Dataset:
    """The preset's 'train' or 'heldout' documents (columns id, text)."""
    return datasets.load_from_disk(str(corpus_dir(preset) / split))


def tokenizer_dir(preset: str) -> Path:
    """The BPE tokenizer trained on the preset's training documents (a HF tokenizer folder)."""
    cfg = pretrain_config(preset)

    def build(tmp: Path) -> None:
        from .tokenizers import train_bpe

        train_bpe(list(documents(preset, "train")["text"]), cfg.vocab_size, tmp)

    return cached_dir("tokenizer", tokenizer_params(cfg), build)
