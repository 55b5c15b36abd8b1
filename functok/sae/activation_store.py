"""Stored activations: one forward pass per (model, token windows) keeps the residual stream of every
layer any chapter asks for, so SAE training at three depths and three seeds, and the graph pass, read
them back instead of running the model again.

    store = activation_store("path/to/hf_folder", "path/to/windows", [4, 9, 13], dtype="bfloat16")
    acts = read_activations(store, "blocks.9.hook_resid_post", rows=[0, 5])   # float32 [2, ctx, d_model]
    store_info(store)["check"]                  # the stored values against a float32 forward

- The forward is the Hugging Face model itself (transformers), with a forward hook on each requested
  decoder layer and a stop after the deepest, so later blocks, the final norm and the unembedding never
  run. `blocks.{L}.hook_resid_post` is the output of decoder layer L, what TransformerLens's bridge
  names so (`tests/sae/test_activation_store.py` checks the two agree). Measured on 2 CPU cores
  (2026-12-06, SmolLM2 to layer 15): about 2,300 tokens/s in bfloat16, 1,180 in float32, against 590
  through the bridge in float32; bfloat16 matmuls run 2.7x the float32 rate on this CPU (avx512_bf16).
  `book/profile.json` (functok.book.profile) gives each store's rate against a matmul.
- `dtype` is the dtype of the forward and of the files: "bfloat16" (2 bytes a value; the models were
  trained in it) or "float32". Whether the numbers allow bfloat16 is measured, not assumed: the first
  batch is also run in float32, and `store.json` records the relative error of the stored values
  (||a_stored - a_fp32|| / ||a_fp32|| over non-BOS positions, per layer), the same per position (median, 99th
  percentile, largest: the aggregate is dominated by the few positions with massive activations; SmolLM2's graph
  windows at layer 15: 7.9% overall from one position at 35%, median 1.05%, p99 2.8%) and the largest |value|.
- Files: `<hook_name>.npy` per layer, [n_windows, context, d_model], written through a memory map into
  the cache entry's temporary folder (`functok.core.cache.cached_dir`: locked, atomic), bfloat16 kept as
  its 16 raw bits (numpy has no bfloat16). Readers memory-map them, so a store larger than memory is fine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from functok.core.cache import cache_path, cached_dir, complete, relpath
from functok.core.config import ParamError
from functok.sae.activations import checkpoint_id, excluded_ids, torch_bool, training_rows, windows_id
from functok.sae.generation import decoder_layers, load_generator
from functok.sae.models import hook_layer, hook_name
from functok.world.windows import load_windows

STORE_VERSION = 1  # bump when a change here changes what a store holds
DTYPES = ("bfloat16", "float32")


class _Stop(Exception):
    """Raised by the deepest layer's hook: the forward has what it needs."""


def load_hf(checkpoint: str, dtype: str):
    """The checkpoint's causal LM (transformers), in eval mode, in `dtype` ("bfloat16" or "float32")."""
    import torch

    return load_generator(checkpoint, "cpu", getattr(torch, dtype))


def hf_resid(model, tokens, layers: list[int]) -> dict:
    """{layer: Tensor[batch, pos, d_model]}: the output of each decoder layer named, from one forward
    without gradients that stops after the deepest (an exception raised by its hook)."""
    import torch

    blocks = decoder_layers(model)
    bad = [L for L in layers if not 0 <= L < len(blocks)]
    if bad:
        raise ParamError(f"layers: layer {bad[0]} requested; the model has {len(blocks)} layers")
    out: dict = {}
    deepest = max(layers)

    def grab(L):
        def hook(_module, _inputs, output):
            out[L] = output[0] if isinstance(output, tuple) else output
            if L == deepest:
                raise _Stop

        return hook

    handles = [blocks[L].register_forward_hook(grab(L)) for L in set(layers)]
    try:
        with torch.no_grad():
            model(input_ids=torch.as_tensor(tokens), use_cache=False)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return out


def store_params(checkpoint, windows, layers: list[int], dtype: str) -> dict:
    return {
        "version": STORE_VERSION,
        "checkpoint": checkpoint_id(checkpoint),
        "windows": windows_id(windows),
        "layers": sorted(set(int(L) for L in layers)),
        "dtype": dtype,
    }


def activation_store(
    checkpoint, windows, layers: list[int], dtype: str = "bfloat16", batch_size: int = 8, progress: bool = True
) -> Path:
    """The cache entry holding every requested layer's activations over the windows (see the module)."""
    if dtype not in DTYPES:
        raise ParamError(f"activation_store: got {dtype!r}; expected one of {', '.join(DTYPES)}")
    if not layers:
        raise ParamError("layers: got an empty list; expected at least one layer to store")
    params = store_params(checkpoint, windows, layers, dtype)

    def build(tmp: Path) -> None:
        _build(tmp, checkpoint, windows, params, batch_size, progress)

    return cached_dir("activation_stores", params, build)


def _build(tmp: Path, checkpoint, windows, params: dict, batch_size: int, progress: bool) -> None:
    import torch
    from tqdm import tqdm

    layers, dtype = params["layers"], params["dtype"]
    x = torch.as_tensor(load_windows(windows))
    model = load_hf(checkpoint, dtype)
    d = int(model.config.get_text_config().hidden_size)
    excl = excluded_ids(_Tok(checkpoint))
    files = {
        L: np.lib.format.open_memmap(
            tmp / f"{hook_name(L)}.npy",
            mode="w+",
            dtype=np.uint16 if dtype == "bfloat16" else np.float32,
            shape=(len(x), x.shape[1], d),
        )
        for L in layers
    }
    t0 = time.perf_counter()
    bar = tqdm(total=len(x), desc="store", unit=" win", mininterval=5, disable=not progress, file=sys.stderr)
    first = None
    for i in range(0, len(x), batch_size):
        acts = hf_resid(model, x[i : i + batch_size], layers)
        for L, a in acts.items():
            files[L][i : i + len(a)] = a.view(torch.int16).numpy().view(np.uint16) if dtype == "bfloat16" else a.numpy()
        first = acts if first is None else first
        bar.update(len(acts[layers[0]]))
    seconds = time.perf_counter() - t0
    bar.close()
    for f in files.values():
        f.flush()
    del files
    check = _precision_check(checkpoint, x[:batch_size], layers, first, excl, model if dtype == "float32" else None)
    info = {
        "layers": layers,
        "hook_names": [hook_name(L) for L in layers],
        "dtype": dtype,
        "n_windows": int(len(x)),
        "context_size": int(x.shape[1]),
        "d_model": d,
        "excluded_token_ids": excl,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(x.numel() / max(seconds, 1e-9), 1),
        "deepest_layer": max(layers),
        "threads": torch.get_num_threads(),
        "windows": params["windows"],
        "check": check,
    }
    (tmp / "store.json").write_text(json.dumps(info, indent=1))


class _Tok:
    """Stands in for a model in `excluded_ids`: the checkpoint's tokenizer only."""

    def __init__(self, checkpoint):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))


def _precision_check(checkpoint, xb, layers: list[int], stored: dict, excl: list[int], fp32=None) -> dict:
    """Per layer, the relative error of the stored values against a float32 forward of the same batch, and
    the largest |value| (float16 would overflow past 65,504)."""
    import torch

    ref = hf_resid(fp32 if fp32 is not None else load_hf(checkpoint, "float32"), xb, layers)  # fp32: the store's own
    keep = ~torch.isin(xb, torch.tensor(excl, dtype=torch.long)) if excl else torch.ones(xb.shape, dtype=torch.bool)
    out = {}
    for L in layers:
        a, r = stored[L].float()[keep], ref[L].float()[keep]
        # per position too: the aggregate is dominated by the few positions with massive activations
        per = (a - r).norm(dim=-1) / r.norm(dim=-1).clamp_min(1e-12)
        out[hook_name(L)] = {
            "relative_error": float((a - r).norm() / r.norm().clamp_min(1e-12)),
            "position_error_median": float(per.median()),
            "position_error_p99": float(per.quantile(0.99)),
            "position_error_max": float(per.max()),
            "max_abs": float(r.abs().max()),
            "max_abs_with_bos": float(ref[L].abs().max()),
        }
    return out


def store_record(checkpoint, windows, layers: list[int], dtype: str) -> dict | None:
    """A store's path, dtype, layers and precision check for a results file, without building it (None when the
    cache does not hold it)."""
    path = cache_path("activation_stores", store_params(checkpoint, windows, layers, dtype))
    if not complete(path):
        return None
    info = store_info(path)
    return {"store": relpath(path), "dtype": info["dtype"], "layers": info["layers"], "check": info["check"]}


def store_info(store) -> dict:
    return json.loads((Path(store) / "store.json").read_text())


def read_activations(store, hook: str, rows=None):
    """float32 Tensor [len(rows), context, d_model] of `hook` for the windows `rows` (all when None)."""
    import torch

    path = Path(store) / f"{hook}.npy"
    if not path.exists():
        have = ", ".join(store_info(store)["hook_names"])
        raise ParamError(f"hook_name: {hook!r} is not in the activation store {relpath(store)} (it holds {have})")
    arr = np.load(path, mmap_mode="r")
    part = np.array(arr) if rows is None else np.ascontiguousarray(arr[np.asarray(rows)])  # a copy: writable
    if part.dtype == np.uint16:  # bfloat16's raw bits
        return torch.from_numpy(part.view(np.int16)).view(torch.bfloat16).float()
    return torch.from_numpy(part)


def store_layers(store) -> list[int]:
    return [hook_layer(h) for h in store_info(store)["hook_names"]]


def store_training_activations(store, windows, hook: str, n_tokens: int):
    """The SAE training set of `functok.sae.activations.training_activations` (same windows, same positions,
    same order), read from a store over those windows instead of running the model."""
    info = store_info(store)
    if info["windows"] != windows_id(windows):
        raise ParamError(f"store: {relpath(store)} holds the windows {info['windows']}; expected {windows_id(windows)}")
    take, keep = training_rows(np.asarray(load_windows(windows)), info["excluded_token_ids"], n_tokens)
    return read_activations(store, hook, take)[torch_bool(keep)][:n_tokens].contiguous()
