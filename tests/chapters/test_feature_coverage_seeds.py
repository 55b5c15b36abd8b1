"""Chapter 2 over several SAE seeds: one SAE per layer and seed, one streaming pass for all of them, every claim
scored per seed (`per_seed`) with the seeds' common verdict or 'fragile'; the first seed's results are those of a
one-seed run."""

from __future__ import annotations

import pytest
from tiny import tiny_preset

from functok.chapters.feature_coverage import analysis as fc
from functok.chapters.feature_coverage import streaming
from functok.chapters.registry import resolve
from functok.core.config import ParamError

# SAEs small enough to train in seconds on the tiny models
SECTION = {"training_tokens": 2000, "sae_batch_size": 64, "expansion_factor": 4, "eval_windows": 2, "top_k": 5}


@pytest.fixture(scope="module")
def runs():
    with tiny_preset(feature_coverage=SECTION):
        calls = []
        real = fc.stream

        def counted(model, encoders, *a, **k):
            calls.append(sorted(encoders))
            return real(model, encoders, *a, **k)

        fc.stream = counted
        try:
            two = fc.analyze(resolve("feature_coverage", "tiny", {"n_seeds": 2}), progress=False)
            one = fc.analyze(resolve("feature_coverage", "tiny", {}), progress=False)
        finally:
            fc.stream = real
        yield one, two, calls


def test_one_pass_serves_every_seed_and_the_first_seed_is_a_one_seed_run(runs):
    one, two, calls = runs
    layers = two.results["layer_order"]
    assert calls[0] == sorted((L, s) for L in layers for s in (0, 1))  # one forward pass for both seeds
    assert len(calls) == 1  # the one-seed run found its graphs in the cache the two-seed run wrote
    assert two.results["sae_seeds"] == [0, 1] and set(two.results["layers_by_seed"]) == {"1"}
    for L in layers:
        a, b = two.results["layers"][L], one.results["layers"][L]
        assert a["sae"] == b["sae"] and a["coverage_topk"] == b["coverage_topk"] and a["n_edges"] == b["n_edges"]
        other = two.results["layers_by_seed"]["1"][L]
        assert other["sae"] != a["sae"]  # another SAE: another initialisation and activation order
    assert {c["id"] for c in two.claims} == {c["id"] for c in one.claims}
    assert [c["verdict"] for c in one.claims] == [c["per_seed"]["0"] for c in two.claims]


def test_each_claim_is_the_seeds_common_verdict_or_fragile(runs):
    _, two, _ = runs
    for c in two.claims:
        per = c["per_seed"]
        assert set(per) == {"0", "1"}
        assert c["verdict"] == (per["0"] if per["0"] == per["1"] else "fragile"), c["id"]
        assert "scored per SAE seed" in c["note"]
    ids = [p["id"] for p in two.preconditions]
    assert any(i.endswith(", seed 1]") and i.startswith("sae_quality_bar[") for i in ids)
    assert streaming.layer_of((3, 1)) == 3 and streaming.layer_of(3) == 3


def test_seeds_of_loaded_saes_are_refused_in_one_line(tmp_path):
    with tiny_preset(feature_coverage=SECTION):
        cfg = resolve("feature_coverage", "tiny", {"n_seeds": 2, "sae": str(tmp_path / "layer_{layer}")})
        with pytest.raises(ParamError, match=r"^n_seeds: got 2; expected 1 for SAEs that are loaded"):
            fc.plan(cfg)


def test_with_a_store_one_forward_per_token_set_serves_every_layer_and_seed(monkeypatch):
    """activation_store on: two stores (the SAEs' training windows and the graph's), every layer in each; no SAE
    and no graph pass runs the model; the SAEs and graphs have keys of their own (their activations differ)."""
    from functok.core.cache import cache_dir, cache_path, relpath
    from functok.sae import activation_store, training

    with tiny_preset(feature_coverage=SECTION):
        plain = fc.analyze(resolve("feature_coverage", "tiny", {}), progress=False)
        built = []
        real_build = activation_store._build
        monkeypatch.setattr(
            activation_store, "_build", lambda tmp, ck, w, p, *a: (built.append(p), real_build(tmp, ck, w, p, *a))
        )
        monkeypatch.setattr(training, "training_activations", lambda *a, **k: pytest.fail("an SAE ran the model"))
        monkeypatch.setattr(streaming, "resid_activations", lambda *a, **k: pytest.fail("the graph ran the model"))
        cfg = resolve("feature_coverage", "tiny", {"n_seeds": 2, "activation_store": "bfloat16"})
        res = fc.analyze(cfg, progress=False)
        layers = res.results["layer_order"]
        assert len(built) == 2 and all(p["layers"] == sorted(layers) and p["dtype"] == "bfloat16" for p in built)
        assert len({p["windows"] for p in built}) == 2  # the training windows and the graph's
        assert len(list((cache_dir() / "activation_stores").glob("*/params.json"))) == 2
        # the results file names both stores with their precision checks
        rec = res.data["activation_stores"]
        assert set(rec) == {"sae_training", "graph"} and {r["store"] for r in rec.values()} == {
            relpath(cache_path("activation_stores", p)) for p in built
        }
        assert all(set(r["check"]) == {f"blocks.{L}.hook_resid_post" for L in layers} for r in rec.values())
        for L in layers:
            assert res.results["layers"][L]["sae"] != plain.results["layers"][L]["sae"]
            assert res.results["layers"][L]["graph"] != plain.results["layers"][L]["graph"]
            ev, ev_plain = (r.results["layers"][L]["quality"]["explained_variance"] for r in (res, plain))
            assert abs(ev - ev_plain) < 0.1, (L, ev, ev_plain)  # trained on its layer's activations, rounded
        assert all(set(c["per_seed"]) == {"0", "1"} for c in res.claims)


def test_stores_keep_store_layers_for_other_chapters(monkeypatch):
    """Chapter 2's training store holds its layers and store_layers (chapter 5's), so an SAE at a store layer reads
    the same store; an SAE at a layer in neither gets a store of its own."""
    from types import SimpleNamespace

    from functok.chapters import common

    cfg = SimpleNamespace(preset="p", layers=[4, 9, 13], store_layers=[11], activation_store="bfloat16",
                          training_tokens=100)  # fmt: skip
    monkeypatch.setattr(common, "sae_training_windows", lambda *a: "windows")
    monkeypatch.setattr(
        common, "activation_store", lambda ck, w, layers, dtype, progress=True: ("store", tuple(layers))
    )
    monkeypatch.setattr(common, "sae_training_spec", lambda c, seed=None: "spec")
    monkeypatch.setattr(common, "train_sae", lambda ck, hook, spec, w, progress=True, store=None: f"{hook} {store}")
    both = ("store", (4, 9, 11, 13))
    assert common.chapter2_saes(cfg, "ck", False, 256, [4, 9, 13]) == [
        f"blocks.{L}.hook_resid_post {both}" for L in (4, 9, 13)
    ]
    assert common.chapter2_saes(cfg, "ck", False, 256, [11]) == [f"blocks.11.hook_resid_post {both}"]
    assert common.chapter2_saes(cfg, "ck", False, 256, [12]) == ["blocks.12.hook_resid_post ('store', (12,))"]
    assert common.stored_layers(cfg, [13, 4, 9]) == [4, 9, 11, 13]
