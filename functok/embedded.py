"""The embedded default: corpus split and BPE tokenizer, cached under the `pretrain` params.

Every function takes a preset name or a `PretrainConfig` (a preset with CLI overrides), so chapters
and `functok pretrain` share one implementation and one cache. Each artifact's cache key holds only
the parameters that shape it, so changing, say, the model width re-trains the models but reuses the
tokenizer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import datasets

from .cache import cached_dir
from .config import ParamError, PretrainConfig, pretrain_config


def _cfg(spec: str | PretrainConfig) -> PretrainConfig:
    return spec if isinstance(spec, PretrainConfig) else pretrain_config(spec)


def corpus_params(cfg: PretrainConfig) -> dict:
    return {"corpus": cfg.corpus, "max_documents": cfg.max_documents, "heldout_fraction": cfg.heldout_fraction}


def tokenizer_params(cfg: PretrainConfig) -> dict:
    return {**corpus_params(cfg), "vocab_size": cfg.vocab_size}


def corpus_dir(spec: str | PretrainConfig) -> Path:
    """`train/` and `heldout/` Dataset folders (save_to_disk) of the corpus."""
    cfg = _cfg(spec)

    def build(tmp: Path) -> None:
        from .corpus import load_corpus, split_documents

        train, held = split_documents(load_corpus(cfg.corpus, cfg.max_documents), cfg.heldout_fraction)
        train.save_to_disk(str(tmp / "train"))
        held.save_to_disk(str(tmp / "heldout"))

    return cached_dir("corpus", corpus_params(cfg), build)


@lru_cache(maxsize=8)
def _load(folder: str) -> datasets.Dataset:
    return datasets.load_from_disk(folder)


def documents(spec: str | PretrainConfig, split: str) -> datasets.Dataset:
    """The 'train' or 'heldout' documents (columns id, text)."""
    if split not in ("train", "heldout"):
        raise ParamError(f"split: got {split!r}; expected 'train' or 'heldout'")
    return _load(str(corpus_dir(spec) / split))


documents.cache_clear = _load.cache_clear  # type: ignore[attr-defined]


def tokenizer_dir(spec: str | PretrainConfig) -> Path:
    """The BPE tokenizer trained on the training documents (a HF tokenizer folder)."""
    cfg = _cfg(spec)

    def build(tmp: Path) -> None:
        from .tokenizers import train_bpe

        train_bpe(list(documents(cfg, "train")["text"]), cfg.vocab_size, tmp)

    return cached_dir("tokenizer", tokenizer_params(cfg), build)
