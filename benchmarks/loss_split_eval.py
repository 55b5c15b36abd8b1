"""Time to evaluate one checkpoint on the default held-out set (issue target: under 20 s on this machine).

Run:  .venv/bin/python benchmarks/loss_split_eval.py [--preset embedded] [--repeat 2]

For the final checkpoint of each of the preset's models (trained on first use), times what
functok.chapters.loss_split does for one checkpoint, without its cache: load through TransformerLens, the
grouped per-token losses of every held-out window, the next-token losses, the greedy predictions on
held-out text and on the Fig 10 prompt. Prints seconds per checkpoint (best of --repeat), held-out
tokens per second, and the machine's load average (the machine is shared: a busy core slows it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="embedded")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", default="", help="FUNCTOK_THREADS for the evaluation (default: every core)")
    args = ap.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    if args.threads:
        os.environ["FUNCTOK_THREADS"] = args.threads
    t0 = time.perf_counter()

    from functok.chapters.loss_split import analysis as L
    from functok.chapters.loss_split import evaluation
    from functok.chapters.registry import resolve
    from functok.core.config import ROOT

    cfg = resolve("loss_split", args.preset)
    specs = L.resolve_models(cfg)
    print(
        f"imports and model resolution: {time.perf_counter() - t0:.1f} s; threads "
        f"{os.environ.get('FUNCTOK_THREADS') or os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    for spec in specs:
        ids, _ = L.function_token_source(spec, cfg)
        win = L.heldout_windows(spec, cfg)
        ck = spec.checkpoints[-1]
        folder = ROOT / ck["checkpoint"]
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = evaluation._evaluate_folder(folder, win, ids, cfg)
            best = min(best, time.perf_counter() - t)
        n_tok = out["n_windows"] * (out["context_size"] - 1)
        verdict = "under" if best < 20 else "OVER"
        print(
            f"{spec.name} ({out['n_layers']} layers), step {ck['step']}: {best:.2f} s per checkpoint "
            f"({out['n_windows']} windows x {out['context_size']} tokens = {n_tok:,} predictions, "
            f"{n_tok / best:,.0f} predictions/s) - {verdict} the 20 s target"
        )


if __name__ == "__main__":
    main()
