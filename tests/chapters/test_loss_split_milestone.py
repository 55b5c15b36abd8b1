"""Chapter 3's learning milestone: the unigram model's loss against hand computations, its counts against
the batches the trainer actually fed, the milestone filter."""

from __future__ import annotations

import math

import numpy as np
import torch
from tiny import tiny_preset

import functok.world.pretrain
from functok.book.registry import pretrain_config
from functok.chapters.loss_split import unigram as U
from functok.chapters.loss_split.stats import KEYS

LN2 = math.log(2)


# ---------------------------------------------------------------------------------------------
# The unigram model by hand


def test_unigram_loss_equals_a_hand_computation():
    """Vocabulary {0, 1, 2, 3}; training counts 3, 1, 0, 0 (N = 4). Add-one: p = (3+1)/8, (1+1)/8, 1/8, 1/8
    = 1/2, 1/4, 1/8, 1/8. Held-out window 3 0 1 0 2 with 3 = BOS (special) and 0 the function token:
    3->0 (BOS: in 'all' only), 0->1 f->c, 1->0 c->f, 0->2 f->c; losses ln 2, ln 4, ln 2, ln 8."""
    counts = U.token_counts(np.array([[0, 1], [0, 0]]), 4)  # 0 three times, 1 once
    assert counts.tolist() == [3, 1, 0, 0]
    logp = U.unigram_logprobs(counts, 4)
    assert np.allclose(np.exp(logp), [1 / 2, 1 / 4, 1 / 8, 1 / 8])
    ev = U.unigram_eval(np.array([[3, 0, 1, 0, 2]]), logp, function_ids=[0], special_ids=[3])
    mean = ev["sums"].sum(0) / np.maximum(ev["counts"].sum(0), 1)
    i = {k: j for j, k in enumerate(KEYS)}
    assert ev["counts"][0].tolist() == [0, 2, 1, 0, 4]
    assert math.isclose(mean[i["all"]], (1 + 2 + 1 + 3) * LN2 / 4)
    assert math.isclose(mean[i["function->content"]], (2 + 3) * LN2 / 2)  # targets 1 and 2
    assert math.isclose(mean[i["content->function"]], LN2)  # target 0
    # weights: window [1, 1] drawn twice, [0, 2] once -> 1 four times, 0 once, 2 once
    assert U.token_counts(np.array([[1, 1], [0, 2]]), 4, weights=[2, 1]).tolist() == [1, 4, 1, 0]


def test_milestone_filter():
    assert U.past_milestone([5.7, 4.5, 4.44, float("nan"), 4.45], 4.45) == [False, False, True, False, False]


def test_stream_counts_are_the_tokens_the_trainer_fed(monkeypatch):
    """Record every batch train_step receives while the tiny models train: the unigram model's counts are
    exactly the tokens of those batches (of one model: both read the same batches)."""
    seen: list = []
    real = functok.world.pretrain.train_step

    def recording(model, opt, x, *a, **kw):
        seen.append(x.clone())
        return real(model, opt, x, *a, **kw)

    monkeypatch.setattr(functok.world.pretrain, "train_step", recording)
    with tiny_preset():
        runs = functok.world.pretrain.models("tiny")
        pcfg = pretrain_config("tiny")
        V = pcfg.vocab_size
        counts, info = U.stream_counts(pcfg, V)
    per_model = len(seen) // len(runs)
    assert per_model == functok.world.pretrain.n_steps(pcfg) and len(seen) == per_model * len(runs)
    fed = torch.bincount(torch.cat(seen[:per_model]).reshape(-1), minlength=V).numpy()
    assert torch.equal(torch.cat(seen[:per_model]), torch.cat(seen[per_model:]))
    assert counts.tolist() == fed.tolist()
    assert info["source"] == "training stream" and info["n_tokens"] == per_model * pcfg.batch_size * pcfg.context_size
