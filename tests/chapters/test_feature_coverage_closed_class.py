"""Chapter 2's closed-class control: rarefied degree against brute force, the labels, and planted corpora
where function words are exactly as frequent as content words and do, or do not, fire more features."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from functok.chapters.feature_coverage import claims as C
from functok.chapters.feature_coverage.closed_class import (
    binned_permutation_test,
    closed_class_control,
    rarefied_degree,
)
from functok.sae.graph import TokenFeatureGraph
from functok.world.closed_class import closed_class_words, function_label


def graph_of(tokens: np.ndarray, fired: list[np.ndarray], vocab: int, d_sae: int) -> TokenFeatureGraph:
    g = TokenFeatureGraph(vocab, d_sae)
    rows = np.concatenate([np.full(f.size, p) for p, f in enumerate(fired)]).astype(np.int64)
    g.update_sparse(tokens, rows, np.concatenate(fired).astype(np.int64))
    return g


def test_rarefied_degree_is_the_mean_over_every_subset():
    """Token 0 seen 6 times: the distinct features of every 3 of its occurrences, averaged over all 20 subsets."""
    rng = np.random.default_rng(0)
    fired = [rng.choice(10, rng.integers(1, 4), replace=False) for _ in range(6)] + [np.array([1, 2])]
    tokens = np.array([0] * 6 + [1])
    g = graph_of(tokens, fired, 2, 10)
    brute = np.mean([len(set().union(*(set(fired[i]) for i in s))) for s in itertools.combinations(range(6), 3)])
    d = rarefied_degree(g.edges(), g.token_counts(), 3)
    assert d[0] == pytest.approx(brute, abs=1e-9)
    assert np.isnan(d[1])  # seen once: fewer than n
    assert rarefied_degree(g.edges(), g.token_counts(), 6)[0] == pytest.approx(g.degree()[0])  # all occurrences


@pytest.mark.parametrize(
    "token, label",
    [(" the", "function"), (" of", "function"), (",", "function"), ("\n", "function"), (" house", "content")]
    + [("ing", None), (" 2019", None), (" The", "function")],
)
def test_labels_do_not_use_counts(token, label):
    assert function_label(token, closed_class_words()) == label


def planted(effect: float, seed: int = 0):
    """40 tokens, each seen exactly 80 times; tokens 0-19 labelled function. A function occurrence fires a fresh
    random feature with probability `effect`, else one of its token's 3 own features; content occurrences fire
    one of their 3 own features. effect > 0: function words fire more distinct features at the same count."""
    rng = np.random.default_rng(seed)
    vocab, d_sae, n_each = 40, 5000, 80
    own = {t: rng.choice(d_sae, 3, replace=False) for t in range(vocab)}
    tokens = rng.permutation(np.repeat(np.arange(vocab), n_each))
    fired = [rng.choice(d_sae, 1) if t < 20 and rng.random() < effect else rng.choice(own[t], 1) for t in tokens]
    labels = np.where(np.arange(vocab) < 20, 1, 0).astype(np.int8)
    return graph_of(tokens, fired, vocab, d_sae), labels


def verdict_of(g, labels, sizes=(25, 50)) -> dict:
    ctl = closed_class_control(g, labels, sizes, 2000, 0)
    results = {"layer_order": [0], "layers": {0: {"closed_class_control": ctl}}}
    return C.closed_class_claim(results, 0)


def test_planted_function_words_at_equal_count_are_found():
    c = verdict_of(*planted(0.5))
    assert c["verdict"] == "holds", c["ours"]
    assert "2,000 seeded permutations" in c["note"] and "n = 25, 50" in c["note"]


def test_no_difference_is_not_found():
    c = verdict_of(*planted(0.0))
    assert c["verdict"] == "inconclusive", c["ours"]


def test_content_words_firing_more_fails():
    g, labels = planted(0.5)
    c = verdict_of(g, (1 - labels).astype(np.int8))  # the same corpus with the labels swapped
    assert c["verdict"] == "fails", c["ours"]


def test_permutation_p_value_against_exact_enumeration():
    """One bin, 5 function and 5 content values: the exact permutation distribution has C(10, 5) = 252 equally
    likely labellings; the seeded Monte Carlo p converges to it within its own reported error."""
    v = np.array([5.0, 6.0, 7.0, 3.0, 4.5, 1.0, 2.0, 4.0, 3.5, 5.5])
    f = np.array([1] * 5 + [0] * 5, bool)
    counts = np.full(10, 100)
    obs = v[f].mean() - v[~f].mean()
    exact = np.mean(
        [
            abs(v[list(s)].mean() - np.delete(v, list(s)).mean()) >= obs - 1e-12
            for s in itertools.combinations(range(10), 5)
        ]
    )
    r = binned_permutation_test(v, f, counts, 20_000, 1)
    assert r["difference"] == pytest.approx(obs)
    assert abs(r["p"] - exact) < 4 * r["p_se"] + 1e-4
    assert r["p_se"] == pytest.approx(np.sqrt(r["p"] * (1 - r["p"]) / 20_000))
