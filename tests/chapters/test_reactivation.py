"""Chapter 5 (reactivation and steering): occurrence matching, rates and selection against brute force
on synthetic activations, the steering edit, and the chapter end to end on a tiny preset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny import tiny_preset

from functok.chapters.reactivation import analysis as R
from functok.chapters.reactivation import scan, setup, steering
from functok.chapters.reactivation.config import ReactivationConfig
from functok.core.config import ParamError, defaults

# SAEs small enough to train in seconds on the tiny models
FEATURE_COVERAGE = {"training_tokens": 2000, "sae_batch_size": 64, "expansion_factor": 4, "eval_windows": 2}


def test_occurrences_match_brute_force():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(30, 25))
    for ids in ([1], [2, 3], [0, 1, 2]):
        got = R.occurrences(x, ids)
        want = np.zeros_like(got)
        for i in range(x.shape[0]):
            for t in range(len(ids) - 1, x.shape[1]):
                want[i, t] = list(x[i, t - len(ids) + 1 : t + 1]) == ids
        assert np.array_equal(got, want) and want.any()


class _Sae:
    class cfg:
        d_sae = 5


def fake_setup(x: np.ndarray, is_function: np.ndarray, concepts: dict, bos: int | None = 0):
    return R.Setup(
        model=None,
        checkpoint="",
        layer=0,
        hook="",
        sae=_Sae(),
        sae_source="",
        is_function=is_function,
        function_token_file="",
        windows=torch.as_tensor(x),
        windows_path=None,
        concept_tokens=concepts,
        bos=bos,
    )


@pytest.fixture
def synthetic(monkeypatch):
    """Random windows over 8 token ids (0 = BOS, 1-3 function tokens, 7 the concept) and random firing."""
    rng = np.random.default_rng(1)
    x = rng.integers(1, 8, size=(40, 30))
    x[:, 0] = 0
    x[::3, 15] = 0  # a document boundary inside some windows
    f = torch.as_tensor(rng.random((40, 30, 5)) * (rng.random((40, 30, 5)) < 0.3), dtype=torch.float32)
    f[:, :, 4] += torch.as_tensor(x == 7, dtype=torch.float32) * 3  # feature 4 fires on the concept
    is_fn = np.zeros(8, dtype=bool)
    is_fn[1:4] = True
    monkeypatch.setattr(
        scan,
        "encode_windows",
        lambda s, bs, progress=True, with_acts=False: (
            (np.arange(i, min(i + bs, 40)), f[i : i + bs], torch.ones(min(bs, 40 - i), 30, 2))
            if with_acts
            else (np.arange(i, min(i + bs, 40)), f[i : i + bs])
            for i in range(0, 40, bs)
        ),
    )
    return x, f.numpy(), is_fn


@pytest.mark.parametrize("horizon", [4, 100])  # 100: longer than a window
def test_reactivation_rates_match_brute_force(synthetic, horizon):
    x, f, is_fn = synthetic
    s = fake_setup(x, is_fn, {"c": [7]})
    feat = 2
    got = R.reactivation_rates(s, {"c": feat}, horizon, batch_size=7, progress=False)["c"]
    k = dict.fromkeys(("fn_after", "fn_after_fired", "ct_after", "ct_after_fired", "fn_base", "fn_base_fired"), 0)
    bins = [dict.fromkeys(("fn", "fn_fired", "ct", "ct_fired"), 0) for _ in R.distance_bins(horizon)]
    for i in range(x.shape[0]):
        has = (x[i] == 7).any()
        for t in range(x.shape[1]):
            tokn = x[i, t]
            if tokn == 0:
                continue
            kind = "fn" if is_fn[tokn] else "ct"
            fired = f[i, t, feat] > 0
            if not has and kind == "fn":
                k["fn_base"] += 1
                k["fn_base_fired"] += fired
            if tokn == 7:
                continue
            # an occurrence of the concept within `horizon` before t, with no BOS in between
            us = [u for u in range(max(0, t - horizon), t) if x[i, u] == 7 and not (x[i, u + 1 : t + 1] == 0).any()]
            if us:
                k[f"{kind}_after"] += 1
                k[f"{kind}_after_fired"] += fired
                d = t - max(us)  # distance from the latest occurrence
                b = next(j for j, (lo, hi) in enumerate(R.distance_bins(horizon)) if lo <= d <= hi)
                bins[b][kind] += 1
                bins[b][f"{kind}_fired"] += fired
    for key, v in k.items():
        assert got[key] == v, key
    assert got["fn_after"] > 0 and got["fn_base"] > 0
    assert got["fn_after_rate"] == pytest.approx(k["fn_after_fired"] / k["fn_after"])
    for row, want in zip(got["by_distance"], bins):
        assert {key: row[key] for key in want} == want, (row["lo"], row["hi"])
    # the content rate at the function tokens' distances: each bin's content rate, weighted by its function tokens
    matched = sum(b["fn"] / k["fn_after"] * b["ct_fired"] / b["ct"] for b in bins if b["fn"])
    assert got["ct_after_rate_matched"] == pytest.approx(matched)


def test_select_features_finds_the_planted_feature(synthetic):
    x, f, is_fn = synthetic
    sel = scan.select_features(fake_setup(x, is_fn, {"c": [7], "pair": [3, 7]}), batch_size=9, progress=False)
    assert sel["c"]["selected"] == 4 and sel["pair"]["selected"] == 4
    occ = x == 7
    assert sel["c"]["n_occurrences"] == int(occ.sum())
    assert sel["c"]["p_on"][4] == 1.0
    # measured on the second half of the documents (stream order; a BOS starts a document)
    docs = np.cumsum(x.reshape(-1) == 0).reshape(x.shape) - 1
    second = docs >= (docs.max() + 1) - (docs.max() + 1) // 2
    assert sel["c"]["n_occurrences_measure"] == int((occ & second).sum()) > 0
    assert sel["c"]["mean_act_on"][4] == pytest.approx(f[occ & second][:, 4].mean())
    fired = (f > 0) & (x != 0)[..., None]
    assert np.array_equal(sel["c"]["fired"], fired[second].sum(0))
    assert np.array_equal(sel["c"]["fired_select"], fired[~second].sum(0))


def test_episode_precision_on_a_constructed_case():
    """Documents of 20 tokens; the concept (7) at positions 5 of every document; feature 0 fires on the concept and
    re-fires on the next three positions, feature 1 on the concept only, feature 2 on every position 15 (10 after
    the concept). Episode window 8: features 0 and 1 have episode precision 1 (at the concept's own token, 1/4
    and 1), feature 2 has 0; with window 10 feature 2's firings are in the episode too."""
    from functok.chapters.reactivation.episodes import episode_positions

    doc = np.array([0] + [9] * 19)  # BOS then 19 tokens
    doc[5] = 7
    x = np.tile(doc, 6).reshape(4, 30)  # 6 documents cut into 4 windows of 30: episodes cross window edges
    f = np.zeros((4, 30, 3), dtype=np.float32)
    pos = np.arange(120).reshape(4, 30) % 20
    f[..., 0] = (pos >= 5) & (pos <= 8)
    f[..., 1] = pos == 5
    f[..., 2] = pos == 15
    valid = x != 0
    docs = np.cumsum(x.reshape(-1) == 0).reshape(x.shape) - 1
    ep8 = episode_positions(x == 7, docs, valid, 8)
    assert np.array_equal(ep8, valid & (pos >= 5) & (pos <= 13))  # 5..13: the concept and 8 after it
    assert np.array_equal(episode_positions(x == 7, docs, valid, 10), valid & (pos >= 5) & (pos <= 15))

    def measured(window):
        s = fake_setup(x, np.zeros(10, dtype=bool), {"c": [7]})
        s.sae = type("S", (), {"cfg": type("C", (), {"d_sae": 3})})()
        enc = lambda s_, bs, progress=True, with_acts=False: iter(  # noqa: E731
            [(np.arange(4), torch.as_tensor(f), torch.ones(4, 30, 2))]
        )
        scan.encode_windows, real = enc, scan.encode_windows
        try:
            return scan.select_features(s, batch_size=4, progress=False, episode_window=window)["c"]
        finally:
            scan.encode_windows = real

    r = measured(8)
    prec = r["on_episode"] / r["fired"]
    assert list(prec) == [1.0, 1.0, 0.0]
    assert list(r["on"] / r["fired"]) == [0.25, 1.0, 0.0]  # precision at the concept's token
    assert r["n_occurrences_select"] == 3 and r["n_occurrences_measure"] == 3  # documents 0-2 select, 3-5 measure
    assert r["fired"][0] == 12  # 4 firings in each of the 3 measured documents
    assert list(measured(10)["on_episode"] / measured(10)["fired"]) == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# The chapter on a tiny preset


@pytest.fixture(scope="module")
def env():
    with tiny_preset(feature_coverage=FEATURE_COVERAGE) as d:
        yield d


PROMPT: list[str] = []  # a prompt ending in one of the tiny model's function tokens, found in `env`


def tiny_cfg(**kw) -> ReactivationConfig:
    base = defaults(ReactivationConfig) | {
        "preset": "tiny",
        "concepts": [" the", " of"],
        "n_windows": 20,
        "horizon": 8,
        "trace_prompts": ["The history of the"],
        "steer_prompts": PROMPT,
        "alphas": [0, 50],
        "n_new_tokens": 3,
    }
    return ReactivationConfig(**(base | kw))


def _prompt_ending_in_a_function_token() -> str:
    import json

    from transformers import AutoTokenizer

    from functok.world.embedded import tokenizer_dir
    from functok.world.pretrain import embedded_checkpoint

    _, run = embedded_checkpoint("tiny")
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir("tiny")))
    for i in json.loads((run / "function_tokens.json").read_text())["ids"]:
        text = "The history" + tok.decode([i])
        if tok.encode(text, add_special_tokens=False)[-1] == i:
            return text
    raise AssertionError("no prompt ends in a function token")


@pytest.fixture(scope="module")
def analysis(env):
    PROMPT[:] = [_prompt_ending_in_a_function_token()]
    return R.analyze(tiny_cfg(), progress=False)


def test_chapter_end_to_end(analysis):
    res = analysis.results
    assert res["layer"] == setup.default_layer(res["n_layers"]) and res["d_sae"] == 4 * 16
    assert {c["id"] for c in analysis.claims} == {
        "reactivation",
        "reactivation_function_vs_content",
        "steering_probability",
        "steering",
        "steering_position_control",
    }
    assert all(c["verdict"] in ("holds", "fails", "inconclusive") for c in analysis.claims)
    # every claim reads the features of one SAE, chapter 2's first seed, and says so
    assert res["sae_seed"] == 0 and all(c["per_seed"] == {"0": c["verdict"]} for c in analysis.claims)
    assert all("scored on one SAE seed (0" in c["note"] for c in analysis.claims)
    parts = res["timing"]["parts_s"]  # where the chapter's time went, part by part
    assert list(parts) == ["scan", "sae_quality", "reactivation", "unsteered", "steering", "cards"]
    assert all(v >= 0 for v in parts.values()) and sum(parts.values()) <= res["timing"]["total_s"]
    for c, v in res["concepts"].items():
        assert v["n_occurrences"] > 0 and 0 <= v["feature"] < res["d_sae"]
        assert (np.isnan(v["precision"]) or 0 <= v["precision"] <= 1) and v["unsteered"]["contexts"] >= 0
        assert 0 <= v["unsteered"]["predicted"] <= v["unsteered"]["contexts"]
        assert set(v["steering_success"]) == {"0", "50"}
    q = res["sae_quality"]
    assert q["d_sae"] == res["d_sae"] and 0 <= q["alive"] <= 1 and q["density"] == q["l0"] / q["d_sae"]
    assert isinstance(q["failures"], list)
    t = res["traces"][0]
    assert len(t["tokens"]) == len(t["function"]) == len(next(iter(t["acts"].values())))
    # alpha 0 is the unsteered model: the same continuation for every concept
    base = {r["continuation"] for r in res["steering"] if r["alpha"] == 0 and r["condition"] == "last"}
    assert len(base) == 1
    for c, v in res["concepts"].items():  # every cell counts the prompts it has; alpha 0 is each cell's own prompt
        cells = v["steering_counts"]
        assert set(cells) <= set(res["steer_conditions"]) and "last" in cells and "every" in cells
        for k, by_alpha in cells.items():
            rows = [r for r in res["steering"] if r["concept"] == c and r["condition"] == k]
            for a, (hits, n) in by_alpha.items():
                assert n == sum(r["alpha"] == int(a) for r in rows) and hits == sum(
                    r["success"] for r in rows if r["alpha"] == int(a))  # fmt: skip
    for r in res["steering"]:
        assert r["concept_logprob"] <= 0 and r["concept_rank"] >= 1


def test_single_token_feature_share_recounts_by_sets(env, analysis):
    """The share of alive features one token type fires, recounted with a set of token types per feature
    (the chapter tracks only each feature's least and greatest token id)."""
    s = R.setup(tiny_cfg(), progress=False)
    x = s.windows.numpy()
    types: dict[int, set] = {}
    for idx, f in scan.encode_windows(s, 4, progress=False):
        for w, row in zip(idx, (f > 0).numpy()):
            for pos, feat in zip(*np.nonzero(row)):
                if s.bos is None or x[w, pos] != s.bos:
                    types.setdefault(int(feat), set()).add(int(x[w, pos]))
    want = sum(len(t) == 1 for t in types.values()) / len(types)
    assert analysis.results["sae_quality"]["single_token_feature_share"] == pytest.approx(want, abs=1e-12)


def test_steering_edits_only_the_last_prompt_position(env, analysis):
    s = R.setup(tiny_cfg(), progress=False)
    ids = torch.tensor([steering._prompt_ids(s, PROMPT[0])])
    pos = ids.shape[1] - 1
    v = steering.steering_vector(s, 0, 1.0, 100.0)
    assert float(v.norm()) == pytest.approx(100.0, rel=1e-4)
    caught = {}

    def add(act, hook):
        act[:, pos, :] += v
        return act

    def grab(act, hook):
        caught["x"] = act.clone()

    with torch.no_grad():
        s.model.run_with_hooks(ids, fwd_hooks=[(s.hook, grab)])
        plain = caught["x"]
        s.model.run_with_hooks(ids, fwd_hooks=[(s.hook, add), (s.hook, grab)])
        edited = caught["x"]
    assert torch.allclose(edited[:, :pos], plain[:, :pos])
    assert torch.allclose(edited[:, pos] - plain[:, pos], v, atol=1e-4)
    # generation (batched, KV cache, the plain transformers model) gives the tokens of an uncached loop
    # through the bridge with the same edit at the chapter's hook
    from functok.sae.generation import generate as generate_tokens

    edits = [None, ([pos], torch.zeros_like(v)), ([pos], v * 10)]  # what steer() passes for the "last" cell
    outs, first = generate_tokens(setup.generator(s), ids.tolist() * 3, 3, edits=edits, layer=s.layer)
    v.mul_(10)  # what `add` adds
    x = ids
    with torch.no_grad():
        for _ in range(3):
            x = torch.cat([x, s.model.run_with_hooks(x, fwd_hooks=[(s.hook, add)])[0, -1].argmax().view(1, 1)], 1)
        want = torch.log_softmax(s.model(ids)[0, -1].float(), -1)
    assert outs[2] == x[0, ids.shape[1] :].tolist()
    assert outs[0] == outs[1] != outs[2]
    assert torch.allclose(first[0], want, atol=1e-5)


def test_depth_scan_measures_a_layer_as_the_chapter_does(env, analysis, monkeypatch):
    """The depth scan at a further layer finds what the chapter itself finds with that layer as its own: the same
    feature per concept with the same occurrence and episode-precision counts, and the same SAE quality; a card
    per named feature; scan_layers stays out of the main measurements' key, and a warm re-run reads the scan
    from the cache."""
    from functok.chapters.reactivation import depth

    own = analysis.results["layer"]
    other = 1 - own  # the tiny model has 2 layers
    a = R.analyze(tiny_cfg(scan_layers=[own, other]), progress=False)
    assert list(a.results["depth_scan"]) == [str(other)]  # the chapter's own layer is not scanned twice
    d = a.results["depth_scan"][str(other)]
    b = R.analyze(tiny_cfg(layer=other), progress=False).results
    assert d["layer"] == other and d["hook_name"] == b["hook_name"] and d["sae"] == b["sae"]
    for c, v in b["concepts"].items():
        got = d["concepts"][c]
        assert (got["feature"], got["n_occurrences"]) == (v["feature"], v["n_occurrences"])
        assert got["precision_counts"] == v["precision_counts"]
        assert got["precision_interval"] == pytest.approx(v["precision_interval"])
    assert {k: d["sae_quality"][k] for k in ("l0", "alive", "failures")} == {
        k: b["sae_quality"][k] for k in ("l0", "alive", "failures")
    }
    assert set(d["feature_cards"]) == set(d["concepts"])
    assert all(card["layer"] == other for card in d["feature_cards"].values())
    assert d["seconds"] > 0
    assert R.key_fields(tiny_cfg(scan_layers=[other])) == R.key_fields(tiny_cfg())
    monkeypatch.setattr(scan, "select_features", lambda *a, **k: pytest.fail("a warm re-run scanned the windows"))
    assert R.analyze(tiny_cfg(scan_layers=[other]), progress=False).results["depth_scan"][str(other)] == d
    assert depth.DEPTH_VERSION >= 1


def test_warm_rerun_reads_the_cache(env, analysis, monkeypatch):
    monkeypatch.setattr(scan, "select_features", lambda *a, **k: pytest.fail("a warm re-run scanned the windows"))
    again = R.analyze(tiny_cfg(), progress=False)
    assert again.results["timing"].get("cached") is True
    strip = [{k: v for k, v in a.results.items() if k != "timing"} for a in (again, analysis)]
    assert strip[0] == strip[1] and again.claims == analysis.claims


def test_given_features_are_used(env, analysis):
    a = R.analyze(tiny_cfg(features=[3, 5]), progress=False)
    assert [v["feature"] for v in a.results["concepts"].values()] == [3, 5]
    assert all(v["chosen_by"] == "user" for v in a.results["concepts"].values())


def test_a_concept_only_in_the_measured_half_is_refused(tmp_path):
    """Two documents (BOS = 0): token 7 occurs only in the second, where features are measured, not selected."""
    x = torch.tensor([[0, 5, 6, 5, 0, 7, 5, 7]])
    setup.check_concepts_occur(x, tmp_path, {"five": [5], "pair": [5, 6]}, 0, 1)  # both in the first document
    with pytest.raises(ParamError, match="^concepts: 'seven' occurs 2 times in the 1 windows scanned, none in the fi"):
        setup.check_concepts_occur(x, tmp_path, {"five": [5], "seven": [7]}, 0, 1)
    with pytest.raises(ParamError, match="^concepts: 'nine' never occurs"):
        setup.check_concepts_occur(x, tmp_path, {"nine": [9]}, 0, 1)


def test_a_concept_the_windows_never_hold_is_refused_before_any_sae_or_scan(env, analysis, monkeypatch):
    monkeypatch.setattr(setup, "_sae_source", lambda *a, **k: pytest.fail("an SAE was made before the check"))
    monkeypatch.setattr(scan, "select_features", lambda *a, **k: pytest.fail("the windows were scanned first"))
    with pytest.raises(ParamError, match="^concepts: ' xqzvjk' never occurs in the 20 windows scanned"):
        R.analyze(tiny_cfg(concepts=[" the", " xqzvjk"]), progress=False)


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"features": [1]}, "^features: got 1 ids for 2 concepts"),
        ({"features": [1, 10_000]}, "^features: 10000 is not a feature"),
        ({"steer_prompts": ["The history xqz"]}, "^steer_prompts: 'The history xqz' ends in"),
        ({"concepts": [" xqzvjk"]}, "^concepts: ' xqzvjk' never occurs"),
        ({"layer": 7}, "^layer: got 7; the model has 2 layers"),
        ({"trait_layers": [2]}, "^trait_layers: got 2; the model has 2 layers"),
        ({"scan_layers": [0, 2]}, "^scan_layers: got 2; the model has 2 layers"),
        ({"chat_template": True}, "^chat_template: the tokenizer of 'embedded' has no chat template"),
    ],
)
def test_bad_input_is_refused_with_one_line(env, analysis, kw, fragment):
    with pytest.raises(ParamError, match=fragment) as e:
        R.analyze(tiny_cfg(**kw), progress=False)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# Preconditions (issue 13): a concept feature of stated precision, a model that produces the concept


def test_precision_is_p_concept_given_fires(synthetic):
    x, f, is_fn = synthetic
    sel = scan.select_features(fake_setup(x, is_fn, {"c": [7]}), batch_size=9, progress=False)["c"]
    valid = x != 0
    docs = np.cumsum(x.reshape(-1) == 0).reshape(x.shape) - 1
    second = docs >= (docs.max() + 1) - (docs.max() + 1) // 2  # measured on the second half of the documents
    fires = (f[:, :, 4] > 0) & valid & second
    want = (fires & (x == 7)).sum() / fires.sum()
    assert sel["on"][4] / sel["fired"][4] == pytest.approx(want) and 0 < want < 1


def test_unsteered_production_counts_greedy_hits():
    """A model that predicts the true next token at even positions only: the count of predicted
    concept starts is the brute-force count of concept starts at even positions."""
    rng = np.random.default_rng(3)
    x = rng.integers(1, 8, size=(12, 20))
    V = 8

    def predict(xb, w, p):  # the true next token at even positions, 0 elsewhere
        return np.where(p % 2 == 0, xb.numpy()[w, p + 1], 0)

    s = fake_setup(x, np.zeros(V, dtype=bool), {"c": [7, 2], "never": [5]})
    got = R.unsteered_production(s, batch_size=5, predict=predict)
    starts = [(i, p) for i in range(12) for p in range(19) if x[i, p + 1] == 7]
    assert got["c"]["contexts"] == len(starts) > 0
    assert got["c"]["predicted"] == sum(p % 2 == 0 for _, p in starts) > 0
    never = R.unsteered_production(s, batch_size=5, predict=lambda xb, w, p: np.zeros(len(w), dtype=np.int64))
    assert never["never"]["predicted"] == 0


def test_greedy_at_is_the_models_argmax_at_those_positions(tmp_path):
    """greedy_at unembeds the final hidden states at the given positions: the argmax of the full logits there."""
    from tiny import tiny_causal_lm

    ck = tiny_causal_lm(tmp_path / "ckpt", "gemma3", n_layers=2, d_model=32)
    s = fake_setup(np.zeros((1, 4), dtype=np.int64), np.zeros(10, dtype=bool), {})
    s.checkpoint = str(ck)
    from functok.sae.generation import load_generator

    gen = load_generator(ck)
    s.generator = gen
    xb = torch.as_tensor(np.random.default_rng(0).integers(300, 5000, size=(3, 10)))
    w, p = np.array([0, 1, 2, 2]), np.array([1, 9, 0, 4])
    with torch.no_grad():
        want = gen(input_ids=xb).logits.argmax(-1).numpy()[w, p]
    assert np.array_equal(steering.greedy_at(s)(xb, w, p), want)


def _result(precisions: dict, predicted: dict, fn_ratio: float = 3.0, success: float = 0.9) -> dict:
    concepts = {
        c: {
            "precision": p,
            "n_occurrences": 500,
            "p_fire_on_concept": 0.9,  # 450 firings on the concept: the bound is within 5 points of p
            "unsteered": {"contexts": 10, "predicted": predicted[c]},
            "reactivation": {
                "fn_ratio": fn_ratio,
                "fn_after_rate": 0.3,
                "fn_base_rate": 0.1,
                "ct_after_rate": 0.2,
            },
            "steering_success": {"0": 0.0, "4": success},
            "steering_logprob": {"0": -5.0, "4": -1.0},
            "steering_counts": {
                "last": {"0": [0, 40], "4": [round(40 * success), 40]},
                "content_last": {"0": [0, 40], "4": [0, 40]},
                "function_earlier": {"0": [0, 40], "4": [1, 40]},
            },
        }
        for c, p in precisions.items()
    }
    return {"concepts": concepts, "alphas": [0, 4]}


def test_claims_follow_the_preconditions():
    from functok.chapters.reactivation.claims import make_claims

    cfg = tiny_cfg(min_precision=0.5, steer_prompts=["x"])
    by = {c["id"]: c for c in make_claims(_result({" A": 0.9, " B": 0.8}, {" A": 3, " B": 1}), cfg)}
    assert by["reactivation"]["verdict"] == "holds" and by["steering"]["verdict"] == "holds"
    # imprecise features: nothing to test, whatever the rates say
    by = {c["id"]: c for c in make_claims(_result({" A": 0.01, " B": 0.2}, {" A": 3, " B": 1}), cfg)}
    assert {c["verdict"] for c in by.values()} == {"inconclusive"}
    assert "precision 450/45000 = 1.0%, 95% lower bound 0.9% < 50%" in by["reactivation"]["note"]
    # precise features, but the model never produces the concepts: re-activation judged, steering not
    by = {c["id"]: c for c in make_claims(_result({" A": 0.9, " B": 0.8}, {" A": 0, " B": 0}, success=0.0), cfg)}
    assert by["reactivation"]["verdict"] == "holds"
    assert by["steering"]["verdict"] == by["steering_probability"]["verdict"] == "inconclusive"
    assert "predicts it in 0 of 10 contexts" in by["steering"]["note"]
    # one concept passes: judged on it alone
    by = {c["id"]: c for c in make_claims(_result({" A": 0.9, " B": 0.01}, {" A": 2, " B": 2}, success=0.0), cfg)}
    assert by["steering"]["verdict"] == "fails" and "B (feature precision" in by["steering"]["note"]


def test_a_feature_that_fired_a_few_times_is_no_concept_feature():
    """Precision 1 from one firing (a feature that fired once, on the concept) does not pass the bar; the
    Wilson bound by hand: 1 of 1 gives 0.207, 20 of 20 gives 0.839, 45 of 50 gives 0.786."""
    from functok.chapters.reactivation.claims import make_claims, precision_bound

    def v(on, fired, occ):
        return {"n_occurrences": occ, "p_fire_on_concept": on / occ, "precision": on / fired}

    assert precision_bound(v(1, 1, 20)) == (1, 1, pytest.approx(0.2065, abs=1e-3))
    assert precision_bound(v(20, 20, 20))[2] == pytest.approx(0.8389, abs=1e-3)
    assert precision_bound(v(45, 50, 60))[2] == pytest.approx(0.7864, abs=1e-3)
    assert math.isnan(precision_bound(v(0, 1, 20))[2])  # never fired on the concept: no precision to bound
    res = _result({" A": 0.9, " B": 0.9}, {" A": 3, " B": 3})
    res["concepts"][" A"].update(v(1, 1, 20))  # France on SmolLM2's SAE: one firing, precision 1
    claims = make_claims(res, tiny_cfg(min_precision=0.5, min_occurrences=20, steer_prompts=["x"]))
    by = {c["id"]: c for c in claims}
    assert "A (feature precision 1/1 = 100.0%, 95% lower bound 20.7% < 50%)" in by["reactivation"]["note"]
    assert "(1 of 1)" in by["reactivation"]["note"]  # judged on B alone


def test_a_rare_concept_is_no_concept_feature_however_precise():
    """Fewer than min_occurrences occurrences: excluded with the count, even at episode precision 45 of 45."""
    from functok.chapters.reactivation.claims import make_claims, precision_bound

    res = _result({" A": 0.9, " B": 0.9}, {" A": 3, " B": 3})
    res["concepts"][" A"].update({"n_occurrences": 49, "precision_counts": [45, 45]})
    assert precision_bound(res["concepts"][" A"]) == (
        45,
        45,
        pytest.approx(45 / (45 + 1.96**2), abs=1e-4),
    )  # Wilson, k = n
    by = {c["id"]: c for c in make_claims(res, tiny_cfg(min_precision=0.5, min_occurrences=50, steer_prompts=["x"]))}
    assert "excluded: A (49 occurrences < 50)" in by["reactivation"]["note"]
    res["concepts"][" A"]["n_occurrences"] = 50
    by = {c["id"]: c for c in make_claims(res, tiny_cfg(min_precision=0.5, min_occurrences=50, steer_prompts=["x"]))}
    assert "excluded" not in by["reactivation"]["note"]


def test_an_sae_below_the_quality_bar_makes_every_claim_inconclusive():
    from functok.chapters.reactivation.claims import make_claims

    res = _result({" A": 0.9, " B": 0.8}, {" A": 3, " B": 1})
    res["sae_quality"] = {"failures": ["density L0/d_sae 4.00% (want <= 1%)"]}
    claims = make_claims(res, tiny_cfg(min_precision=0.5, steer_prompts=["x"]))
    assert {c["verdict"] for c in claims} == {"inconclusive"}
    assert all("every concept (SAE below the quality bar: density" in c["note"] for c in claims)


def test_the_cache_key_holds_what_shapes_the_measurements():
    """A claim threshold (a cheap field) or Appendix A's inputs without the chat template do not change the
    measurements, so they do not enter the cache key; with the chat template, the traits do."""
    base = R.key_fields(tiny_cfg())
    assert R.key_fields(tiny_cfg(min_precision=0.9)) == base
    assert R.key_fields(tiny_cfg(traits={"X": {"prompt": "p?", "pattern": "x"}}, trait_keep=0.5)) == base
    assert R.key_fields(tiny_cfg(n_windows=7)) != base
    chat = R.key_fields(tiny_cfg(chat_template=True))
    assert "traits" in chat and R.key_fields(tiny_cfg(chat_template=True, trait_keep=0.5)) != chat


def test_scans_read_an_activation_store_instead_of_the_model(tmp_path, monkeypatch):
    """With chapter 2's store (Setup.store) the windows are encoded from it and the model never runs; the codes are
    those of the activations a float32 forward gives."""
    import datasets
    from tiny import tiny_causal_lm

    from functok.sae import activation_store as A

    monkeypatch.setenv("FUNCTOK_CACHE", str(tmp_path / "cache"))
    ck = tiny_causal_lm(tmp_path / "ckpt", "llama", n_layers=2, d_model=16)
    x = np.random.default_rng(0).integers(300, 5000, size=(5, 12))
    datasets.Dataset.from_dict({"input_ids": x.tolist()}).save_to_disk(str(tmp_path / "win"))
    store = A.activation_store(ck, tmp_path / "win", [1], "float32", progress=False)

    class Sae:
        W_enc = torch.randn(16, 5)

        def encode(self, a):
            return torch.relu(a @ self.W_enc)

    s = fake_setup(x, np.zeros(5000, dtype=bool), {})
    s.sae, s.hook, s.store = Sae(), "blocks.1.hook_resid_post", store
    monkeypatch.setattr(scan, "activations_at", lambda *a, **k: pytest.fail("ran the model with a store"))
    got = list(scan.encode_windows(s, batch_size=2, progress=False))
    assert [list(i) for i, _ in got] == [[0, 1], [2, 3], [4]]
    ref = A.hf_resid(A.load_hf(ck, "float32"), torch.as_tensor(x), [1])[1]
    torch.testing.assert_close(torch.cat([f for _, f in got]), torch.relu(ref @ Sae.W_enc), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "wheel, store_on, layer, reads_store", [(True, True, 9, True), (True, True, 11, True), (True, True, 12, False),
                                            (True, False, 9, False), (False, True, 9, False)],
)  # fmt: skip
def test_chapter2s_store_is_scanned_only_at_its_layers_on_wheel_models(
    monkeypatch, wheel, store_on, layer, reads_store
):
    from types import SimpleNamespace

    # chapter 2's layers and the further layer its stores keep for chapter 5 (store_layers)
    fc = SimpleNamespace(activation_store="bfloat16" if store_on else "off", layers=[4, 9, 13], store_layers=[11])
    monkeypatch.setattr(setup, "model_ref", lambda m: SimpleNamespace(wheel=wheel, embedded=not wheel))
    monkeypatch.setattr(setup, "sae_chapter_config", lambda preset, model: fc)
    monkeypatch.setattr(setup, "sae_heldout_windows", lambda *a: ("graph-windows", 32))
    monkeypatch.setattr(setup, "activation_store", lambda ck, win, layers, dtype: ("store", win, tuple(layers), dtype))
    monkeypatch.setattr(setup, "_windows", lambda cfg, ck: "training-windows")
    cfg = SimpleNamespace(sae="train", model="m", preset="p", context_size=256)
    got = setup._scanned(cfg, "ck", layer)
    if reads_store:
        assert got == ("graph-windows", ("store", "graph-windows", (4, 9, 11, 13), "bfloat16"))
    else:
        assert got == ("training-windows", None)


def test_function_vs_content_is_judged_at_matched_distance():
    """A concept counts when the function rate's Wilson lower bound is above the distance-matched content rate,
    not the raw one (content tokens nearer the concept fire more, whatever their kind)."""
    from functok.chapters.reactivation.claims import make_claims

    cfg = tiny_cfg(min_precision=0.5, min_occurrences=1, steer_prompts=["x"])
    res = _result({" A": 0.9, " B": 0.9}, {" A": 3, " B": 3})
    for v in res["concepts"].values():
        v["reactivation"].update({"fn_after_interval": [0.25, 0.35], "ct_after_rate_matched": 0.22})
    by = {c["id"]: c for c in make_claims(res, cfg)}
    assert by["reactivation_function_vs_content"]["verdict"] == "holds"  # raw content rate 0.2, matched 0.22
    assert "A 30.0% vs 22.0%" in by["reactivation_function_vs_content"]["ours"]
    for v in res["concepts"].values():
        v["reactivation"]["ct_after_rate_matched"] = 0.27  # above the function rate's lower bound
    by = {c["id"]: c for c in make_claims(res, cfg)}
    assert by["reactivation_function_vs_content"]["verdict"] == "fails"


def test_position_control_cells_on_constructed_prompts():
    """ids [BOS, content 5, function 1], suffix [function 2]: each cell's prompt and edited positions."""
    is_fn = np.zeros(10, dtype=bool)
    is_fn[[1, 2]] = True
    cells = steering.control_prompts([0, 5, 1], 1, is_fn, [2])
    assert cells == {
        "last": ([0, 5, 1], [2]),
        "every": ([0, 5, 1], [1, 2]),
        "function_earlier": ([0, 5, 1, 2], [2]),
        "content_last": ([0, 5], [1]),
        "content_earlier": ([0, 5, 1], [1]),
    }
    cells = steering.control_prompts([0, 1, 2], 1, is_fn, [2])  # ends in the suffix, a function token before it
    assert cells["function_earlier"] is None and cells["content_last"] is None and cells["content_earlier"] is None


def test_steering_cells_count_a_model_steered_only_at_its_last_function_token(monkeypatch):
    """A fake model names the concept exactly when the vector sits on the prompt's last position and that token is a
    function token: 'last' and 'every' succeed on every prompt, the other three cells on none, alpha 0 never."""
    is_fn = np.zeros(50, dtype=bool)
    is_fn[[1, 2, 3]] = True

    class Tok:
        def encode(self, text, add_special_tokens=False):
            return {" the": [2]}.get(text) or [int(t) for t in text.split()]

        def decode(self, ids):
            return " ".join(str(i) for i in ids)

    def fake_generate(model, prompts, n_new, edits=None, layer=None):
        outs = []
        for ids, e in zip(prompts, edits):
            hit = e is not None and (len(ids) - 1) in e[0] and is_fn[ids[-1]]
            outs.append([42] if hit else [7])
        return outs, [torch.zeros(50)] * len(prompts)

    monkeypatch.setattr(steering, "generate_tokens", fake_generate)
    monkeypatch.setattr(steering, "generator", lambda s: None)
    s = fake_setup(np.zeros((1, 4), dtype=np.int64), is_fn, {"c": [42]}, bos=0)
    s.model = type("M", (), {"tokenizer": Tok()})()
    s.sae = type("S", (), {"W_dec": torch.ones(5, 4)})()
    prompts = ["5 1", "6 3", "8 9 1"]  # content then function; the last ends content 9 -> function 1
    rows = steering.steer(s, prompts, {"c": 0}, {"c": 1.0}, [0, 2], 1, progress=False)
    counts = steering.steering_counts(rows, ["c"], [0, 2])["c"]
    assert counts["last"] == {"0": [0, 3], "2": [3, 3]} and counts["every"] == {"0": [0, 3], "2": [3, 3]}
    for k in ("function_earlier", "content_last", "content_earlier"):
        assert counts[k] == {"0": [0, 3], "2": [0, 3]}, k
    edited = {r["condition"]: r["edited"] for r in rows if r["prompt"] == "5 1" and r["alpha"] == 2}
    assert edited == {"last": "1", "every": "every position", "function_earlier": "1", "content_last": "5",
                      "content_earlier": "5"}  # fmt: skip
    from_end = {r["condition"]: r["from_end"] for r in rows if r["prompt"] == "5 1" and r["alpha"] == 2}
    assert from_end["function_earlier"] == from_end["content_earlier"] == 1 and from_end["content_last"] == 0


def test_position_control_claim_on_counts():
    from functok.chapters.reactivation.claims import make_claims

    cfg = tiny_cfg(min_precision=0.5, min_occurrences=1, steer_prompts=["x"])
    res = _result({" A": 0.9}, {" A": 3}, success=0.75)  # last: 30 of 40 against 0 of 40 unsteered
    by = {c["id"]: c for c in make_claims(res, cfg)}
    assert by["steering"]["verdict"] == "holds" and by["steering_position_control"]["verdict"] == "holds"
    assert "last function 30/40, last content 0/40" in by["steering_position_control"]["ours"]
    res["concepts"][" A"]["steering_counts"]["content_last"]["4"] = [29, 40]  # the last position, whatever the type
    by = {c["id"]: c for c in make_claims(res, cfg)}
    assert by["steering_position_control"]["verdict"] == "fails"
    res = _result({" A": 0.9}, {" A": 3}, success=0.05)  # 2 of 40 against 0 of 40: not steered
    by = {c["id"]: c for c in make_claims(res, cfg)}
    assert by["steering"]["verdict"] == "fails" and by["steering_position_control"]["verdict"] == "inconclusive"


def test_feature_card_holds_the_top_contexts_histogram_and_logit_lens(monkeypatch):
    """Feature 1 fires with activation 1 + position / 10 on token 7 only: its top contexts are the latest 7s in
    decreasing activation, its histogram counts every firing, its density is firings / positions, and its logit lens
    ranks the unembedding rows by their dot product with its decoder row."""
    from functok.chapters.reactivation import cards

    x = np.array([[0, 5, 7, 5, 7, 5], [0, 7, 5, 5, 5, 7]])
    f = torch.zeros(2, 6, 3)
    pos = torch.arange(6, dtype=torch.float32)
    f[:, :, 1] = torch.as_tensor(x == 7, dtype=torch.float32) * (1 + pos / 10)

    class Tok:
        def decode(self, ids):
            return "".join(f"<{int(i)}>" for i in ids)

    s = fake_setup(x, np.zeros(10, dtype=bool), {"c": [7]}, bos=0)
    s.model = type("M", (), {"tokenizer": Tok()})()
    s.sae = type("S", (), {"W_dec": torch.eye(3, 4)})()
    W_U = torch.zeros(10, 4)
    W_U[3, 1], W_U[8, 1] = 2.0, 1.0  # tokens 3 then 8 follow feature 1's decoder row
    gen = type("G", (), {"get_output_embeddings": lambda self: type("E", (), {"weight": W_U})()})()
    monkeypatch.setattr(cards, "generator", lambda s_: gen)
    card = cards.card_data(s, {"c": 1}, {"c": {"precision": 0.5, "precision_interval": [0.2, 0.8],
                                               "n_occurrences": 4}}, lambda: iter([(np.arange(2), f)]),
                           n_contexts=3)["c"]  # fmt: skip
    assert [(c["window"], c["position"]) for c in card["contexts"]] == [(1, 5), (0, 4), (0, 2)]
    first = {"window": 1, "position": 5, "activation": pytest.approx(1.5), "before": "<7><5><5><5>", "token": "<7>"}
    assert card["contexts"][0] == {**first, "after": ""}
    assert sum(card["histogram"]["counts"]) == 4 and card["density"] == 4 / 10  # 10 non-BOS positions
    assert [t["token"] for t in card["logit_lens"][:2]] == ["<3>", "<8>"]
    assert card["precision"] == 0.5 and card["feature"] == 1
    assert cards.card_href("book/chapters", 1) == "../cards/embedded.html#feature-1"
    assert cards.card_href("book/chapters/gemma-3-270m", 9) == "../../cards/gemma-3-270m.html#feature-9"
