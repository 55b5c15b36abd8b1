"""Chapter 5's steered generation on a real model: the uncached loop through the TransformerLens bridge that
the chapter used before (every new token re-runs the whole prompt) against functok.sae.generation (the plain
transformers model, a KV cache, one batch per prompt), measured in one run, and whether their tokens agree.

    .venv/bin/python benchmarks/steering_generation.py [--model smollm2-135m-instruct] [--answers 16] [--new 12]

Prints seconds per steered answer of each and their ratio. The answers are the chat prompt of Appendix A
("Tell me about Mount Fuji.") steered at its last token, layer = the middle one, by random directions of norm
20 (one answer unsteered). Threads: FUNCTOK_THREADS, else every core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a model name of data/models.yaml")
    ap.add_argument("--answers", type=int, default=16, help="steered answers in the batch")
    ap.add_argument("--new", type=int, default=12, help="tokens per answer")
    ap.add_argument("--uncached", type=int, default=4, help="answers timed with the uncached loop")
    args = ap.parse_args()

    import torch

    from functok.sae.generation import generate, load_generator
    from functok.sae.models import hook_name, load_model
    from functok.world.models import model_ref
    from functok.world.runtime import n_threads

    threads = n_threads()
    torch.set_num_threads(threads)
    folder = model_ref(args.model).checkpoint()
    bridge, model = load_model(folder), load_generator(folder)
    tok = bridge.tokenizer
    layer = bridge.cfg.n_layers // 2
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Tell me about Mount Fuji."}], add_generation_prompt=True
    )
    ids = [int(i) for i in (ids["input_ids"] if hasattr(ids, "keys") else ids)]
    pos = len(ids) - 1
    g = torch.Generator().manual_seed(0)
    vecs = [None] + [
        torch.nn.functional.normalize(torch.randn(bridge.cfg.d_model, generator=g), dim=0) * 20
        for _ in range(args.answers - 1)
    ]

    def uncached(v):
        def add(act, hook):
            act[:, pos, :] += v
            return act

        x = torch.tensor([ids])
        with torch.no_grad():
            for _ in range(args.new):
                logits = bridge.run_with_hooks(x, fwd_hooks=[(hook_name(layer), add)] if v is not None else [])
                x = torch.cat([x, logits[0, -1].argmax().view(1, 1)], 1)
        return x[0, len(ids) :].tolist()

    t = time.perf_counter()
    old = [uncached(v) for v in vecs[: args.uncached]]
    t_old = (time.perf_counter() - t) / len(old)
    t = time.perf_counter()
    new, _ = generate(model, [ids] * len(vecs), args.new, [None if v is None else ([pos], v) for v in vecs], layer)
    t_new = (time.perf_counter() - t) / len(vecs)
    same = sum(a == b for a, b in zip(old, new))
    print(f"{args.model}, layer {layer}, {args.new} new tokens, prompt {len(ids)} tokens, {threads} thread(s)")
    print(f"uncached loop through the bridge: {t_old:.3f} s per answer ({len(old)} answers)")
    print(f"batched with a KV cache:          {t_new:.3f} s per answer ({len(vecs)} answers in one batch)")
    print(f"speed-up {t_old / t_new:.1f}x; the same tokens for {same} of {len(old)} answers compared")


if __name__ == "__main__":
    main()
