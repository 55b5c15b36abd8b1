"""Writes chapters/03_loss_split.ipynb (run: .venv/bin/python tools/make_loss_split_notebook.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from notebook import SETUP, parameters_source, write  # noqa: E402

CELLS = [
    ("md", r"""
# Function->content prediction dominates the loss

The paper's second half is about pre-training. It splits every next-token prediction $t_i \to t_{i+1}$
by the type of the current token and of the next token into four groups: **function->function**,
**function->content**, **content->function** and **content->content** (function tokens: the
most frequent tokens covering 40% of all occurrences, chapter 1). It then follows the four mean
losses over the pre-training of a 2-layer and a 32-layer LLaMA-3.1-architecture model and claims
(§5 of the paper):

1. **function->content is the hardest prediction**: its loss is the highest of the four throughout
   training (Fig 9a, 9b);
2. **function tokens are learned first**: the loss of predicting " the", " of", "," as the next
   token converges within about 3,000 of 130,000 steps, earlier than the average (Fig 9c);
3. **scaling helps content prediction most**: the 32-layer model's final loss is lower than the
   2-layer model's by about 0.61 nats on the two content-next groups, 0.25 on the two
   function-next groups (the scaling table);
4. greedy predictions on one sentence go from noise to function tokens only to phrases (Fig 10).

This chapter measures all four on the book's embedded models (two Llamas of one width and two
depths that functok pre-trained on Wikipedia introductions and State of the Union addresses, with
log-spaced checkpoints) and, with the `pythia` preset when online, on Pythia's public checkpoints.
"""),
    ("parameters", parameters_source("loss_split")),
    ("code", SETUP.format(chapter="loss_split")),
    ("md", r"""
## What is measured

For every checkpoint of every model, on held-out documents (never trained on) cut into the same
token windows the model was trained with (BOS before each document), the model runs through
TransformerLens (`functok.models.load_model`, the same path for Pythia) and gives a per-token
cross-entropy in nats. Each prediction is put in its group with the function-token set the
model's training log used. We report per group:

- the **mean loss** over the group's predictions (the paper does not say how it averages; we use
  the mean per-token cross-entropy within each group). **all** is the mean over every prediction, as
  the training loss is; the four groups leave out the few predictions whose current or next token
  is BOS, which is neither a function nor a content token;
- the **count** of predictions behind each mean;
- a **confidence interval** from a percentile bootstrap over held-out windows (a cluster bootstrap:
  positions in one window share a context and are not independent). The same resampled windows
  serve every checkpoint and both models, so differences between groups and between models are
  paired, and the claims test those differences, not overlapping bars.

Besides the held-out checkpoints, the training log holds the four group losses of every optimizer
step (on the training batches): these give Fig 9 at full resolution, and the convergence rule below
is applied to them too.
"""),
    ("code", """
from functok import loss_split, plots, plots_loss_split as lp
from functok.paper import numbers

analysis = loss_split.analyze(cfg)
for name, p in analysis["models"].items():
    r = p["result"]
    print(f"{name}: {r['n_layers']} layers, {len(r['checkpoints'])} checkpoints, {r['n_windows']} held-out windows "
          f"of {r['context_size']} tokens, {r['n_function_tokens']} function tokens ({r['function_token_file']})")
t = analysis["timings"]
print(f"{len(t)} checkpoints evaluated in {t['seconds'].sum():.1f} s of compute ({int(t['cached'].sum())} read back from the cache)")
"""),
    ("md", r"""
## Fig 9a/9b: the four groups over training

One panel per model. Lines are the training log (every step, a centred rolling mean over
`log_smoothing` steps); points are the held-out checkpoints with their intervals (often smaller than
the markers). The x axis is symmetric-log so that the early checkpoints, where most of the
learning happens, are visible. Read it as: which colour is on top, and when does each curve
flatten.
"""),
    ("code", """
lp.group_curves(analysis);
"""),
    ("code", """
for name in analysis["models"]:
    display(Markdown(f"**{name}**: held-out mean loss by checkpoint"))
    display(lp.checkpoint_table(analysis, name))
"""),
    ("md", r"""
## How many predictions fall in each group

The final checkpoint's means with their counts and intervals. The groups are far from equal in
size: the ordering of the means is a measured result only because every interval is narrow
compared with the gaps between groups.
"""),
    ("code", """
lp.counts_table(analysis)
"""),
    ("md", r"""
## Fig 9c: function tokens are learned first

The loss of predicting each chosen function token (`next_tokens`) where it is the actual next token,
against the average over all predictions. **Convergence rule**: a loss has converged at the first
step after which it stays within `converge_fraction` (10%) of its total decrease of its final value,
i.e. $L(t) - L_\mathrm{final} \le 0.1\,(L_\mathrm{first} - L_\mathrm{final})$ for every later $t$
(a share of each curve's own decrease, so curves at different heights compare fairly). Dotted
lines mark the convergence step of each curve; the table gives them for the held-out checkpoints
(resolution: the checkpoint schedule) and the training log (resolution: one step).
"""),
    ("code", """
lp.next_token_curves(analysis);
lp.convergence_table(analysis)
"""),
    ("md", r"""
## The scaling table: what depth buys

The final checkpoints of the shallow and the deep model (same width, same data, same steps), the
difference shallow - deep per group with its paired bootstrap interval, beside the paper's table
(1.5B = 2 layers, 8B = 32 layers of LLaMA-3.1-8B, one epoch of SlimPajama). Our models are far
smaller and trained on about a million times fewer tokens, so absolute losses are not comparable;
the claim is about which groups gain most.
"""),
    ("code", """
if analysis["scaling"] is not None:
    display(lp.scaling_table(analysis))
    sc = analysis["scaling"]
    a = next(r for r in sc["rows"] if r["group"] == "all")
    m = sc["models"]
    display(Markdown(f"All tokens: **{m['deep']}** ({m['deep_layers']} layers) is "
                     f"{'better' if a['difference'] > 0 else 'worse'} than **{m['shallow']}** ({m['shallow_layers']}) "
                     f"by {abs(a['difference']):.3f} nats. Where depth does not help overall, the question of which "
                     f"groups it helps most has no answer at this training budget."))
else:
    print("one model only: no scaling table")
"""),
    ("md", r"""
## Fig 10: greedy predictions over training

The argmax next token at every position of the paper's sentence (`prompt`; BOS first, as in
training), at every checkpoint. Shaded cells are function tokens; bold cells are the actual next
token. The paper sees random tokens at step 100, only function tokens (" the", " a", ",") at step
3,000, then local phrases and finally long-range predictions ("struggle with" -> " reading").
"""),
    ("code", """
for name in analysis["models"]:
    display(Markdown(f"**{name}**"))
    display(lp.greedy_table(analysis, name))
"""),
    ("md", r"""
One sentence is an anecdote; the same reading on every held-out position is a measurement. Below,
the share of held-out positions whose greedy prediction is a function token, and the share where
it is right, at every checkpoint (beyond the paper).
"""),
    ("code", """
lp.greedy_share_figure(analysis);
"""),
    ("md", r"""
## What holds

Each claim with the paper's number, ours, the verdict and the rule that decided it. *The first few*
checkpoints (left out of the function->content claim, still plotted above) are those before
`settle_fraction` (1%) of training: at step 0 every group sits near $\ln |V|$ and the order is noise.
"""),
    ("code", """
path = run.write(analysis["results"], analysis["claims"], analysis["data"], analysis["artifacts"])
print(f"results: {path}")
plots.claims_table(analysis["claims"])
"""),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "chapters" / "03_loss_split.ipynb"
    write(str(out), CELLS)
    print(f"wrote {out}")
