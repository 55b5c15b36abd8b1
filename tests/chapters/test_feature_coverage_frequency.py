"""The frequency control of chapter 2 (function vs content tokens of the same frequency) on synthetic
tokens where the answer is known: a planted function-token effect is found, no effect is not found even
though function tokens are far more frequent, an opposite effect fails; the matched pairs and their
unmatched reasons by hand; Holm-Bonferroni against hand-worked examples; the claims' rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from functok.chapters.feature_coverage import claims as C
from functok.chapters.feature_coverage.frequency import (
    ControlParams,
    correct_layers,
    degree_regression,
    frequency_control,
    holm,
    matched_pairs,
)

D_SAE = 2000


def synthetic(seed: int, boost: float = 1.0, saturate: bool = True, vocab: int = 3000):
    """Zipf counts (Poisson around 20,000 / rank^1.05); 60 function tokens: the 20 most frequent and 40
    of ranks 21-400, so function tokens are far more frequent than content tokens. A token's degree
    depends on its count only (saturating towards D_SAE, or a power law), times `boost` for function
    tokens (the planted effect, at equal frequency), with log-normal noise."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(20_000 / np.arange(1, vocab + 1) ** 1.05)
    isf = np.zeros(vocab, bool)
    isf[:20] = True
    isf[rng.choice(np.arange(20, 400), 40, replace=False)] = True
    c = counts.astype(float)
    mu = D_SAE * (1 - np.exp(-3 * c**0.8 / D_SAE)) if saturate else 3 * c**0.8
    mu = np.where(isf, mu * boost, mu)
    degree = np.round(mu * rng.lognormal(0, 0.3, vocab))
    degree = np.minimum(degree, D_SAE) if saturate else degree
    degree[counts == 0] = 0
    return degree.astype(np.int64), counts, isf


def three_layers(boosts, saturate=True, p=ControlParams()) -> dict:
    """The results dict `make_claims`' frequency claims read: one synthetic layer per boost, corrected."""
    layers = {}
    for i, b in enumerate(boosts):
        d, c, f = synthetic(i, b, saturate)
        layers[i] = {"frequency_control": frequency_control(d, c, f, p), "degree_fit": {}}
    correct_layers({L: v["frequency_control"] for L, v in layers.items()}, p.alpha)
    return {"layer_order": list(layers), "layers": layers}


# ---------------------------------------------------------------------------------------------
# Known answers


@pytest.mark.parametrize("saturate", [True, False])
def test_planted_effect_is_found(saturate):
    res = three_layers([1.6, 1.6, 1.6], saturate)
    for L in (0, 1, 2):
        r, m = res["layers"][L]["frequency_control"]["regression"], res["layers"][L]["frequency_control"]["matched"]
        assert 0 < r["lo"] < r["g"] < r["hi"] and abs(r["g"] - math.log(1.6)) < 0.15
        assert r["p_holm"] < 0.05 and r["n_tests"] == 3 and r["n_bootstrap"] == 1000
        assert 0 < m["lo"] < m["mean_diff"] and m["p_holm"] < 0.05
    c = C.frequency_claim(res, 1)
    assert c["verdict"] == "holds" and "baseline: content tokens of the same frequency" in c["note"]


def test_no_effect_is_not_found_though_function_tokens_are_more_frequent():
    d, c, f = synthetic(0)
    seen = c > 0
    assert np.median(c[f & seen]) > 10 * np.median(c[~f & seen])
    # the raw comparison (no frequency control) shows a large 'effect'
    assert np.log1p(d[f & seen]).mean() - np.log1p(d[~f & seen]).mean() > 2
    res = three_layers([1.0, 1.0, 1.0])
    for L in (0, 1, 2):
        r, m = res["layers"][L]["frequency_control"]["regression"], res["layers"][L]["frequency_control"]["matched"]
        assert r["lo"] < 0 < r["hi"] and r["p_holm"] >= 0.05
        assert m["lo"] < 0 < m["hi"]
        assert abs(m["mean_log_count_gap"]) < math.log(1.25)  # matched pairs are as frequent, on average
    c = C.frequency_claim(res, 1)
    assert c["verdict"] == "inconclusive" and "not significant at the corrected level" in c["note"]


def test_a_straight_line_mistakes_saturation_for_an_effect():
    """Why the frequency curve has knots: degree saturates with frequency, function tokens sit at the
    saturated end, and a straight line puts them below it (a spurious g < 0); the knots remove it."""
    d, c, f = synthetic(0)
    line = degree_regression(d, c, f, ControlParams(n_knots=0))
    assert line["hi"] < 0 and line["p"] < 0.05 and line["knots"] == []
    bent = degree_regression(d, c, f, ControlParams(n_knots=3))
    assert bent["lo"] < 0 < bent["hi"] and len(bent["knots"]) == 3


def test_opposite_effect_fails():
    res = three_layers([0.6, 0.6, 0.6])
    r = res["layers"][1]["frequency_control"]["regression"]
    assert r["hi"] < 0 and r["p_holm"] < 0.05
    assert C.frequency_claim(res, 1)["verdict"] == "fails"


def test_bootstrap_is_seeded_and_degree_zero_is_kept():
    d, c, f = synthetic(3)
    d[np.flatnonzero((c > 0) & ~f)[-50:]] = 0  # 50 rare content tokens seen but firing nothing
    a, b = degree_regression(d, c, f, ControlParams(seed=5)), degree_regression(d, c, f, ControlParams(seed=5))
    other = degree_regression(d, c, f, ControlParams(seed=6))
    assert a == b and a["g"] == other["g"] and (a["lo"], a["hi"]) != (other["lo"], other["hi"])
    seen = c > 0
    assert a["n_function"] + a["n_content"] == seen.sum()  # every seen token, degree 0 included
    assert a["n_zero_degree"] == {"function": 0, "content": 50}


def test_too_few_function_tokens_is_no_estimate():
    d, c, f = synthetic(0)
    few = np.zeros_like(f)
    few[:3] = True
    out = frequency_control(d, c, few)
    assert math.isnan(out["regression"]["g"]) and math.isnan(out["matched"]["mean_diff"])
    correct_layers({0: out, 1: frequency_control(d, c, f)}, 0.05)
    assert math.isnan(out["regression"]["p_holm"]) and out["regression"]["n_tests"] == 1


# ---------------------------------------------------------------------------------------------
# Matched pairs by hand


def test_matched_pairs_by_hand_every_function_token_reported():
    # function tokens 0-5, content tokens 6-13
    counts = np.array([10, 100, 1000, 50, 1, 0, 9, 11, 12, 8, 100, 120, 1, 1])
    degree = np.array([20, 60, 90, 30, 0, 0, 9, 3, 8, 1, 15, 35, 0, 1])
    isf = np.zeros(14, bool)
    isf[:6] = True
    m = matched_pairs(degree, counts, isf, ControlParams(window=1.25, n_bootstrap=1000))
    y = np.log1p(degree)
    rows = {r["token_id"]: r for r in m["matched"]}
    un = {r["token_id"]: r for r in m["unmatched"]}
    assert [r["token_id"] for r in m["matched"]] == [1, 0, 4]  # the most frequent first
    assert rows[0]["n_peers"] == 4  # counts 9, 11, 12, 8 lie in [8, 12.5]
    assert rows[0]["diff"] == pytest.approx(y[0] - y[[6, 7, 8, 9]].mean())
    assert rows[0]["peer_median_count"] == 10.0
    assert rows[1]["n_peers"] == 2 and rows[1]["diff"] == pytest.approx(y[1] - y[[10, 11]].mean())  # [80, 125]
    assert rows[4]["n_peers"] == 2 and rows[4]["diff"] == pytest.approx(0 - y[[12, 13]].mean())
    assert set(un) == {2, 3}
    assert "more frequent than every content token (the most frequent: 120)" in un[2]["reason"]
    assert "[800, 1250]" in un[2]["reason"]
    assert "gap in the counts" in un[3]["reason"] and "[40, 62.5]" in un[3]["reason"]
    assert (m["n_function_seen"], m["n_matched"], m["n_unmatched"], m["n_function_unseen"]) == (5, 3, 2, 1)
    assert m["n_above"] == 2 and m["n_below"] == 1
    assert math.isnan(m["mean_diff"])  # fewer than 5 matched: no estimate, but every row is reported


# ---------------------------------------------------------------------------------------------
# Holm-Bonferroni


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; 1 x 0.04 = 0.04, raised to 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, 0.02, 0.03, 0.04]) == pytest.approx([0.04, 0.06, 0.06, 0.06])
    assert holm([0.5, 0.6, 0.2]) == pytest.approx([1.0, 1.0, 0.6])  # capped at 1
    out = holm([0.02, float("nan"), 0.04])  # an untested layer is not in the family: m = 2
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)


def fake(g: float, p: float, diff: float = 0.0, p_m: float = 1.0) -> dict:
    reg = {
        "model": "m",
        "g": g,
        "factor": math.exp(g),
        "lo": g - 0.1,
        "hi": g + 0.1,
        "p": p,
        "n_function": 50,
        "n_content": 900,
        "n_zero_degree": {"function": 0, "content": 3},
        "n_bootstrap": 1000,
        "seed": 0,
        "level": 0.95,
    }
    mat = {
        "window": 1.25,
        "mean_diff": diff,
        "lo": diff - 0.1,
        "hi": diff + 0.1,
        "p": p_m,
        "n_matched": 30,
        "n_unmatched": 20,
        "n_function_seen": 50,
    }
    return {"regression": reg, "matched": mat}


def hand(*layers) -> dict:
    ctl = {L: v for L, v in zip((2, 4, 6), layers)}
    correct_layers(ctl, 0.05)
    return {"layer_order": [2, 4, 6], "layers": {L: {"frequency_control": v} for L, v in ctl.items()}}


def test_claim_uses_the_corrected_level():
    # p = 0.03 at the middle layer holds alone, but not after Holm over three layers (3 x 0.03 = 0.09)
    c = C.frequency_claim(hand(fake(0.1, 0.5), fake(0.3, 0.03), fake(0.1, 0.5)), 4)
    assert c["verdict"] == "inconclusive" and "Holm p 0.09" in c["note"] and "3 layers" in c["note"]
    c = C.frequency_claim(hand(fake(0.1, 0.5), fake(0.3, 0.001), fake(0.1, 0.5)), 4)
    assert c["verdict"] == "holds" and "30 of 50 function tokens matched, 20 unmatched" in c["note"]


def test_claim_says_when_layers_disagree_and_when_controls_disagree():
    c = C.frequency_claim(hand(fake(-0.3, 0.001), fake(0.3, 0.001), fake(0.1, 0.5)), 4)
    assert c["verdict"] == "holds"
    assert "the layers disagree: L2 lower, L4 higher, L6 not significant" in c["note"]
    c = C.frequency_claim(hand(fake(0.1, 0.5), fake(0.3, 0.001, -0.4, 0.001), fake(0.1, 0.5)), 4)
    assert c["verdict"] == "inconclusive" and "opposite directions" in c["note"]


def test_frequency_explains_degree_reports_every_layer():
    def res(r2s):
        fit = [{"r2_all": r, "n_content": 100, "n_function": 10} for r in r2s]
        return {"layer_order": [2, 4, 6], "layers": {L: {"degree_fit": f} for L, f in zip((2, 4, 6), fit)}}

    c = C.frequency_explains_claim(res([0.09, 0.32, 0.71]))
    assert c["verdict"] == "inconclusive" and c["ours"] == "L2: R2 0.09, L4: R2 0.32, L6: R2 0.71"
    assert "the layers disagree: R2 >= 0.5 at L6, below at L2, L4" in c["note"]
    assert C.frequency_explains_claim(res([0.6, 0.7, 0.8]))["verdict"] == "holds"
    assert C.frequency_explains_claim(res([0.1, 0.2, 0.3]))["verdict"] == "fails"


def _loop_bootstrap(degree, counts, is_function, p: ControlParams) -> tuple[np.ndarray, np.ndarray]:
    """The bootstraps written the plain way, one resample at a time (weighted lstsq per resample; the
    matched-pair mean per resample): the vectorized code must draw and compute the same numbers."""
    seen = np.flatnonzero(counts > 0)
    x, y, f = np.log(counts[seen].astype(float)), np.log1p(degree[seen].astype(float)), is_function[seen]
    k = np.linspace(x[~f].min(), x[~f].max(), p.n_knots + 2)[1:-1]
    X = np.column_stack([np.ones_like(x), x, *[np.maximum(0, x - kj) for kj in k], f.astype(float)])
    rng = np.random.default_rng(p.seed)
    gs = []
    for _ in range(p.n_bootstrap):
        w = np.zeros(y.size)
        for idx in (np.flatnonzero(f), np.flatnonzero(~f)):
            w += np.bincount(idx[rng.integers(0, idx.size, idx.size)], minlength=y.size)
        gs.append(np.linalg.lstsq((X * w[:, None]).T @ X, (X * w[:, None]).T @ y, rcond=None)[0][-1])
    yy = np.log1p(degree.astype(float))
    content = np.flatnonzero((counts > 0) & ~is_function)
    content = content[np.argsort(counts[content], kind="stable")]
    func = np.flatnonzero((counts > 0) & is_function)
    func = func[np.argsort(-counts[func], kind="stable")]
    cc = counts[content].astype(float)
    spans = []
    for t in func:
        i0 = np.searchsorted(cc, counts[t] / p.window * (1 - 1e-12), "left")
        i1 = np.searchsorted(cc, counts[t] * p.window * (1 + 1e-12), "right")
        if i1 > i0:
            spans.append((t, i0, i1))
    rng = np.random.default_rng(p.seed)
    draws = []
    for _ in range(p.n_bootstrap):
        wf = np.bincount(rng.integers(0, len(spans), len(spans)), minlength=len(spans))
        wc = np.bincount(rng.integers(0, cc.size, cc.size), minlength=cc.size)
        num = den = 0.0
        for (t, i0, i1), a in zip(spans, wf):
            if a and wc[i0:i1].sum():
                num += a * (yy[t] - (wc[i0:i1] * yy[content[i0:i1]]).sum() / wc[i0:i1].sum())
                den += a
        draws.append(num / den)
    return np.array(gs), np.array(draws)


def test_vectorized_bootstraps_equal_the_loop():
    degree, counts, isf = synthetic(3, boost=1.3)
    p = ControlParams(n_bootstrap=200, seed=7)
    gs, draws = _loop_bootstrap(degree, counts, isf, p)
    reg, m = degree_regression(degree, counts, isf, p), matched_pairs(degree, counts, isf, p)
    lo, hi = np.quantile(gs, [(1 - p.level) / 2, (1 + p.level) / 2])
    assert reg["lo"] == pytest.approx(lo, rel=1e-9) and reg["hi"] == pytest.approx(hi, rel=1e-9)
    lo, hi = np.quantile(draws, [(1 - p.level) / 2, (1 + p.level) / 2])
    assert m["lo"] == pytest.approx(lo, rel=1e-9) and m["hi"] == pytest.approx(hi, rel=1e-9)
