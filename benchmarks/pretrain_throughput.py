"""Training throughput of the embedded models vs an fp32 matmul measured in the same run.

Run:  .venv/bin/python benchmarks/pretrain_throughput.py [--preset embedded] [--steps 100] [--threads N]

For each depth of the preset's `pretrain` section it builds the model, runs `--steps` optimizer steps
of the real training step (`functok.world.pretrain.train_step`: fused unembedding + cross-entropy, AdamW,
the four group sums) on the preset's training windows, and prints tokens/s and the achieved FLOP/s
(6 x parameters x tokens/s, all parameters, embeddings included) divided by the GFLOP/s of a
2048 x 2048 fp32 matmul measured just before and after. The decoder is torch.compile'd when training
would compile it (functok.world.llama.use_compile; FUNCTOK_COMPILE=0 measures eager); the compile time
is in the warm-up steps, reported apart. Nothing is cached or written. Run it on an
idle machine: another busy process on a 2-core machine slows a 2-thread run by ~100x (see
functok.world.runtime.n_threads).
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
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0: functok.world.runtime.n_threads()")
    ap.add_argument("--batch-size", type=int, default=0, help="0: the preset's")
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer

    from functok.world import pretrain as P
    from functok.world.config import pretrain_config
    from functok.world.embedded import tokenizer_dir
    from functok.world.function_tokens import function_mask
    from functok.world.windows import load_windows, token_windows

    threads = args.threads or P.n_threads()
    torch.set_num_threads(threads)
    cfg = pretrain_config(args.preset)
    if args.batch_size:
        import dataclasses

        cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir(cfg)))
    windows = load_windows(token_windows(cfg, "train"))
    is_fn = function_mask(len(tok), P._function_token_ids(cfg, tok))
    is_sp = function_mask(len(tok), sorted(set(tok.all_special_ids)))
    B, T = cfg.batch_size, cfg.context_size
    print(
        f"preset {args.preset}: d_model {cfg.d_model}, d_mlp {cfg.d_mlp}, vocab {len(tok)}, batch {B} x {T}, "
        f"threads {threads}, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}"
    )
    rows = []
    for depth in cfg.depths:
        model = P.build_model(cfg, depth, tok)
        opt = P.make_optimizer(model, cfg)
        n_params = sum(p.numel() for p in model.parameters())
        compiled = P.use_compile(6 * n_params * P.n_steps(cfg) * B * T)  # as training decides
        body = P.compile_body(model) if compiled else None
        mm_before = P.matmul_gflops(seconds=1.0)
        t0 = time.perf_counter()
        for i in range(args.warmup):
            P.train_step(model, opt, windows[i * B : (i + 1) * B], cfg.lr, is_fn, is_sp, body=body)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(args.steps):
            j = (i * B) % max(1, len(windows) - B)
            P.train_step(model, opt, windows[j : j + B], cfg.lr, is_fn, is_sp, body=body)
        dt = time.perf_counter() - t0
        mm_after = P.matmul_gflops(seconds=1.0)
        mm = (mm_before + mm_after) / 2
        tps = args.steps * B * T / dt
        achieved = 6 * n_params * tps / 1e9
        rows.append((P.model_name(depth), n_params, tps, achieved, mm, achieved / mm))
        print(
            f"{P.model_name(depth)}: {n_params / 1e6:.2f}M params, {tps:,.0f} tokens/s, {achieved:.0f} GFLOP/s "
            f"achieved; fp32 matmul {mm_before:.0f} / {mm_after:.0f} GFLOP/s (before/after); "
            f"ratio {achieved / mm:.2f}; {'compiled' if compiled else 'eager'} (first {args.warmup} steps "
            f"{warm:.1f} s)",
            flush=True,
        )
    total_time = sum(cfg.train_tokens / r[2] for r in rows)
    print(
        f"projected pre-training time of the preset ({cfg.train_tokens / 1e6:.1f}M tokens per model): "
        f"{total_time / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
