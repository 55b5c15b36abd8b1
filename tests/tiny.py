"""A tiny `pretrain` preset in a temporary cache, shared by the tests that train models."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

import functok.book.cache
import functok.book.config
import functok.book.registry
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


def tiny_neox(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer GPT-NeoX (Pythia's architecture) with GPT-2's tokenizer, saved in `folder`."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from functok.world.tokenizers import gpt2_tokenizer

    tok = gpt2_tokenizer()
    conf = GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        rotary_pct=0.25,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(conf)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
