"""Activations at hooks: residual streams of several layers in one forward pass that stops at the
deepest (`resid_activations`), activations at one hook for SAE training and evaluation
(`activations_at`, `training_activations`, `activation_sample`), and the model and samples kept for
reuse between SAEs of one checkpoint (`clear_memory()` forgets them; `DEVICE` says where SAEs run).

How to run it (checked with TransformerLens 3.9 and transformers 5.24, offline):

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from functok.core.cache import relpath
from functok.core.config import ParamError
from functok.sae.models import hook_layer, load_model
from functok.world.tokenizers import gpt2_tokenizer
from functok.world.windows import load_windows


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
    layers = [hook_layer(n, strict=False) for n in names]
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


def save_tiny_gemma2(
    folder: str | Path,
    n_layers: int = 4,
    d_model: int = 64,
    seed: int = 0,
    sliding_window: int = 16,
    max_positions: int = 256,
) -> Path:
    """A random Gemma-2 checkpoint of the same architecture as Gemma-2-9B, only tiny, saved with
    GPT-2's tokenizer (offline) to `folder`, loadable by `functok.sae.models.load_model`. For tests."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tok = gpt2_tokenizer()
    cfg = Gemma2Config(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=d_model // 4,
        max_position_embeddings=max_positions,
        sliding_window=sliding_window,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Gemma2ForCausalLM(cfg).eval()
    folder = Path(folder)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


_MODELS: dict[str, Any] = {}


def model_for(checkpoint, model=None):
    """The bridge for a checkpoint (the last one loaded is kept: searches evaluate it many times)."""
    if model is not None:
        return model
    key = str(checkpoint)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = load_model(checkpoint)
    return _MODELS[key]


def context_of(windows) -> int:
    """Window length of a token-windows folder (one row read) or array."""
    if isinstance(windows, (str, Path)):
        import datasets

        ds = datasets.load_from_disk(str(windows))
        return len(ds[0]["input_ids" if "input_ids" in ds.column_names else "tokens"])
    return int(np.asarray(windows).shape[1])


def windows_id(windows) -> str:
    if isinstance(windows, (str, Path)):
        return relpath(windows)
    import hashlib

    arr = np.ascontiguousarray(np.asarray(windows, dtype=np.int64))
    return "sha1:" + hashlib.sha1(arr.tobytes()).hexdigest()[:16] + f":{arr.shape}"


def checkpoint_id(checkpoint) -> str:
    spec = str(checkpoint)
    return relpath(spec) if Path(spec).expanduser().exists() else spec


def excluded_ids(model) -> list[int]:
    """Token ids whose positions are left out: BOS (the document separator of our windows)."""
    tok = getattr(model, "tokenizer", None)
    bos = getattr(tok, "bos_token_id", None) if tok is not None else None
    return [] if bos is None else [int(bos)]


def torch_bool(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


def clear_memory() -> None:
    """Forget the models and activations kept for reuse."""
    _MODELS.clear()
    _SAMPLES.clear()


DEVICE: str | None = None  # where SAEs train and run; None: a CUDA GPU if there is one, else the CPU


def device() -> str:
    if DEVICE is not None:
        return DEVICE
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_device(model):
    return next(model.parameters()).device


def activations_at(model, hook_name: str, x, batch_size: int = 16):
    """Activations [n_windows, context, d] at `hook_name` for token windows x (no gradients; the
    forward stops after the hook's layer)."""
    import torch

    layer = hook_layer(hook_name)
    n_layers = model.cfg.n_layers
    if layer >= n_layers:
        raise ParamError(
            f"hook_name: {hook_name!r} names layer {layer}; the model has {n_layers} layers (0..{n_layers - 1})"
        )
    stop = layer + 1 if layer + 1 < n_layers else None
    dev = model_device(model)
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            _, cache = model.run_with_cache(x[i : i + batch_size].to(dev), names_filter=[hook_name], stop_at_layer=stop)
            out.append(cache[hook_name].float().cpu())
    return torch.cat(out) if out else torch.zeros(0, x.shape[1], model.cfg.d_model)


@dataclass
class ActivationSample:
    """Activations at a hook for a set of (window, position) pairs, and the token at each."""

    acts: Any  # float tensor [n, d]
    tokens: np.ndarray  # [n] token id at each position
    window_index: np.ndarray  # [n]
    position: np.ndarray  # [n]


def sample_positions(x, n: int, seed: int, exclude: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """n (window, position) pairs drawn uniformly without replacement from the non-excluded positions
    of windows x (all of them if there are fewer), sorted."""
    xa = np.asarray(x)
    ok = ~np.isin(xa, exclude) if exclude else np.ones(xa.shape, dtype=bool)
    flat = np.flatnonzero(ok.reshape(-1))
    if n < flat.size:
        flat = np.sort(np.random.default_rng(seed).choice(flat, size=n, replace=False))
    return flat // xa.shape[1], flat % xa.shape[1]


_SAMPLES: dict[tuple, ActivationSample] = {}


def activation_sample(
    checkpoint, hook_name: str, windows, n_activations: int, seed: int = 0, model=None, keep: int = 2
) -> ActivationSample:
    """N activations sampled from the windows' non-BOS positions (seeded; the same positions for every
    checkpoint with the same tokenizer), kept in memory for reuse (the last `keep` samples)."""
    key = (str(checkpoint), hook_name, windows_id(windows), int(n_activations), int(seed))
    if key in _SAMPLES:
        return _SAMPLES[key]
    model = model_for(checkpoint, model)
    x = load_windows(windows)
    wi, pos = sample_positions(x, n_activations, seed, excluded_ids(model))
    rows = np.unique(wi)
    acts = activations_at(model, hook_name, x[rows])
    local = np.searchsorted(rows, wi)
    sample = ActivationSample(acts[local, pos].contiguous(), np.asarray(x)[wi, pos], wi, pos)
    while len(_SAMPLES) >= keep:
        _SAMPLES.pop(next(iter(_SAMPLES)))
    _SAMPLES[key] = sample
    return sample


def training_activations(checkpoint, hook_name: str, windows, n_tokens: int, model=None):
    """Activations [<= n_tokens, d] at the non-BOS positions of windows taken in a fixed seeded order
    until n_tokens positions are covered: the training set of every SAE trained on this (checkpoint,
    hook, windows, n_tokens). Fewer windows than needed: all of them (training then cycles)."""
    key = (str(checkpoint), hook_name, windows_id(windows), int(n_tokens), "train")
    if key in _SAMPLES:
        return _SAMPLES[key].acts
    model = model_for(checkpoint, model)
    x = load_windows(windows)
    xa = np.asarray(x)
    take, keep = training_rows(xa, excluded_ids(model), n_tokens)
    acts = activations_at(model, hook_name, x[take])
    flat = acts[torch_bool(keep)][:n_tokens].contiguous()
    while len(_SAMPLES) >= 2:
        _SAMPLES.pop(next(iter(_SAMPLES)))
    _SAMPLES[key] = ActivationSample(flat, xa[take][keep][:n_tokens], np.zeros(0, np.int64), np.zeros(0, np.int64))
    return flat


def training_rows(xa: np.ndarray, excl: list[int], n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(the windows an SAE trains on, sorted: a fixed seeded order until n_tokens non-excluded positions are
    covered; the mask of their non-excluded positions)."""
    order = np.random.default_rng(0).permutation(len(xa))
    counts = (~np.isin(xa[order], excl)).sum(1) if excl else np.full(len(xa), xa.shape[1])
    k = int(np.searchsorted(np.cumsum(counts), n_tokens)) + 1
    take = np.sort(order[:k])
    keep = ~np.isin(xa[take], excl) if excl else np.ones(xa[take].shape, dtype=bool)
    return take, keep
