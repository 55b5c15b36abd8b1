"""Writes chapters/04_feature_growth.ipynb (run: .venv/bin/python tools/make_feature_growth_notebook.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from notebook import SETUP, parameters_source, write  # noqa: E402

CELLS = [
    ("md", r"""
# Learned features grow over pre-training

The paper's consolidation claim says that predicting the token after a function token drives the
growth of what a model learns. §5 looks at that growth directly: it trains a sparse autoencoder (SAE)
on the last layer's residual stream of its 2-layer model at several pre-training checkpoints and counts
the SAE features that are actually used. The claims (Fig 8a, Fig 8b, Fig 12):

1. **learned features grow**: the number of distinct SAE features that fire on 500,000 sampled
   activations goes from 1,942 at an early checkpoint to 64,042 of 65,536 at the end (about 33-fold);
2. the comparison is fair because **the SAEs reconstruct equally well**: the sparsity coefficient is
   tuned per checkpoint so that every SAE has about the same cross-entropy reconstruction score; later
   checkpoints need a weaker penalty (lambda 10 / 4 / 2.5 at steps 3k / 50k / 130k, Fig 12);
3. **the token-degree curve steepens**: in the token-feature bipartite graph (an edge when a token
   activates a feature in some context), degree against frequency rank gets steeper as training goes
   on: the few function tokens keep reaching most features (Fig 8b).

This chapter repeats all three on the book's embedded shallow model (a 2-layer Llama that functok
pre-trains from scratch, with log-spaced checkpoints) and, with the `pythia` preset when online, on
Pythia's public checkpoints.
"""),
    ("parameters", parameters_source("feature_growth")),
    ("code", SETUP.format(chapter="feature_growth")),
    ("md", r"""
## What is measured

For each studied checkpoint, SAEs are trained with SAELens (6.54) on `blocks.{L}.hook_resid_post`
of the chosen layer (the last by default, as in the paper), with the paper's architecture by default:
a JumpReLU SAE with the tanh sparsity penalty, bandwidth 0.02, initial threshold 0.01, width 16 x
d_model. Positions holding BOS (the document separator) are left out of SAE training, of L0 and
explained variance and of the activation samples; the losses below average over every next-token
prediction of the windows. The training activations are computed once per checkpoint and SAELens's `SAETrainer`
trains on shuffled batches of them (`backend='runner'` uses SAELens's
`LanguageModelSAETrainingRunner` instead, which regenerates activations for every SAE).

**Cross-entropy reconstruction score.** On held-out windows, with TransformerLens hooks:

$$
\text{score} = \frac{H^* - H_0}{H_{\text{orig}} - H_0}
$$

where $H_{\text{orig}}$ is the model's mean next-token loss, $H^*$ the loss with the SAE's reconstruction
spliced in at the hook (every non-BOS position), and $H_0$ the loss with the hook's activation
zero-ablated. 1 means the SAE loses nothing; 0 means it is no better than deleting the activation.

**Matching.** Per checkpoint, a search over the sparsity coefficient (on a log scale: steps of
`search_factor` until the target is bracketed, then interpolation) trains up to `search_steps` SAEs and
keeps the one whose score is closest to `target_ce_score`; a checkpoint is *matched* when that score
is within `ce_tolerance`. Then `n_seeds - 1` more SAEs are trained at the chosen coefficient with other
seeds.

**Learned features** are the distinct features with activation > 0 on `n_activations` activations drawn
without replacement from the held-out windows (the same positions at every checkpoint). The same
sample gives each SAE's token-feature graph (`functok.graph.TokenFeatureGraph`, the coverage chapter's
code) and so the token degrees of Fig 8b.
"""),
    ("code", r"""
from functok import feature_growth as fg, plots_feature_growth as fplots, plots
from functok.paper import numbers

analysis = fg.analyze(cfg)
res = analysis["results"]
print(f"{res['model']} ({res['source']}): {len(res['checkpoints'])} checkpoints, steps "
      f"{[r['step'] for r in res['checkpoints']]}, {res['checkpoints'][0]['hook_name']}, d_sae {res['checkpoints'][0]['d_sae']:,}")
print(f"chapter: {res['seconds']:.0f} s; SAE training: {res['sae_training']['activations_per_s']:,.0f} activations/s")
"""),
    ("md", r"""
## Fig 12: matching the reconstruction score

Each line is one checkpoint; each circle is one SAE the search trained, at its sparsity coefficient
(log axis) and reconstruction score; the star is the SAE kept. The grey band is the target plus or
minus the tolerance. The paper sees later checkpoints needing a smaller coefficient for the same
score: a trained model's residual stream carries more that the next-token loss depends on, so it is
harder to reconstruct.
"""),
    ("code", r"""
fplots.score_vs_coefficient(analysis, cfg.target_ce_score, cfg.ce_tolerance);
"""),
    ("md", r"""
The chosen SAE per checkpoint, with the three losses behind its score, its L0 (mean number of active
features per position), explained variance ($1 - \sum \lVert x - \hat x \rVert^2 / \sum \lVert x - \bar x \rVert^2$,
SAELens's definition) and the learned features (mean +- standard deviation over seeds):
"""),
    ("code", r"""
fplots.checkpoint_table(analysis)
"""),
    ("md", r"""
Every SAE the search trained (the points of Fig 12):
"""),
    ("code", r"""
fplots.search_table(analysis)
"""),
    ("md", r"""
## Fig 8a: learned features at each checkpoint

Left: the number of distinct features firing on the activation sample, per checkpoint (error bars:
one standard deviation over SAE seeds; dots: single seeds), so growth can be told from seed noise.
The dashed line counts only features that fire on at least 1 in 10,000 sampled activations: our SAEs
train on few activations and leave some features that fire once or twice, which the paper's count
includes; if growth is real it shows in both.
Right: the same as a share of the dictionary, beside the paper's two reported values (1,942 and
64,042 of 65,536). The paper's dictionaries are 32 times wider and trained on 1B activations each;
ours on far fewer, so compare shapes and ratios, not counts.
"""),
    ("code", r"""
fplots.learned_features(analysis, numbers()["feature_growth"]);
"""),
    ("md", r"""
## Fig 8b: the token-degree curve at each checkpoint

Token degree (the number of distinct features a token activates somewhere in the sample) against the
token's frequency rank in the sample, log-log, for the seed-0 SAE of each checkpoint. The steepness is
summarized two ways in the legend and the table above: the least-squares slope of log(degree) on
log(rank) over the `slope_ranks` most frequent tokens (more negative = steeper), and the share of the
SAE's connected features that the `top_tokens` most frequent tokens reach (the dotted line).
"""),
    ("code", r"""
fplots.degree_curves(analysis, cfg.top_tokens);
"""),
    ("md", r"""
## What it costs

SAE training is the cost of this chapter. On the embedded preset the defaults are chosen so that the
chapter takes a few minutes of the book's 30-minute budget on 2 CPU cores: five checkpoints, at most six
SAEs per checkpoint in the search plus two more seeds (at most 40 SAEs of 2,048 features; the search
usually stops much earlier), 150,000 activations per SAE (the paper: 1B), learned features counted on 50,000 held-out
activations (the paper: 500,000; the embedded held-out split has about 53,000 positions). Everything
is cached: a re-run with warm caches only re-evaluates. The `pythia` preset (online, one GPU) uses
Pythia's checkpoints, 8,192-feature SAEs and 20M activations per SAE; its `cost` line says what it
takes. Measured in this run (SAE training throughput: activations per second of `SAETrainer`, the model
forward that produces them excluded; chapter: wall time of `analyze`):
"""),
    ("code", r"""
fplots.training_summary(analysis)
"""),
    ("md", r"""
## What holds

Each claim, the paper's number, ours, and the verdict with its rule; the same rows feed the book's
scorecard. `provenance.artifacts` in the results file lists every checkpoint and SAE folder (SAELens
format: `sae_lens.SAE.load_from_disk`), and `provenance.data` the held-out windows and the exact
activation sample, so another program can recount the learned features.
"""),
    ("code", r"""
path = run.write(analysis["results"], analysis["claims"], analysis["data"], analysis["artifacts"])
print(f"results: {path}")
plots.claims_table(analysis["claims"])
"""),
]

if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "chapters" / "04_feature_growth.ipynb"
    write(str(out), CELLS)
    print(out)
