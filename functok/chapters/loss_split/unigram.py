"""Chapter 3's learning milestone: a unigram model's held-out loss.

The unigram model predicts every next token from its frequency alone, p(v) = (c_v + 1) / (N + V)
(add-one smoothing over the V-token vocabulary, so that a token never seen still has a finite loss),
whatever the context. A checkpoint whose held-out loss is not below this model's has learned nothing
a token count could not give, and a "phase" or an ordering of groups it shows may be frequency alone:
e.g. the unigram model's greedy prediction is its most frequent token at every position.

Counts, in order of preference:

- "training stream": the tokens of the training windows the embedded models were trained on, each
  window counted as often as the run's batches drew it (functok.world.pretrain.batch_indices over
  every optimizer step), so the unigram model has seen exactly the tokens the models saw;
- "held-out windows": for models whose training data functok does not hold (hub models, checkpoint
  folders, runs of another corpus), the chapter's held-out windows themselves. That model is fitted on
  the tokens it is scored on, so its loss is lower than a training-set unigram model's would be (a
  stricter milestone), and the results say so.

The held-out loss is scored on the same predictions as the models' (every position of every window
predicting the next one), per document as sums and counts in the layout of
functok.chapters.loss_split.evaluation.evaluate_model, so the chapter's document bootstrap applies.
"""

from __future__ import annotations

import numpy as np

from functok.world.function_tokens import function_mask
from functok.world.loss_groups import prediction_groups
from functok.world.pretrain import batch_indices, n_steps
from functok.world.windows import load_windows, token_windows

SMOOTHING = "add-one (Laplace): p(v) = (count(v) + 1) / (N + V) over the V-token vocabulary"


def unigram_logprobs(counts: np.ndarray, vocab_size: int, alpha: float = 1.0) -> np.ndarray:
    """log p(v) = log((c_v + alpha) / (N + alpha * V)) for v in 0..V-1 (counts shorter than V are padded
    with zeros)."""
    c = np.zeros(vocab_size, dtype=np.float64)
    c[: len(counts)] = np.asarray(counts, dtype=np.float64)[:vocab_size]
    return np.log(c + alpha) - np.log(c.sum() + alpha * vocab_size)


def token_counts(windows, vocab_size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Occurrences of each token id in `windows` [n, T]; with `weights` [n], window i counts weights[i]
    times."""
    x = np.asarray(windows, dtype=np.int64)
    w = None if weights is None else np.repeat(np.asarray(weights, dtype=np.float64), x.shape[1])
    return np.bincount(x.reshape(-1), weights=w, minlength=vocab_size).astype(np.float64)


def window_draws(seed: int, steps: int, batch_size: int, n_windows: int) -> np.ndarray:
    """How often each training window was drawn by `steps` optimizer steps (functok.world.pretrain's
    batch order)."""
    perms: dict = {}
    draws = np.zeros(n_windows, dtype=np.int64)
    for s in range(steps):
        np.add.at(draws, batch_indices(seed, s, batch_size, n_windows, perms), 1)
    return draws


def stream_counts(pcfg, vocab_size: int) -> tuple[np.ndarray, dict]:
    """Token counts of an embedded run's training stream: (counts [V], {"source", "n_tokens", ...})."""
    x = load_windows(token_windows(pcfg, "train")).numpy()
    steps = n_steps(pcfg)
    draws = window_draws(pcfg.seed, steps, pcfg.batch_size, x.shape[0])
    counts = token_counts(x, vocab_size, draws)
    return counts, {
        "source": "training stream",
        "n_tokens": int(counts.sum()),
        "n_windows": int(x.shape[0]),
        "windows_drawn": int((draws > 0).sum()),
        "steps": int(steps),
        "note": f"tokens of the {int((draws > 0).sum()):,} of {x.shape[0]:,} training windows that the "
        f"{steps:,} optimizer steps drew, each counted as often as it was drawn",
    }


def heldout_counts(windows, vocab_size: int) -> tuple[np.ndarray, dict]:
    """Token counts of the held-out windows themselves (no training counts for this model)."""
    counts = token_counts(windows, vocab_size)
    return counts, {
        "source": "held-out windows",
        "n_tokens": int(counts.sum()),
        "n_windows": int(np.asarray(windows).shape[0]),
        "note": "no training counts for this model: fitted on the held-out windows it is scored on, so its "
        "loss is lower than a training-set unigram model's (a stricter milestone)",
    }


def unigram_eval(windows, logp: np.ndarray, function_ids, special_ids, units=None) -> dict[str, np.ndarray]:
    """Sums and counts of the unigram model's loss per unit (document; `units` [n, T-1] as in evaluate_model,
    None: each window its own unit), "sums"/"counts" [n_units, 5] (the four groups, then all predictions),
    as evaluate_model lays them out."""
    import torch

    x = torch.as_tensor(np.asarray(windows), dtype=torch.long)
    n, t = x.shape
    u = np.repeat(np.arange(n), t - 1).reshape(n, t - 1) if units is None else np.asarray(units)
    n_units = int(u.max()) + 1 if u.size else 0
    V = logp.shape[0]
    g = prediction_groups(x, function_mask(V, function_ids), function_mask(V, special_ids)).numpy()
    per = -logp[x[:, 1:].numpy()]  # [n, T-1]
    sums, counts = np.zeros((n_units, 5)), np.zeros((n_units, 5))
    for j in range(4):
        sums[:, j] = np.bincount(u.reshape(-1), np.where(g == j, per, 0.0).reshape(-1), n_units)
        counts[:, j] = np.bincount(u.reshape(-1), (g == j).reshape(-1).astype(float), n_units)
    sums[:, 4] = np.bincount(u.reshape(-1), per.reshape(-1), n_units)
    counts[:, 4] = np.bincount(u.reshape(-1), minlength=n_units)
    return {"sums": sums, "counts": counts}


def past_milestone(losses, unigram_loss: float) -> list[bool]:
    """The milestone: a checkpoint is past it when its held-out loss (all predictions) is below the
    unigram model's on the same predictions. Undefined losses are not past it."""
    return [bool(np.isfinite(v) and v < unigram_loss) for v in np.asarray(losses, dtype=float)]
