"""Do the embedded models learn? Held-out loss vs a unigram model, and greedy predictions over training.

Run:  .venv/bin/python benchmarks/embedded_models.py [--preset embedded] [--checkpoints all|N]

Trains the preset's models if they are not cached yet (functok.world.pretrain.models), then prints:
- each model's training summary (time, tokens/s, achieved FLOP/s / fp32 matmul);
- the final checkpoints' held-out loss (all tokens and the four groups) next to a unigram model
  fitted on the training tokens (checkpoint_eval.unigram_loss);
- the held-out loss at every checkpoint of each model;
- greedy next-token predictions on the paper's Fig 10 prompt at each checkpoint of each model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="embedded")
    ap.add_argument("--prompt", default=None, help="default: the paper's Fig 10 prompt")
    args = ap.parse_args()

    import checkpoint_eval as E  # benchmarks/checkpoint_eval.py, beside this script

    from functok.world import pretrain as P

    runs = P.models(args.preset)
    held = P.token_windows(args.preset, "heldout")
    prompt = args.prompt or E.FIG10_PROMPT
    uni = E.unigram_loss(args.preset)
    print(f"unigram model (fitted on the training tokens), held-out loss: {uni:.3f} nats/token\n")
    for name, run in runs.items():
        s = json.loads((run / "summary.json").read_text())
        print(
            f"{name}: {s['n_params'] / 1e6:.2f}M params, {s['steps']} steps, {s['tokens'] / 1e6:.2f}M tokens, "
            f"{s['seconds']:.0f} s, {s['tokens_per_s']:,.0f} tok/s, {s['achieved_gflops']:.0f} GFLOP/s = "
            f"{s['flops_ratio']:.2f} x fp32 matmul ({s['matmul_gflops']:.0f} GFLOP/s), "
            f"{s.get('flops_ratio_steady', float('nan')):.2f} after the first step, {s['threads']} threads, "
            f"{'compiled' if s.get('compiled') else 'eager'}"
        )
    print()
    fn_ids = {name: json.loads((run / "function_tokens.json").read_text())["ids"] for name, run in runs.items()}
    for name, run in runs.items():
        print(f"{name}: held-out loss by checkpoint")
        for c in P.checkpoints(run):
            r = E.heldout_losses(c["checkpoint"], held, fn_ids[name])
            groups = "  ".join(
                f"{g} {r[g]:.2f}"
                for g in ("function->function", "function->content", "content->function", "content->content")
            )
            print(f"  step {c['step']:>6} ({c['tokens_seen'] / 1e6:6.3f}M tok): all {r['loss']:.3f}  {groups}")
        print()
    for name, run in runs.items():
        print(f"{name}: greedy next-token predictions on {prompt!r}")
        for c in P.checkpoints(run):
            rows = E.greedy_predictions(c["checkpoint"], prompt)
            print(f"  step {c['step']:>6}: " + " | ".join(repr(r["prediction"])[1:-1] for r in rows))
        print("  inputs     : " + " | ".join(repr(r["token"])[1:-1] for r in rows))
        print()


if __name__ == "__main__":
    main()
