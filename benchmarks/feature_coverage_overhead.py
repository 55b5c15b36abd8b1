"""Target (issue 5): graph accumulation adds at most 10% to the time of forward + SAE encoding on the
embedded model.

Runs the chapter's streaming pass (`functok.chapters.feature_coverage.streaming.stream`: one forward per batch
capturing every layer, SparseEncoder per layer, TokenFeatureGraph.update_sparse) over the preset's held-out
windows with the chapter's SAEs (trained and cached on first use), timing the two parts separately
(the final flush counts as graph time), `--repeats` times; prints each run and the median ratio.

    .venv/bin/python benchmarks/feature_coverage_overhead.py [--preset embedded] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="embedded")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-windows", type=int, default=0, help="use only the first N held-out windows (0: all)")
    args = ap.parse_args()

    import torch

    from functok.chapters.feature_coverage import analysis as fc
    from functok.chapters.registry import resolve
    from functok.sae.encoding import load_encoder
    from functok.sae.training import excluded_ids
    from functok.world.runtime import n_threads
    from functok.world.windows import load_windows

    torch.set_num_threads(n_threads())
    cfg = resolve("feature_coverage", args.preset, {"device": args.device, "batch_size": args.batch_size})
    p = fc.plan(cfg)
    checkpoint, _ = fc.embedded_checkpoint(cfg.preset) if p.model.kind == "embedded" else (p.model.checkpoint, None)
    specs = fc.sae_folders(cfg, p, checkpoint)
    windows = load_windows(fc.evaluation_windows(cfg, p.model, p.context_size))
    if args.max_windows:
        windows = windows[: args.max_windows]
    model = fc.load_model(checkpoint, cfg.device, cfg.model_dtype)
    wdt = getattr(torch, fc.encoder_dtype(cfg))
    encoders = {L: load_encoder(s, device=cfg.device, weight_dtype=wdt) for L, s in zip(p.layers, specs)}
    excl = excluded_ids(model)
    print(
        f"model {checkpoint} ({p.model.n_layers} layers, d_model {p.model.d_model}); layers {p.layers}; "
        f"d_sae {[e.d_sae for e in encoders.values()]}; {windows.shape[0]} windows x {windows.shape[1]} tokens; "
        f"batch {cfg.batch_size}; device {cfg.device}; threads {torch.get_num_threads()}"
    )
    fc.stream(model, encoders, windows[: cfg.batch_size], excl, cfg.batch_size, cfg.device, progress=False)  # warm-up
    ratios = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        ps = fc.stream(model, encoders, windows, excl, cfg.batch_size, cfg.device, progress=False)
        wall = time.perf_counter() - t0
        firings = sum(g.n_firings for g in ps.graphs.values())
        ratio = ps.graph_s / ps.forward_encode_s
        ratios.append(ratio)
        print(
            f"run {r + 1}: forward+encode {ps.forward_encode_s:.3f} s, graph accumulation {ps.graph_s:.3f} s, "
            f"ratio {ratio:.2%} (wall {wall:.2f} s, {firings:,} firings into {len(ps.graphs)} graphs)"
        )
    med = statistics.median(ratios)
    print(f"median graph / (forward + encode): {med:.2%}; target <= 10%: {'met' if med <= 0.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
