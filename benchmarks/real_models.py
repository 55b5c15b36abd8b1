"""Throughput of the real pretrained models from wheels (Gemma-3-270M, SmolLM2-135M-Instruct), each as a
fraction of a same-run fp32 matmul, so the figures mean something on a shared, noisy machine.

    .venv/bin/python benchmarks/real_models.py [--models gemma-3-270m,smollm2-135m-instruct] [--tokens 8192]

Prints per model:
- tokens/s through the middle layer (the forward stops after it, as SAE training and chapter 2 run it);
- tokens/s of a full forward with the loss (chapter 3);
- activations/s training a BatchTopK SAE (d_sae 8 x d_model, k 32, batch 512) with SAELens's SAETrainer;
and the matmul's GFLOP/s measured just before each figure. The fraction printed is the figure's useful FLOP/s
(2 x the weights it multiplies per token; for the SAE 6 x 2 x d_model x d_sae per activation, forward and
backward of a dense encoder and decoder) over the matmul's: how much of the machine each step uses.
Threads: FUNCTOK_THREADS, else every core. The fp32 folders are built (cached) on first use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def matmul_gflops(n: int = 1024, repeat: int = 8) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gemma-3-270m,smollm2-135m-instruct")
    ap.add_argument("--tokens", type=int, default=8192, help="tokens per forward measurement")
    ap.add_argument("--sae-activations", type=int, default=20_480, help="activations per SAE measurement")
    args = ap.parse_args()

    import torch

    from functok.sae.activations import activations_at
    from functok.sae.models import hook_name, load_model
    from functok.sae.training import SAESpec, _fit_activations
    from functok.world.runtime import n_threads
    from functok.world.wheel_models import local_model

    threads = n_threads()
    torch.set_num_threads(threads)
    print(f"threads: {threads}")
    for name in args.models.split(","):
        model = load_model(local_model(name))
        L, d, V = model.cfg.n_layers // 2, model.cfg.d_model, model.cfg.d_vocab
        ctx = 256
        x = torch.randint(0, V, (max(1, args.tokens // ctx), ctx))
        n = x.numel()
        blocks = [sum(p.numel() for p in b.parameters()) for b in model.blocks]
        flop_mid = 2 * sum(blocks[: L + 1])  # per token, the weights it multiplies (attention scores left out)
        flop_full = 2 * (sum(blocks) + d * V)
        g = matmul_gflops()
        t = time.perf_counter()
        acts = activations_at(model, hook_name(L), x, batch_size=8)
        mid = n / (time.perf_counter() - t)
        print(
            f"{name}: middle layer {L}: {mid:,.0f} tokens/s = {mid * flop_mid / 1e9 / g:.1%} of a same-run fp32 "
            f"matmul ({g:.1f} GFLOP/s)"
        )
        g = matmul_gflops()
        t = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(x), 2):
                model(x[i : i + 2], return_type="loss")
        full = n / (time.perf_counter() - t)
        print(
            f"{name}: full forward + loss: {full:,.0f} tokens/s = {full * flop_full / 1e9 / g:.1%} of the matmul "
            f"({g:.1f} GFLOP/s)"
        )
        flat = acts.reshape(-1, d)
        reps = -(-args.sae_activations // len(flat))
        train = flat.repeat(reps, 1)[: args.sae_activations].contiguous()
        spec = SAESpec(
            architecture="batchtopk", expansion_factor=8, sparsity_coefficient=32, training_tokens=len(train)
        )
        g = matmul_gflops()
        t = time.perf_counter()
        _fit_activations(spec, train)
        sae = len(train) / (time.perf_counter() - t)
        print(
            f"{name}: SAE training (d_sae {8 * d}): {sae:,.0f} activations/s = "
            f"{sae * 12 * d * 8 * d / 1e9 / g:.1%} of the matmul ({g:.1f} GFLOP/s)"
        )
        del model, acts, flat, train


if __name__ == "__main__":
    main()
