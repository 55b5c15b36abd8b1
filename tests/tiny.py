"""A tiny `pretrain` preset in a temporary cache, shared by the tests that train models."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

import functok.chapters.registry
import functok.core.cache
import functok.core.config
import functok.world.embedded

# 40 documents, a 300-token BPE, two 16-wide models of 1 and 2 layers, 30 steps: seconds to train
PRETRAIN = {
    "max_documents": 40,
    "heldout_fraction": 0.2,
    "vocab_size": 300,
    "d_model": 16,
    "n_heads": 2,
    "d_mlp": 32,
    "depths": [1, 2],
    "context_size": 32,
    "batch_size": 4,
    "train_tokens": 4 * 32 * 30,
    "n_checkpoints": 6,
    "warmup_fraction": 0.1,
    "lr": 1e-2,
    "min_lr": 1e-3,
}


@contextmanager
def tiny_preset(pretrain: dict = PRETRAIN, **sections):
    """Yield a temporary folder holding preset 'tiny' (presets/tiny.yaml: `pretrain` and any chapter
    `sections`) and the artifact cache (cache/); single-threaded, so results do not depend on the load."""
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "presets").mkdir()
        (d / "presets" / "tiny.yaml").write_text(
            yaml.safe_dump({"description": "tiny", "cost": {}, "needs": "", "pretrain": pretrain, **sections})
        )
        mp.setenv("FUNCTOK_PRESETS", str(d / "presets"))
        mp.setenv("FUNCTOK_CACHE", str(d / "cache"))
        mp.setenv("FUNCTOK_THREADS", "1")
        functok.world.embedded.documents.cache_clear()
        try:
            yield d
        finally:
            functok.world.embedded.documents.cache_clear()


def tiny_causal_lm(
    folder: Path, arch: str = "llama", n_layers: int = 3, tok=None, d_model: int = 32, seed: int = 0
) -> Path:
    """A random tiny causal LM saved in `folder` with its tokenizer (GPT-2's unless `tok`): arch 'llama' (the
    embedded models' and SmolLM2's), 'gemma3' (Gemma-3-270M's: sliding window, q/k norms) or 'gpt_neox'
    (Pythia's). `config.architectures` is set, as TransformerLens's bridge needs for Gemma-3."""
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from functok.world.tokenizers import gpt2_tokenizer

    tok = tok if tok is not None else gpt2_tokenizer()
    shape = dict(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    if arch == "gpt_neox":
        conf, cls = GPTNeoXConfig(rotary_pct=0.25, **shape), GPTNeoXForCausalLM
    elif arch == "gemma3":
        conf = Gemma3TextConfig(
            num_key_value_heads=1, head_dim=16, sliding_window=8, pad_token_id=tok.eos_token_id, **shape
        )
        cls = Gemma3ForCausalLM
    elif arch == "llama":
        conf = LlamaConfig(num_key_value_heads=1, tie_word_embeddings=False, pad_token_id=tok.eos_token_id, **shape)
        cls = LlamaForCausalLM
    else:
        raise ValueError(f"arch: got {arch!r}; expected 'llama', 'gemma3' or 'gpt_neox'")
    torch.manual_seed(seed)
    model = cls(conf)
    model.config.architectures = [cls.__name__]
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def tiny_neox(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer, 16-wide GPT-NeoX (Pythia's architecture) with GPT-2's tokenizer, saved in `folder`."""
    return tiny_causal_lm(folder, "gpt_neox", n_layers=2, d_model=16, seed=seed)
