"""The embedded default: corpus split and BPE tokenizer, cached under the `pretrain` params.

Every function takes a preset name or a `PretrainConfig` (a preset with CLI overrides), so chapters
and `functok pretrain` share one implementation and one cache. Each artifact's cache key holds only
the parameters that shape it, so changing, say, the model width re-trains the models but reuses the
tokenizer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable

import datasets

from functok.core.cache import cached_dir
from functok.core.config import ParamError
from functok.world.config import PretrainConfig, pretrain_config
from functok.world.corpus import corpus_key, load_corpus, split_documents

BOS, EOS = "<|bos|>", "<|endoftext|>"  # the embedded BPE's special tokens


def as_pretrain_config(spec: str | PretrainConfig) -> PretrainConfig:
    """A preset name or an already resolved PretrainConfig (a preset with CLI overrides)."""
    return spec if isinstance(spec, PretrainConfig) else pretrain_config(spec)


def corpus_params(cfg: PretrainConfig) -> dict:
    """The corpus split's cache key: 'embedded' as it always was; local files by their content."""
    return {
        "corpus": corpus_key(cfg.corpus),
        "max_documents": cfg.max_documents,
        "heldout_fraction": cfg.heldout_fraction,
    }


def tokenizer_params(cfg: PretrainConfig) -> dict:
    return {**corpus_params(cfg), "vocab_size": cfg.vocab_size}


def corpus_dir(spec: str | PretrainConfig) -> Path:
    """`train/` and `heldout/` Dataset folders (save_to_disk) of the corpus."""
    cfg = as_pretrain_config(spec)

    def build(tmp: Path) -> None:
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
    cfg = as_pretrain_config(spec)

    def build(tmp: Path) -> None:
        train_bpe(list(documents(cfg, "train")["text"]), cfg.vocab_size, tmp)

    return cached_dir("tokenizer", tokenizer_params(cfg), build)


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: Path) -> Path:
    """Train a byte-level BPE (GPT-2 style pre-tokenization) and save it as a HF tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    fast.save_pretrained(str(out_dir))
    return Path(out_dir)
