"""The coverage null model of chapter 2 (as many random positions as the top-k tokens occupy): the
min-rank accumulation against brute force, a planted effect found and no effect not found, and the
claims' density precondition on hand-built results."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from functok.chapters.feature_coverage import claims as C
from functok.chapters.feature_coverage.frequency import correct_layers, frequency_control
from functok.chapters.feature_coverage.null import (
    CoverageNull,
    coverage_draws,
    drawn_positions,
    null_summary,
    permutation_ranks,
)
from functok.chapters.feature_coverage.stats import layer_stats
from functok.sae.graph import TokenFeatureGraph


def feed(tokens: np.ndarray, fired: list[np.ndarray], d_sae: int, n_draws: int, seed: int, backend="numpy", batch=37):
    """A graph and a null fed like the chapter's pass: batches of positions, their non-zeros as
    (rows within the batch, features)."""
    g = TokenFeatureGraph(int(tokens.max()) + 1, d_sae)
    null = CoverageNull(tokens.size, {0: d_sae}, n_draws, seed, backend=backend)
    for lo in range(0, tokens.size, batch):
        hi = min(lo + batch, tokens.size)
        rows = np.concatenate([np.full(fired[p].size, p - lo) for p in range(lo, hi)]).astype(np.int64)
        feats = np.concatenate([fired[p] for p in range(lo, hi)]).astype(np.int64)
        g.update_sparse(tokens[lo:hi], rows, feats)
        null.update(0, lo, hi - lo, rows, feats)
    return g, null


def random_codes(rng, n_positions: int, d_sae: int, rate: float) -> list[np.ndarray]:
    """Each position fires each feature independently with probability `rate` (some fire none)."""
    return [np.flatnonzero(rng.random(d_sae) < rate) for _ in range(n_positions)]


# ---------------------------------------------------------------------------------------------
# min_rank against brute force


def test_ranks_are_seeded_permutations():
    r = permutation_ranks(50, 4, seed=3)
    assert r.dtype == np.int32 and r.shape == (4, 50)
    assert all((np.sort(row) == np.arange(50)).all() for row in r)
    assert np.array_equal(r, permutation_ranks(50, 4, seed=3)) and not np.array_equal(r, permutation_ranks(50, 4, 4))
    assert len({tuple(row) for row in r}) == 4


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_min_rank_coverage_equals_brute_force_for_every_k(backend):
    rng = np.random.default_rng(0)
    n, d_sae, draws = 300, 64, 25
    tokens = rng.integers(0, 20, n)
    fired = random_codes(rng, n, d_sae, 0.02)
    _, null = feed(tokens, fired, d_sae, draws, seed=7, backend=backend)
    n_k = [1, 5, 17, 60, 150, 299, 300]
    got = coverage_draws(null.min_rank(0), n_k)
    for d in range(draws):
        order = np.argsort(null.ranks[d], kind="stable")  # draw d's positions in the order they are drawn
        for j, N in enumerate(n_k):
            sample = order[:N]
            assert len(set(sample.tolist())) == N  # without replacement
            assert set(sample.tolist()) == set(drawn_positions(null.ranks, d, N).tolist())
            covered = set()
            for p in sample:
                covered |= set(fired[p].tolist())
            assert got[d, j] == len(covered) / d_sae
    s = null_summary(null.min_rank(0), n_k)
    assert s["n_draws"] == draws and s["n_positions"] == n_k
    assert s["mean"] == pytest.approx(got.mean(axis=0).tolist())
    assert s["lo"] == pytest.approx(np.percentile(got, 2.5, axis=0).tolist())
    assert s["hi"] == pytest.approx(np.percentile(got, 97.5, axis=0).tolist())
    every = len(set(np.concatenate(fired).tolist())) / d_sae
    assert got[:, -1].tolist() == [every] * draws  # all positions: every draw covers the same
    assert s["mean"][-1] == s["lo"][-1] == s["hi"][-1] == every  # exactly, not up to rounding


def test_update_refuses_positions_beyond_the_pass():
    null = CoverageNull(10, {0: 4}, 20, seed=0)
    with pytest.raises(ValueError, match="out of range"):
        null.update(0, 8, 3, np.array([0]), np.array([1]))


# ---------------------------------------------------------------------------------------------
# A planted effect is found; no effect is not


def zipf_tokens(rng, n_positions: int, vocab: int) -> np.ndarray:
    p = 1.0 / np.arange(1, vocab + 1)
    return rng.choice(vocab, size=n_positions, p=p / p.sum())


def results_of(g, null, top_k=10) -> dict:
    """The results dict `make_claims` reads, for one synthetic layer repeated as three."""
    isf = np.zeros(g.vocab_size, bool)
    isf[:10] = True
    st = layer_stats(g, isf, top_k, null.min_rank(0))
    v = {k: x for k, x in st.items() if not k.startswith("_")}
    layers = {L: copy.deepcopy(v) for L in (0, 1, 2)}
    correct_layers({L: layers[L]["frequency_control"] for L in layers}, 0.05)
    return {"layer_order": [0, 1, 2], "n_layers": 3, "layers": layers}


def claim_of(results: dict, id: str, top_k=10) -> dict:
    return {c["id"]: c for c in C.make_claims(results, SimpleNamespace(top_k=top_k))}[id]


def test_planted_effect_is_found():
    """The 10 most frequent tokens fire fresh random features at every occurrence; every other token
    fires the same 3 features every time: the top tokens cover far more than as many random positions."""
    rng = np.random.default_rng(1)
    n, d_sae, vocab = 3000, 4000, 300
    tokens = zipf_tokens(rng, n, vocab)
    top = np.argsort(-np.bincount(tokens, minlength=vocab), kind="stable")[:10]
    own = {t: rng.choice(d_sae, 3, replace=False) for t in range(vocab)}
    fired = [rng.choice(d_sae, 8, replace=False) if t in top else own[t] for t in tokens]
    g, null = feed(tokens, fired, d_sae, 40, seed=0)
    res = results_of(g, null)
    v = res["layers"][1]
    assert v["topk_token_ids"] == top.tolist()
    n10 = v["null_coverage_topk"]["n_positions"][-1]
    assert n10 == int(np.isin(tokens, top).sum())
    ours, hi = v["coverage_topk"], v["null_coverage_topk"]["hi"]
    assert all(o > h for o, h in zip(ours[1:], hi[1:]))
    assert v["density"] <= C.MAX_DENSITY
    c = claim_of(res, "topk_beats_random_positions")
    assert c["verdict"] == "holds" and "40 draws" in c["note"] and f"{n10:,} positions" in c["note"]
    assert claim_of(res, "top10_coverage_middle")["verdict"] == ("holds" if ours[-1] >= 0.7 else "fails")


def test_no_effect_is_not_found():
    """Features independent of tokens (every position fires features at the same rate): the top tokens'
    occurrences are just as many random positions, so ours lies inside the null's interval."""
    rng = np.random.default_rng(2)
    n, d_sae, vocab = 3000, 4000, 300
    tokens = zipf_tokens(rng, n, vocab)
    fired = random_codes(rng, n, d_sae, 0.0005)  # 2 features per position: coverage far from saturated
    g, null = feed(tokens, fired, d_sae, 40, seed=0)
    res = results_of(g, null)
    v = res["layers"][1]
    nl = v["null_coverage_topk"]
    ours = v["coverage_topk"][-1]
    assert 0.3 < ours < 0.9 and nl["lo"][-1] < nl["hi"][-1]
    assert nl["lo"][-1] <= ours <= nl["hi"][-1]
    assert abs(ours - nl["mean"][-1]) < 0.02
    c = claim_of(res, "topk_beats_random_positions")
    assert c["verdict"] == "inconclusive" and "inside" in c["note"]
    # below the interval when the top tokens fire nothing at all
    top = np.argsort(-np.bincount(tokens, minlength=vocab), kind="stable")[:10]
    fired = [np.zeros(0, np.int64) if t in top else f for t, f in zip(tokens, fired)]
    g, null = feed(tokens, fired, d_sae, 40, seed=0)
    assert claim_of(results_of(g, null), "topk_beats_random_positions")["verdict"] == "fails"


# ---------------------------------------------------------------------------------------------
# The density precondition (hand-built results)


def hand_results(
    cov: list[float], density: list[float], null: tuple[float, float, float], k: int = 10, quality: dict | None = None
) -> dict:
    layers = {}
    for i, L in enumerate((3, 6, 9)):
        mean, lo, hi = null
        layers[L] = {
            "coverage_topk": [cov[i] / 2] * (k - 1) + [cov[i]],
            "density": density[i],
            "d_sae": 2048,
            "l0_in_pass": density[i] * 2048,
            "quality": quality if quality is not None else {"explained_variance": 0.9, "ce_reconstruction_score": 0.95},
            "n_tokens": 5000,
            "null_coverage_topk": {
                "mean": [mean] * k,
                "lo": [lo] * k,
                "hi": [hi] * k,
                "n_draws": 20,
                "n_positions": list(range(100, 100 * (k + 1), 100)),
            },
            "connected_share": 0.9,
            "frequency_control": frequency_control(np.zeros(3), np.zeros(3), np.zeros(3, bool)),  # nothing seen
            "degree_fit": {"r2_all": float("nan"), "slope": float("nan"), "n_content": 0, "n_function": 0},
        }
    correct_layers({L: v["frequency_control"] for L, v in layers.items()}, 0.05)
    return {"layer_order": [3, 6, 9], "n_layers": 12, "layers": layers}


def verdicts(res: dict) -> dict:
    return {c["id"]: c for c in C.make_claims(res, SimpleNamespace(top_k=10))}


def test_density_above_one_percent_makes_coverage_inconclusive():
    v = verdicts(hand_results([0.6, 0.9, 0.8], [0.04, 0.04, 0.04], (0.95, 0.93, 0.97)))
    top, mid = v["top10_coverage_middle"], v["middle_layer_highest"]
    assert top["verdict"] == "inconclusive" and mid["verdict"] == "inconclusive"
    assert "density L0/d_sae 4.00% (want <= 1%)" in top["note"] and "null's mean 95.0%" in top["note"]
    assert "[93.0%, 97.0%]" in top["note"] and "20 draws" in top["note"] and "1,000 positions" in top["note"]
    assert "L6: density L0/d_sae 4.00%" in mid["note"]
    assert v["topk_beats_random_positions"]["verdict"] == "fails"  # 90% < 93%: decided whatever the density
    # one dense layer is enough to leave the layer comparison undecided
    v = verdicts(hand_results([0.6, 0.9, 0.8], [0.005, 0.005, 0.02], (0.5, 0.45, 0.55)))
    assert v["middle_layer_highest"]["verdict"] == "inconclusive"
    assert v["top10_coverage_middle"]["verdict"] == "holds"


def test_every_part_of_the_quality_bar_counts():
    """A sparse SAE that explains too little, or breaks the model, or has dead features, is below the bar."""
    null = (0.5, 0.45, 0.55)
    for quality, fragment in (
        ({"explained_variance": 0.5, "ce_reconstruction_score": 0.95}, "explained variance 0.500"),
        ({"explained_variance": 0.9, "ce_reconstruction_score": 0.6}, "CE score 0.600"),
        ({}, None),  # a published SAE the chapter does not evaluate: judged on L0 and alive features alone
        ({"l0_registry": 80}, None),
        ({"explained_variance": 0.9}, "CE score not measured"),  # one the chapter trained but did not evaluate
    ):
        v = verdicts(hand_results([0.5, 0.9, 0.4], [0.004, 0.004, 0.004], null, quality=quality))
        top = v["top10_coverage_middle"]
        assert top["verdict"] == ("holds" if fragment is None else "inconclusive"), quality
        if fragment:
            assert fragment in top["note"] and v["middle_layer_highest"]["verdict"] == "inconclusive"
    res = hand_results([0.5, 0.9, 0.4], [0.004, 0.004, 0.004], null)
    res["layers"][6]["connected_share"] = 0.5
    assert "alive features 50.0%" in verdicts(res)["top10_coverage_middle"]["note"]


@pytest.mark.parametrize(
    "cov_mid, null, top, beats",
    [
        (0.9, (0.5, 0.45, 0.55), "holds", "holds"),  # >= 70% and above the interval
        (0.9, (0.9, 0.85, 0.95), "fails", "inconclusive"),  # >= 70% but inside the interval
        (0.6, (0.3, 0.25, 0.35), "fails", "holds"),  # above the interval but under 70%
        (0.8, (0.9, 0.85, 0.95), "fails", "fails"),  # below the interval
    ],
)
def test_sparse_sae_lets_the_rule_decide(cov_mid, null, top, beats):
    v = verdicts(hand_results([0.5, cov_mid, 0.4], [0.001, 0.004, 0.01], null))
    assert v["top10_coverage_middle"]["verdict"] == top
    assert v["topk_beats_random_positions"]["verdict"] == beats
    assert v["middle_layer_highest"]["verdict"] == "holds"  # density 1% exactly still passes
    assert "holds if >= 70% and above the null's 95% interval" in v["top10_coverage_middle"]["note"]
    v = verdicts(hand_results([0.5, cov_mid, cov_mid + 0.01], [0.001, 0.004, 0.01], null))
    assert v["middle_layer_highest"]["verdict"] == "fails"
