"""SAE training throughput (activations/s) on a preset's shallow model, both back ends of
functok.sae.training, SAEs as the feature-growth chapter trains them.

    .venv/bin/python benchmarks/sae_training.py [--preset embedded] [--tokens 150000] [--batch 512]

Prints, for the final checkpoint's last layer:
- the model forward that produces the training activations (tokens/s), done once per checkpoint by
  the 'activations' back end and shared by every SAE of the coefficient search;
- SAETrainer on those activations (activations/s);
- SAELens's LanguageModelSAETrainingRunner, which runs the model for every SAE (activations/s, model
  included).
SAEs are written to a temporary cache (never reused), so every figure is a fresh training.
Threads: FUNCTOK_THREADS, else every core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="embedded")
    ap.add_argument("--tokens", type=int, default=150_000, help="training activations per SAE")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--coefficient", type=float, default=1.0)
    ap.add_argument("--backends", default="activations,runner")
    args = ap.parse_args()

    import os

    import torch

    from functok.sae import training as S
    from functok.sae.models import load_model
    from functok.sae.quality import evaluate_sae
    from functok.world.config import pretrain_config
    from functok.world.pretrain import train_run
    from functok.world.runs import checkpoints
    from functok.world.runtime import n_threads
    from functok.world.windows import token_windows

    torch.set_num_threads(n_threads())
    pcfg = pretrain_config(args.preset)
    run = train_run(pcfg, pcfg.depths[0])
    ck = checkpoints(run)[-1]["checkpoint"]
    train = token_windows(args.preset, "train")
    hook = f"blocks.{pcfg.depths[0] - 1}.hook_resid_post"
    model = load_model(ck)
    print(
        f"{args.preset}: {Path(ck).name} of llama-{pcfg.depths[0]}L, {hook}, d_model {pcfg.d_model}, "
        f"d_sae {args.expansion * pcfg.d_model}, {args.tokens:,} activations per SAE, batch {args.batch}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FUNCTOK_CACHE"] = tmp  # SAEs trained here are thrown away
        t0 = time.perf_counter()
        acts = S.training_activations(ck, hook, train, args.tokens, model=model)
        dt = time.perf_counter() - t0
        print(
            f"model forward for the training activations: {len(acts):,} in {dt:.1f} s ({len(acts) / dt:,.0f} tokens/s)",
            flush=True,
        )
        for backend in args.backends.split(","):
            spec = S.SAESpec(
                sparsity_coefficient=args.coefficient,
                training_tokens=args.tokens,
                batch_size=args.batch,
                expansion_factor=args.expansion,
                backend=backend,
            )
            t0 = time.perf_counter()
            folder = S.train_sae(ck, hook, spec, train, model=model, progress=False)
            wall = time.perf_counter() - t0
            st = S.training_stats(folder)
            n = st["activations"]
            m = evaluate_sae(folder, ck, token_windows(args.preset, "heldout"), max_windows=32, model=model)
            what = "model forwards included" if backend == "runner" else "activations computed once above"
            print(
                f"{backend:>11}: {n:,} activations in {st['seconds']:.1f} s = {n / st['seconds']:,.0f} activations/s "
                f"({what}; wall {wall:.1f} s); CE score {m['ce_reconstruction_score']:.4f}, "
                f"L0 {m['l0']:.1f}, explained variance {m['explained_variance']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
