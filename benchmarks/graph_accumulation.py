"""Benchmark: building the token <-> feature graph at the paper's shape, against a dict-of-sets.

Run (full scale: about 4-5 minutes on 2 shared cores; the graph peaks near 2 GB, the baseline near 5 GB):

    .venv/bin/python benchmarks/graph_accumulation.py

Smaller:  .venv/bin/python benchmarks/graph_accumulation.py --tokens 500000 --baseline-tokens 200000
On a GPU: add --device cuda (the graph's accumulation then runs with torch ops on the device).

The sample is synthetic sparse SAE codes with the paper's shape (arXiv 2510.08203 §3: Gemma-2-9B
vocabulary 256,000, Gemma Scope width 2^20, 5M tokens, L0 ~100):
- token ids: Zipf over the vocabulary (exponent --token-zipf, 1.0 like running text), ranks mapped
  to ids by a fixed random permutation;
- each occurrence draws --active features (120 draws leave ~100 distinct ones): half from a
  token-specific pool of --pool features
  (Zipf inside the pool, so a token keeps re-firing its own features), half from a global Zipf
  popularity over all features (exponent --feature-zipf); repeats within an occurrence are dropped.
Chunks are generated from (seed, chunk index), so every variant sees exactly the same sample;
generation time is measured apart from build time.

Each variant runs in its own subprocess so its peak RSS (ru_maxrss) is its own:
- graph:    functok.sae.graph.TokenFeatureGraph.update_sparse on torch tensors, then flush;
- baseline: a straightforward dict token -> set(features) plus a token Counter.
A full-scale dict-of-sets needs ~100 bytes per distinct edge (over 10 GB here), so by default the
baseline and the graph are compared on the same subsample (--baseline-tokens; the first N tokens of
the same stream), and the graph alone also runs at full scale. Pass --baseline-tokens equal to
--tokens to compare at full scale if the machine has the memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def zipf_ranks(rng, n_items: int, size, s: float) -> np.ndarray:
    """Ranks in [0, n_items) with P(rank r) ~ (r+1)^-s (continuous inverse CDF, floored)."""
    u = rng.random(size)
    if abs(s - 1.0) < 1e-9:
        r = np.exp(u * np.log(n_items + 1.0))
    else:
        a = 1.0 - s
        r = ((np.power(n_items + 1.0, a) - 1.0) * u + 1.0) ** (1.0 / a)
    return np.minimum(r.astype(np.int64) - 1, n_items - 1)


class Synthetic:
    def __init__(self, args):
        self.a = args
        rng = np.random.default_rng([args.seed, 2**31])
        self.tok_perm = rng.permutation(args.vocab)
        self.feat_perm = rng.permutation(args.d_sae)

    def chunk(self, i: int, n: int):
        """(token ids int64[n], rows int64[nnz], feature ids int64[nnz]) of chunk i."""
        a = self.a
        rng = np.random.default_rng([a.seed, i])
        tok = self.tok_perm[zipf_ranks(rng, a.vocab, n, a.token_zipf)]
        k_own = a.active // 2
        j = zipf_ranks(rng, a.pool, (n, k_own), 1.0)
        own = (tok[:, None] * 2654435761 + j * 40503) % a.d_sae  # the token's own features
        glob = self.feat_perm[zipf_ranks(rng, a.d_sae, (n, a.active - k_own), a.feature_zipf)]
        f = np.sort(np.concatenate([own, glob], axis=1), axis=1)
        keep = np.ones_like(f, dtype=bool)
        keep[:, 1:] = f[:, 1:] != f[:, :-1]
        rows = np.repeat(np.arange(n, dtype=np.int64), keep.sum(1))
        return tok, rows, f[keep]

    def chunks(self, n_tokens: int):
        size = self.a.chunk
        for i in range((n_tokens + size - 1) // size):
            yield self.chunk(i, min(size, n_tokens - i * size))


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_variant(args) -> dict:
    """Runs in the child process; returns the figures as a dict."""
    import torch

    syn = Synthetic(args)
    torch.set_num_threads(args.threads)
    rss_setup = maxrss_bytes()
    t_gen = t_build = 0.0
    n_nz = 0
    if args.variant == "graph":
        from functok.sae.graph import TokenFeatureGraph

        g = TokenFeatureGraph(args.vocab, args.d_sae, device=args.device)
        gen = syn.chunks(args.n)
        while True:
            t0 = time.perf_counter()
            c = next(gen, None)
            t_gen += time.perf_counter() - t0
            if c is None:
                break
            tok, rows, feats = (torch.from_numpy(x).to(args.device) for x in c)
            if args.device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            g.update_sparse(tok, rows, feats)
            t_build += time.perf_counter() - t0
            n_nz += rows.shape[0]
        t0 = time.perf_counter()
        g.flush()
        if args.device != "cpu":
            torch.cuda.synchronize()
        t_build += time.perf_counter() - t0
        t0 = time.perf_counter()
        deg = g.degree()
        connected = g.connected_features()
        cov = g.coverage_topk(g.ranking(), 10)
        t_query = time.perf_counter() - t0
        n_edges = g.n_edges
    else:
        from collections import Counter

        graph: dict[int, set] = {}
        counts: Counter = Counter()
        gen = syn.chunks(args.n)
        while True:
            t0 = time.perf_counter()
            c = next(gen, None)
            t_gen += time.perf_counter() - t0
            if c is None:
                break
            tok, rows, feats = c
            t0 = time.perf_counter()
            offsets = np.searchsorted(rows, np.arange(tok.size + 1)).tolist()
            fl = feats.tolist()
            for i, t in enumerate(tok.tolist()):
                counts[t] += 1
                s = graph.get(t)
                if s is None:
                    graph[t] = s = set()
                s.update(fl[offsets[i] : offsets[i + 1]])
            t_build += time.perf_counter() - t0
            n_nz += rows.size
        t0 = time.perf_counter()
        deg = np.zeros(args.vocab, dtype=np.int64)
        for t, s in graph.items():
            deg[t] = len(s)
        connected = len(set().union(*graph.values()))
        ranking = sorted(range(args.vocab), key=lambda t: (-counts[t], t))[:10]
        cov, covered = [], set()
        for t in ranking:
            covered |= graph.get(t, set())
            cov.append(len(covered) / args.d_sae)
        t_query = time.perf_counter() - t0
        n_edges = int(deg.sum())
    return {
        "variant": args.variant,
        "tokens": args.n,
        "firings": int(n_nz),
        "edges": int(n_edges),
        "connected": int(connected),
        "degree_checksum": int((deg * np.arange(deg.size)).sum() % (2**61 - 1)),
        "coverage_top10": [round(float(x), 6) for x in cov],
        "gen_s": t_gen,
        "build_s": t_build,
        "query_s": t_query,
        "rss_setup_bytes": rss_setup,
        "peak_rss_bytes": maxrss_bytes(),
    }


def child(args, variant: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--variant", variant, "--n", str(n)] + [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("variant", "n", "baseline_tokens", "tokens")
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gb(x: float) -> str:
    return f"{x / 2**30:.2f} GiB"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=5_000_000, help="tokens of the full-scale sample")
    p.add_argument(
        "--baseline-tokens",
        type=int,
        default=1_000_000,
        help="tokens on which the dict-of-sets baseline and the graph are compared",
    )
    p.add_argument("--vocab", type=int, default=256_000)
    p.add_argument("--d-sae", type=int, default=2**20)
    p.add_argument(
        "--active",
        type=int,
        default=120,
        help="features drawn per token occurrence; repeats are dropped, 120 draws leave ~100 active",
    )
    p.add_argument("--pool", type=int, default=2048, help="size of each token's own feature pool")
    p.add_argument("--token-zipf", type=float, default=1.0)
    p.add_argument("--feature-zipf", type=float, default=1.0)
    p.add_argument("--chunk", type=int, default=16384, help="tokens per update (one forward batch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--variant", choices=["graph", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.variant:
        print(json.dumps(run_variant(args)))
        return

    sub = min(args.baseline_tokens, args.tokens)
    print(
        f"sample: vocab {args.vocab:,}, d_sae {args.d_sae:,}, {args.active} drawn features per token "
        f"(half from a per-token pool of {args.pool}), Zipf exponents token {args.token_zipf} / feature "
        f"{args.feature_zipf}, {args.chunk:,} tokens per update, seed {args.seed}, device {args.device}"
    )
    runs = [("graph", args.tokens)]
    if sub < args.tokens:
        runs.append(("graph", sub))
    runs.append(("baseline", sub))
    res = []
    for variant, n in runs:
        r = child(args, variant, n)
        res.append(r)
        print(
            f"{variant:8s} {n:>10,} tokens  build {r['build_s']:7.1f} s  peak RSS {gb(r['peak_rss_bytes'])} "
            f"(after setup {gb(r['rss_setup_bytes'])})  generation {r['gen_s']:5.1f} s  queries {r['query_s']:5.1f} s  "
            f"firings {r['firings']:,} ({r['firings'] / n:.1f}/token)  edges {r['edges']:,}  "
            f"connected {r['connected']:,} ({r['connected'] / args.d_sae:.1%})  top-10 coverage "
            f"{r['coverage_top10'][-1]:.2%}",
            flush=True,
        )
    full, small, base = res[0], res[-2], res[-1]
    same = all(small[k] == base[k] for k in ("edges", "connected", "degree_checksum", "coverage_top10"))
    speedup = base["build_s"] / small["build_s"]
    print(f"\ngraph == baseline on the {sub:,}-token sample (edges, connected, degrees, top-10 coverage): {same}")
    print(
        f"full scale ({args.tokens:,} tokens): build {full['build_s']:.1f} s (target <= 300 s: "
        f"{'met' if full['build_s'] <= 300 else 'MISSED'}), peak RSS {gb(full['peak_rss_bytes'])} (target <= 4 GiB: "
        f"{'met' if full['peak_rss_bytes'] <= 4 * 2**30 else 'MISSED'})"
    )
    where = "full scale" if sub == args.tokens else f"the same {sub:,}-token subsample (baseline not run at full scale)"
    print(
        f"vs dict-of-sets on {where}: {base['build_s']:.1f} s -> {small['build_s']:.1f} s, speed-up x{speedup:.1f} "
        f"(target >= 2: {'met' if speedup >= 2 else 'MISSED'}); peak RSS {gb(base['peak_rss_bytes'])} -> "
        f"{gb(small['peak_rss_bytes'])} ({'less' if small['peak_rss_bytes'] < base['peak_rss_bytes'] else 'NOT less'})"
    )


if __name__ == "__main__":
    main()
