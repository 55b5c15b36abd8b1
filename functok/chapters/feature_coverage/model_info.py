"""Chapter 2's model, read without loading weights: its reference (functok.world.models) and the shapes the
plan needs (layers, widths, vocabulary, parameter count), from the embedded preset or a config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from functok.core.config import ParamError
from functok.world.config import pretrain_config
from functok.world.models import ModelRef, model_ref


@dataclass
class ModelInfo:
    """The chapter's model: its reference (functok.world.models) and the shapes the plan needs."""

    ref: ModelRef
    checkpoint: str  # folder or hub name ("" for embedded until trained)
    n_layers: int
    d_model: int
    vocab_size: int
    n_params: int
    n_heads: int = 4
    d_mlp: int | None = None
    context_size: int | None = None  # embedded: the preset's training context


FACTS = ("n_layers", "d_model", "vocab_size", "n_params", "n_heads", "d_mlp")  # what ModelInfo needs


def model_info(cfg) -> ModelInfo:
    ref = model_ref(cfg.model)
    if ref.embedded:
        p = pretrain_config(cfg.preset)
        d = p.depths[1]
        n = p.vocab_size * p.d_model * 2 + d * (4 * p.d_model**2 + 3 * p.d_model * p.d_mlp)
        return ModelInfo(ref, "", d, p.d_model, p.vocab_size, n, p.n_heads, p.d_mlp, p.context_size)
    path = ref.hf_folder()
    if path is not None:
        c = json.loads((path / "config.json").read_text())
        return _info_from_hf(ref, str(path), c, path)
    if ref.kind != "hub":
        raise ParamError(f"model: '{cfg.model}' has no config.json; expected a Hugging Face checkpoint folder")
    if all(k in ref.facts for k in FACTS):
        return ModelInfo(ref, cfg.model, **{k: ref.facts[k] for k in FACTS})
    from transformers import (
        AutoConfig,  # online only (config validation refused hub names offline)
    )

    return _info_from_hf(ref, cfg.model, AutoConfig.from_pretrained(cfg.model).to_dict(), None)


def _info_from_hf(ref: ModelRef, checkpoint: str, c: dict, folder: Path | None) -> ModelInfo:
    c = c.get("text_config", c) if "num_hidden_layers" not in c else c
    L, d = int(c["num_hidden_layers"]), int(c["hidden_size"])
    mlp, V = int(c.get("intermediate_size") or 4 * d), int(c["vocab_size"])
    n = V * d * (1 if c.get("tie_word_embeddings", True) else 2) + L * (4 * d * d + 3 * d * mlp)
    if folder is not None:  # weights on disk: bytes / bytes per parameter
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        per = 2 if str(c.get("torch_dtype") or c.get("dtype") or "float32") in ("bfloat16", "float16") else 4
        n = size // per if size else n
    return ModelInfo(ref, checkpoint, L, d, V, int(n), int(c.get("num_attention_heads", 4)), mlp)
