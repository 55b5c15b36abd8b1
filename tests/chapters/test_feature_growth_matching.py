"""Chapter 4's matching and verdict rules on cases where the answer is known: the coefficient
interpolated to the target on synthetic quality curves, the mean-ablation score of SAEs that reconstruct
exactly (1) or output the mean (0) against a brute-force recomputation with the HF model, distinct
checkpoints per fraction, the saturation flag and rule, and the coefficient-trend rule."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_causal_lm

from functok.chapters.feature_growth import analysis as F
from functok.chapters.feature_growth import claims, measure, search
from functok.core.config import ParamError
from functok.sae import activations as sae_activations
from functok.sae import quality

# ---------------------------------------------------------------------------------------------
# The coefficient at the target


def linear_in_log(u0: float, slope: float):
    """A score falling linearly in log(coefficient): s = 0.9 + slope * (u0 - log c), crossing 0.9 at u0."""

    def score_of(c):
        return 0.9 + slope * (u0 - math.log(c)), None

    return score_of


def test_crossing_is_exact_on_a_log_linear_curve_and_needs_a_bracket():
    score_of = linear_in_log(u0=1.3, slope=0.05)
    # the first trial (c = e, score 0.915) is within the loose tolerance; without `bracket` it would stop there
    best, trials = search.search_coefficient(score_of, 0.9, 0.02, start=math.e, max_steps=6)
    assert len(trials) == 1 and search.crossing(trials, 0.9) is None
    best, trials = search.search_coefficient(score_of, 0.9, 0.02, start=math.e, max_steps=6, bracket=True)
    assert len(trials) >= 2
    lo, hi = search.bracket_of(trials, 0.9)
    assert (lo.score - 0.9) * (hi.score - 0.9) <= 0
    assert math.log(search.crossing(trials, 0.9)) == pytest.approx(1.3, abs=1e-9)
    # with the slope known (the previous checkpoint's), a first trial within tolerance is bracketed in one step
    _, trials = search.search_coefficient(
        score_of, 0.9, 0.02, start=math.e, max_steps=6, bracket=True, prior_slope=-0.05
    )
    assert len(trials) == 2 and trials[1].score < 0.9 < trials[0].score
    assert math.log(search.crossing(trials, 0.9)) == pytest.approx(1.3, abs=1e-9)


@pytest.mark.parametrize("u_mid", [-3.0, 0.5, 4.0])
def test_crossing_brackets_the_target_on_monotone_curves(u_mid):
    """On a logistic quality curve the interpolated coefficient lies inside the final bracket, which
    holds the true crossing, and is closer to it than the bracket's ends are on the whole."""

    def score_of(c):
        return 0.2 + 0.8 / (1 + math.exp(math.log(c) - u_mid)), None

    target = 0.9
    u_true = u_mid + math.log(0.8 / (target - 0.2) - 1)  # where the logistic equals the target
    _, trials = search.search_coefficient(score_of, target, 0.01, start=1.0, max_steps=10, bracket=True)
    a, b = search.bracket_of(trials, target)
    ua, ub = sorted([math.log(a.coefficient), math.log(b.coefficient)])
    assert ua <= u_true <= ub
    u = math.log(search.crossing(trials, target))
    assert ua <= u <= ub and abs(u - u_true) <= 0.25 * (ub - ua) + 1e-9
    # a target above the curve's ceiling is never bracketed: no coefficient at the target
    _, trials = search.search_coefficient(score_of, 1.01, 0.001, start=1.0, max_steps=4, bracket=True)
    assert search.bracket_of(trials, 1.01) is None and search.crossing(trials, 1.01) is None


def test_crossing_picks_the_bracket_nearest_the_target_and_rounds_k():
    T = search.Trial
    trials = [T(1.0, 0.95), T(2.0, 0.85), T(4.0, 0.91), T(8.0, 0.70)]  # noisy: two crossings of 0.9
    a, b = search.bracket_of(trials, 0.9)
    assert {a.coefficient, b.coefficient} == {2.0, 4.0}  # the pair holding 0.91, the trial closest to 0.9
    assert search.crossing([T(10.0, 0.6), T(40.0, 0.8)], 0.7, integer=True) == 20.0  # sqrt(10 * 40)


# ---------------------------------------------------------------------------------------------
# Mean-ablation score: known answers and a brute-force recomputation

HOOK = "blocks.1.hook_resid_post"


def _windows(folder: Path, bos: int, n: int = 6, ctx: int = 16) -> Path:
    import datasets

    g = np.random.default_rng(0)
    x = g.integers(0, 500, size=(n, ctx), dtype=np.int64)
    x[:, 0] = bos
    x[2, 7] = bos  # a document boundary inside a window
    feats = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    datasets.Dataset.from_dict({"input_ids": [list(r) for r in x]}, features=feats).save_to_disk(str(folder))
    return folder


def _sae(folder: Path, w_enc, w_dec, b_dec) -> Path:
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    d_in, d_sae = w_enc.shape
    sae = StandardSAE(
        StandardSAEConfig(
            d_in=d_in,
            d_sae=d_sae,
            apply_b_dec_to_input=False,
            normalize_activations="none",
            metadata=SAEMetadata(hook_name=HOOK, model_name="tiny"),
        )
    )
    with torch.no_grad():
        sae.W_enc.copy_(w_enc)
        sae.W_dec.copy_(w_dec)
        sae.b_enc.zero_()
        sae.b_dec.copy_(b_dec)
    sae.save_model(str(folder))
    return folder


def _hf_losses(ckpt: Path, x: torch.Tensor, bos: int, replace=None):
    """(mean next-token loss, mean of layer 1's output over non-BOS positions) from the HF model, with
    layer 1's output at non-BOS positions replaced by `replace` if given."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(ckpt)).eval()
    mask = x != bos
    got = {}

    def hook(module, args, out):
        h = out[0] if isinstance(out, tuple) else out
        got["mean"] = h[mask].double().mean(0)
        if replace is None:
            return None
        h = h.clone()
        h[mask] = replace.to(h.dtype)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    hf.gpt_neox.layers[1].register_forward_hook(hook)
    with torch.no_grad():
        logits = hf(input_ids=x).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    return float(loss), got["mean"]


def test_mean_ablation_score_known_answers(tmp_path, tmp_cache):
    from functok.world.tokenizers import gpt2_tokenizer

    sae_activations.clear_memory()
    # three blocks, the hook after the second: the mean pass stops before the third
    ckpt = tiny_causal_lm(tmp_path / "neox", "gpt_neox", n_layers=3, d_model=16)
    bos = gpt2_tokenizer().bos_token_id
    win = _windows(tmp_path / "win", bos)
    x = torch.as_tensor(np.stack(__import__("datasets").load_from_disk(str(win))["input_ids"]), dtype=torch.long)

    h_orig, mean = _hf_losses(ckpt, x, bos)
    h_mean, _ = _hf_losses(ckpt, x, bos, replace=mean)
    last = []  # calls of the last block: the loss pass with the mean runs it, the mean pass does not
    m = sae_activations.model_for(ckpt)
    m.original_model.gpt_neox.layers[2].register_forward_hook(lambda *a: last.append(1))
    ref = quality.mean_ablation_loss(ckpt, HOOK, win)
    assert len(last) == -(-len(x) // 8)  # one call per batch of 8 windows: the loss pass only
    assert ref["ce_loss_mean_ablation"] == pytest.approx(h_mean, abs=1e-4)
    assert ref["n_positions"] == int((x != bos).sum()) and ref["mean_activation_norm"] == pytest.approx(
        float(mean.norm()), rel=1e-4
    )
    assert abs(h_mean - h_orig) > 1e-3  # the test needs a baseline that differs from the model

    d = mean.numel()
    eye = torch.eye(d)
    identity = _sae(tmp_path / "identity", torch.cat([eye, -eye], 1), torch.cat([eye, -eye], 0), torch.zeros(d))
    constant = _sae(tmp_path / "constant", torch.zeros(d, 2 * d), torch.zeros(2 * d, d), mean.float())
    scores = {}
    for name, folder in [("identity", identity), ("constant", constant)]:
        m = measure.with_scores(quality.evaluate_sae(folder, ckpt, win), ref)
        assert m["ce_loss_original"] == pytest.approx(h_orig, abs=1e-4)
        scores[name] = m
    assert scores["identity"]["mean_ablation_score"] == pytest.approx(1.0, abs=1e-3)
    assert scores["identity"]["delta_loss"] == pytest.approx(0.0, abs=1e-5)
    assert scores["constant"]["mean_ablation_score"] == pytest.approx(0.0, abs=1e-3)
    assert scores["constant"]["explained_variance"] == pytest.approx(0.0, abs=1e-4)
    # the same constant against zero ablation scores whatever H0 makes it: not a fixed point
    assert quality.mean_ablation_score(5.5, 5.0, 6.0) == pytest.approx(0.5)
    sae_activations.clear_memory()


# ---------------------------------------------------------------------------------------------
# Distinct checkpoints


EMBEDDED_STEPS = [0, 1, 2, 4, 7, 14, 28, 54, 105, 205, 398, 774, 1506, 2929]  # 14 log-spaced checkpoints


def test_fractions_get_distinct_checkpoints():
    rows = [{"step": s} for s in EMBEDDED_STEPS]
    # the old defaults: 0.38 and 0.7 share the nearest checkpoint (1506), which gave four checkpoints for five
    old = [0.05, 0.1, 0.38, 0.7, 1.0]
    nearest = {min(EMBEDDED_STEPS[1:], key=lambda s: abs(math.log(s / (f * 2929)))) for f in old}
    assert len(nearest) == 4
    got = [r["step"] for r in F.select_checkpoints(rows, old, [])]
    assert got == [105, 398, 774, 1506, 2929]
    assert [r["step"] for r in F.select_checkpoints(rows, [0.07, 0.14, 0.26, 0.5, 1.0], [])] == [
        205,
        398,
        774,
        1506,
        2929,
    ]
    assert [r["step"] for r in F.select_checkpoints(rows, [1.0] * 3, [])] == [774, 1506, 2929]
    with pytest.raises(ParamError, match=r"^checkpoint_fractions: got 14 fractions; the run has only 13 checkpoints"):
        F.select_checkpoints(rows, [0.5] * 14, [])


def test_too_few_checkpoints_refused_before_training(monkeypatch):
    """The embedded run's schedule is known from its config: too many fractions fail in `check`, one
    line, before any model is trained."""
    import functok.core.config
    from functok.chapters.feature_growth.config import FeatureGrowthConfig

    monkeypatch.setattr(F, "train_run", lambda *a, **k: pytest.fail("trained a model"))
    cfg = FeatureGrowthConfig(
        **(functok.core.config.defaults(FeatureGrowthConfig) | {"checkpoint_fractions": [0.5] * 20})
    )
    with pytest.raises(ParamError) as e:
        F.analyze(cfg, progress=False)
    assert str(e.value).startswith("checkpoint_fractions: got 20 fractions") and "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# Saturation and the verdicts


def fake_rows(counts, d_sae=100, slopes=None, coefs=None, matched=True, seeds=3):
    """Checkpoint rows as `measure.checkpoint_row` writes them, from learned-feature counts per step."""
    rows = []
    g = np.random.default_rng(0)
    for i, c in enumerate(counts):
        lf = (c + g.normal(0, 0.5, seeds)).tolist()
        sl = slopes[i] if slopes else -0.3
        rows.append(
            {
                "step": 10 * 2**i,
                "d_sae": d_sae,
                "n_activations": 1000,
                "frequent_min_fires": 1,
                "learned_features_seeds": lf,
                "frequent_features_seeds": lf,
                "saturated": bool(np.mean(lf) >= measure.SATURATED * d_sae),
                "frequent_saturated": bool(np.mean(lf) >= measure.SATURATED * d_sae),
                "degree_slope_seeds": (sl + g.normal(0, 0.002, seeds)).tolist(),
                "top_coverage_seeds": [0.5] * seeds,
                "matched": matched if isinstance(matched, bool) else matched[i],
                "score": 0.95,
                "ce_reconstruction_score": 0.9,
                "ce_loss_zero_ablation": math.log(4096),
                "explained_variance": 0.8,
                "coefficient_at_target": None if coefs is None else coefs[i],
                "seeds": [{"seed": k} for k in range(seeds)],
                "search": [{}, {}],  # two search SAEs at each checkpoint
            }
        )
    return rows


class Cfg:
    match_on, target_score, tolerance, search_steps = "mean_ablation", 0.95, 0.01, 5
    architecture, top_tokens, slope_ranks = "jumprelu", 10, 300
    n_seeds, seed = 3, 0


def verdicts(rows) -> dict:
    return {c["id"]: c["verdict"] for c in claims.make_claims(rows, Cfg)}


def test_saturation_flag_and_rule():
    assert measure.SATURATED == 0.9  # "within 10% of its ceiling"
    rows = fake_rows([20, 40, 60, 80, 89.0])
    assert [r["saturated"] for r in rows] == [False] * 5
    assert verdicts(rows)["learned_features_grow"] == "holds"
    # only the last saturates: growth still holds (the ceiling can only hide growth); the note says so
    rows = fake_rows([20, 40, 60, 80, 95])
    assert [r["saturated"] for r in rows] == [False] * 4 + [True]
    c = {c["id"]: c for c in claims.make_claims(rows, Cfg)}
    assert c["learned_features_grow"]["verdict"] == "holds" and "lower bound" in c["learned_features_grow"]["note"]
    # two checkpoints: no trend over all of them, and the two ends still decide
    assert verdicts(fake_rows([20, 80]))["learned_features_grow"] == "holds"
    assert "4,096 tokens" in {c["id"]: c for c in claims.make_preconditions(rows, Cfg)}["scores_matched"]["rule"]
    # the earliest checkpoint saturated: nothing can be said
    assert verdicts(fake_rows([95, 96, 97, 98, 99]))["learned_features_grow"] == "inconclusive"
    # saturated in between only: flagged, and the two ends still decide (here a fall)
    c = {c["id"]: c for c in claims.make_claims(fake_rows([80, 95, 70, 60, 50]), Cfg)}
    assert c["learned_features_grow"]["verdict"] == "fails" and "step(s) [20]" in c["learned_features_grow"]["note"]
    # the degree curve: flatter at a saturated end is not a failure
    flat = fake_rows([20, 40, 60, 80, 95], slopes=[-0.5, -0.4, -0.3, -0.2, -0.1])
    assert verdicts(flat)["degree_curve_steepens"] == "inconclusive"
    flat = fake_rows([20, 40, 60, 80, 85], slopes=[-0.5, -0.4, -0.3, -0.2, -0.1])
    assert verdicts(flat)["degree_curve_steepens"] == "fails"


def test_coefficient_trend_rule():
    down = [10.0, 6.0, 4.0, 3.0, 2.5]
    assert verdicts(fake_rows([1, 2, 3, 4, 5], coefs=down))["later_checkpoints_harder"] == "holds"
    assert verdicts(fake_rows([1, 2, 3, 4, 5], coefs=down[::-1]))["later_checkpoints_harder"] == "fails"
    one_swap = [10.0, 4.0, 6.0, 3.0, 2.5]  # rho -0.9, p = 5/120
    assert verdicts(fake_rows([1, 2, 3, 4, 5], coefs=one_swap))["later_checkpoints_harder"] == "holds"
    two_swaps = [6.0, 10.0, 3.0, 4.0, 2.5]  # rho -0.8, p = 10/120
    assert verdicts(fake_rows([1, 2, 3, 4, 5], coefs=two_swaps))["later_checkpoints_harder"] == "inconclusive"
    # step 105 against the rest only is no longer the rule: one unmatched checkpoint makes it inconclusive
    rows = fake_rows([1, 2, 3, 4, 5], coefs=down, matched=[True, True, False, True, True])
    assert verdicts(rows)["later_checkpoints_harder"] == "inconclusive"
    rows = fake_rows([1, 2, 3], coefs=[None, 2.0, 1.0], matched=[False, True, True])
    assert verdicts(rows)["later_checkpoints_harder"] == "inconclusive"


def test_spearman_trend_against_scipy():
    from scipy.stats import spearmanr

    g = np.random.default_rng(1)
    steps = [1, 3, 9, 27, 81, 243]
    for _ in range(5):
        v = g.normal(size=6)
        rho, p = claims.spearman_trend(steps, v, -1)
        assert rho == pytest.approx(spearmanr(steps, v).statistic)
        assert 0 < p <= 1
    assert claims.spearman_trend(steps[:5], [5, 4, 3, 2, 1], -1) == (pytest.approx(-1.0), pytest.approx(1 / 120))
    assert claims.spearman_trend(steps[:5], [5, 4, 3, 2, 1], +1)[1] == pytest.approx(1.0)


def test_every_note_states_rule_baseline_and_sample_size():
    rows = fake_rows([20, 40, 60, 80, 95], coefs=[10.0, 6.0, 4.0, 3.0, 2.5])
    for c in claims.make_claims(rows, Cfg):
        note = c["note"]
        assert "holds if" in note and "baseline" in note.lower(), c["id"]
        assert "5" in note and ("checkpoints" in note or "n =" in note), c["id"]


def test_growth_scored_per_seed_agree_or_fragile():
    # every seed's own pair grows far beyond the noise of one SAE pair: all hold, and the claim holds
    c = {c["id"]: c for c in claims.make_claims(fake_rows([20, 80]), Cfg)}
    grow = c["learned_features_grow"]
    assert grow["per_seed"] == {"0": "holds", "1": "holds", "2": "holds"} and grow["verdict"] == "holds"
    assert "the seeds agree" in grow["note"] and "pooled over seeds: holds" in grow["note"]
    # seed 1's SAEs do not grow: noise of one pair sqrt(var[10, 12, 11] + var[20, 11, 21]) = 5.6, so seeds 0 and
    # 2 (+10) are within 2 x 5.6, seed 1 (-1) fails, and the pooled mean (+6.3, SE 3.2) is inconclusive
    rows = fake_rows([10, 20])
    rows[0]["learned_features_seeds"] = [10.0, 12.0, 11.0]
    rows[1]["learned_features_seeds"] = [20.0, 11.0, 21.0]
    grow = {c["id"]: c for c in claims.make_claims(rows, Cfg)}["learned_features_grow"]
    assert grow["per_seed"] == {"0": "inconclusive", "1": "fails", "2": "inconclusive"}
    assert grow["verdict"] == "fragile" and "pooled over seeds: inconclusive" in grow["note"]
    assert "seed 1: fails (12 -> 11)" in grow["note"]
    # the unmatched-ends rule applies to every seed
    rows = fake_rows([20, 80], matched=[False, True])
    assert {c["id"]: c for c in claims.make_claims(rows, Cfg)}["learned_features_grow"]["per_seed"] == {
        "0": "inconclusive",
        "1": "inconclusive",
        "2": "inconclusive",
    }
    # the trend rests on the first seed's search only, and the note says what a search per seed would cost
    trend = {c["id"]: c for c in claims.make_claims(fake_rows([1, 2, 3], coefs=[3.0, 2.0, 1.0]), Cfg)}
    trend = trend["later_checkpoints_harder"]
    assert trend["per_seed"] == {"0": trend["verdict"]} and "would train 12 more SAEs" in trend["note"]
