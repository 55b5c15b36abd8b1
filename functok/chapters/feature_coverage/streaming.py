"""The chapter's one streaming pass over token windows (`stream`), and its cache.

`stream`: one forward per batch that captures the residual stream of every requested layer
(`functok.sae.activations.resid_activations`, stopping at the deepest), SAE encoding per layer
(`functok.sae.encoding.SparseEncoder`: only the non-zeros), accumulation of one token <-> feature
graph per layer (`functok.sae.graph.TokenFeatureGraph`) and, when given, of the coverage null's min
ranks (`null.CoverageNull`). Positions holding an excluded id (BOS) are fed to the model but left out of
the graphs and of the null.

Cache: per layer, the graph (`feature_coverage_graphs`) and the null's min ranks with the pass's
timings (`feature_coverage_null`, whose key adds null_draws and the seed to the graph's). `cached_pass`
returns the pass only when every entry is there, so a warm re-run does not stream again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from functok.chapters.feature_coverage.null import CoverageNull
from functok.core.cache import cache_path, cached_dir
from functok.sae.activation_store import read_activations
from functok.sae.activations import resid_activations
from functok.sae.graph import TokenFeatureGraph
from functok.sae.models import hook_name


def layer_of(key) -> int:
    """The layer of a pass unit: a layer, or (layer, SAE seed) where several SAEs read one layer."""
    return key if isinstance(key, int) else int(key[0])


@dataclass
class Pass:
    graphs: dict  # unit (layer, or (layer, seed)) -> TokenFeatureGraph
    encoders: dict  # layer -> SparseEncoder
    n_windows: int
    forward_encode_s: float
    graph_s: float
    excluded: list[int]
    null: dict = field(default_factory=dict)  # layer -> min_rank int32[n_draws, d_sae] (empty without a null)
    null_s: float = 0.0
    from_cache: bool = False


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def stream(
    model,
    encoders: dict,
    windows,
    excluded: list[int],
    batch_size: int,
    device: str = "cpu",
    graph_device: str | None = None,
    progress: bool = True,
    null: CoverageNull | None = None,
    store=None,
) -> Pass:
    """One pass over windows (LongTensor [n, ctx]): forward (all layers at once), SAE encoding per
    unit (`encoders` keyed by layer, or by (layer, seed) for several SAEs of a layer: one forward serves
    them all) of the non-excluded positions, graph accumulation, and the null's min ranks when `null` is
    given (its positions: the non-excluded ones, in stream order). With `store` (functok.sae.activation_store
    over these windows) the activations are read from it instead of the forward. Times the parts separately."""
    import torch
    from tqdm import tqdm

    graph_device = graph_device or device
    V = int(model.cfg.d_vocab)
    graphs = {L: TokenFeatureGraph(V, e.d_sae, graph_device) for L, e in encoders.items()}
    hooks = list(dict.fromkeys(hook_name(layer_of(u)) for u in encoders))
    excl = torch.tensor(excluded, dtype=torch.long)
    t_fe = t_g = t_n = 0.0
    offset = 0  # stream position of the batch's first non-excluded position
    n = int(windows.shape[0])
    bar = tqdm(total=n, desc="windows", unit=" win", mininterval=5, disable=not progress, file=sys.stderr)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb = windows[i : i + batch_size]
            keep = ~torch.isin(xb, excl).reshape(-1)
            tok = xb.reshape(-1)[keep]
            t0 = time.perf_counter()
            if store is None:
                acts = resid_activations(model, xb, hooks)
            else:
                acts = {h: read_activations(store, h, np.arange(i, i + len(xb))) for h in hooks}
            codes = {}
            for L, enc in encoders.items():
                a = acts[hook_name(layer_of(L))]
                a = a.reshape(-1, a.shape[-1])[keep.to(a.device)]
                codes[L] = enc.encode(a)
            _sync(device)
            t1 = time.perf_counter()
            for L, c in codes.items():
                graphs[L].update_sparse(tok.to(c.rows.device), c.rows, c.features)
            _sync(graph_device)
            t_fe += t1 - t0
            t_g += time.perf_counter() - t1
            if null is not None:
                t2 = time.perf_counter()
                for L, c in codes.items():
                    null.update(L, offset, int(tok.shape[0]), c.rows, c.features)
                _sync(graph_device)
                t_n += time.perf_counter() - t2
            offset += int(tok.shape[0])
            bar.update(int(xb.shape[0]))
    t1 = time.perf_counter()
    for g in graphs.values():
        g.flush()
    _sync(graph_device)
    t_g += time.perf_counter() - t1
    bar.close()
    if null is not None and offset != null.n_positions:
        raise ValueError(f"null: {null.n_positions} positions ranked; the pass fed {offset}")
    nulls = {L: null.min_rank(L) for L in encoders} if null is not None else {}
    return Pass(graphs, encoders, n, t_fe, t_g, list(excluded), nulls, t_n)


def n_positions(windows, excluded: list[int]) -> int:
    """Positions the pass feeds to the graphs: those not holding an excluded id (BOS)."""
    import torch

    return int((~torch.isin(windows, torch.tensor(excluded, dtype=torch.long))).sum())


GRAPHS, NULLS = "feature_coverage_graphs", "feature_coverage_null"


def null_key(graph_key: dict, cfg) -> dict:
    return {**graph_key, "null_draws": cfg.null_draws, "seed": cfg.seed}


def cached_pass(keys: dict, cfg) -> Pass | None:
    """The pass from the cache (graphs and null per layer), or None unless every entry is there."""
    if not all((cache_path(k, p) / "params.json").exists() for q in keys.values() for k, p in _entries(q, cfg)):
        return None
    graphs, nulls, meta = {}, {}, {}
    for L, q in keys.items():
        g_dir, n_dir = (cached_dir(k, p, _never_built) for k, p in _entries(q, cfg))
        graphs[L] = TokenFeatureGraph.load(g_dir / "graph.npz")
        nulls[L] = np.load(n_dir / "min_rank.npy")
        meta = json.loads((n_dir / "null.json").read_text())
    p = Pass(graphs, {}, meta["n_windows"], meta["forward_encode_s"], meta["graph_s"], meta["excluded"], nulls)
    p.null_s, p.from_cache = meta["null_s"], True
    return p


def _entries(graph_key: dict, cfg) -> list[tuple[str, dict]]:
    return [(GRAPHS, graph_key), (NULLS, null_key(graph_key, cfg))]


def _never_built(tmp: Path) -> None:
    raise RuntimeError("cached_pass builds nothing: an entry it found complete has gone")


def save_pass(ps: Pass, keys: dict, cfg) -> dict:
    """Cache each layer's graph and null min ranks (entries already there are kept); layer -> graph file."""
    meta = {
        "n_windows": ps.n_windows,
        "forward_encode_s": ps.forward_encode_s,
        "graph_s": ps.graph_s,
        "null_s": ps.null_s,
        "excluded": ps.excluded,
        "null_draws": cfg.null_draws,
        "seed": cfg.seed,
    }
    files = {}
    for L, q in keys.items():
        md = {"hook_name": hook_name(layer_of(L)), "sae": q["sae"]}
        g_dir = cached_dir(GRAPHS, q, lambda tmp, g=ps.graphs[L], md=md: g.save(tmp / "graph.npz", md))
        files[L] = g_dir / "graph.npz"
        if ps.null:

            def build(tmp, mr=ps.null[L], n=ps.graphs[L].n_tokens):
                np.save(tmp / "min_rank.npy", mr)
                (tmp / "null.json").write_text(json.dumps({**meta, "n_positions": n}))

            cached_dir(NULLS, null_key(q, cfg), build)
    return files
