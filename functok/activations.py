"""Residual-stream activations of several layers in one forward pass that stops at the deepest.

How to run it (checked with TransformerLens 3.9 and transformers 5.24, offline):

    from functok.models import load_model                     # TransformerBridge.boot_transformers
    model = load_model("path/to/hf_checkpoint_folder")        # folder with config, weights, tokenizer
    acts = resid_activations(model, tokens, ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"])
    acts["blocks.2.hook_resid_post"]                          # Tensor[batch, pos, d_model]

- The model may be a `TransformerBridge` (any architecture TransformerLens can boot from a Hugging
  Face folder or hub name, Gemma-2 included: the bridge wraps the HF modules, so Gemma-2's sliding
  window, soft-capping and embedding scaling are the HF implementation's) or a legacy
  `HookedTransformer` (e.g. `HookedTransformer(HookedTransformerConfig(...))` with random weights).
  Both have `run_with_cache(tokens, names_filter=[...], stop_at_layer=L)`.
- `stop_at_layer=L` runs blocks 0..L-1 and stops (the bridge raises an internal StopAtLayerException
  after block L-1; later blocks, the final norm and the unembedding are not run), so asking for
  layers 9, 20 and 31 of Gemma-2-9B costs 32 of its 42 blocks and no 256,000-wide logits.
- `blocks.{L}.hook_resid_post` is the output of block L, i.e. the HF model's
  `output_hidden_states[L + 1]` for every block but the last (HF replaces its last hidden state by the
  final-norm output); `tests/test_saes.py` checks this on a tiny random Gemma-2.
- Tokens are taken as given (no BOS is added); windows are expected to be full (no padding mask).
- For a tiny random Gemma-2 checkpoint to test with offline, see `save_tiny_gemma2`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def hook_layer(hook_name: str) -> int | None:
    """The block index of a 'blocks.{L}.…' hook name; None for hooks outside the blocks."""
    parts = hook_name.split(".")
    if len(parts) >= 3 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return None


def resid_activations(model, tokens, hook_names: list[str]) -> dict[str, Any]:
    """{hook_name: Tensor[batch, pos, d_model]} for token ids tokens LongTensor[batch, pos], from one
    forward pass without gradients that stops after the deepest block named (if every hook is inside
    a block). Tensors are in the model's dtype, on its device."""
    import difflib

    import torch

    names = list(dict.fromkeys(hook_names))
    if not names:
        raise ValueError("hook_names: got an empty list; expected at least one hook name")
    known = model.hook_dict
    for n in names:
        if n not in known:
            close = difflib.get_close_matches(n, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"hook_names: '{n}' is not a hook of this model{hint}")
    layers = [hook_layer(n) for n in names]
    n_layers = model.cfg.n_layers
    stop = None
    if all(layer is not None for layer in layers):
        deepest = max(layers)
        if deepest >= n_layers:
            raise ValueError(f"hook_names: layer {deepest} requested; the model has {n_layers} layers")
        stop = deepest + 1 if deepest + 1 < n_layers else None
    tokens = torch.as_tensor(tokens)
    if tokens.dim() != 2:
        raise ValueError(f"tokens: got shape {tuple(tokens.shape)}; expected [batch, pos]")
    device = getattr(model.cfg, "device", None) or next(model.parameters()).device
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.to(device), names_filter=names, stop_at_layer=stop)
    return {n: cache[n] for n in names}


def save_tiny_gemma2(folder: str | Path, n_layers: int = 4, d_model: int = 64, seed: int = 0,
                     sliding_window: int = 16, max_positions: int = 256) -> Path:
    """A random Gemma-2 checkpoint of the same architecture as Gemma-2-9B, only tiny, saved with
    GPT-2's tokenizer (offline) to `folder`, loadable by `functok.models.load_model`. For tests."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from .tokenizers import gpt2_tokenizer

    tok = gpt2_tokenizer()
    cfg = Gemma2Config(
        vocab_size=len(tok), hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=d_model // 4, max_position_embeddings=max_positions,
        sliding_window=sliding_window, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = Gemma2ForCausalLM(cfg).eval()
    folder = Path(folder)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
