"""Feature coverage (Fig 5, Table 1): the whole chapter on a tiny random Llama with tiny SAEs in
SAELens's format, checked against a brute-force graph and coverage null built from the SAEs' dense
encodings; a warm re-run read from the cache; the statistics on hand-made arrays; validation
refusals; the paper preset's path on a tiny Gemma-2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from functok.chapters.feature_coverage import analysis as fc
from functok.chapters.feature_coverage import claims as fclaims
from functok.chapters.feature_coverage import stats, streaming
from functok.chapters.feature_coverage.config import FeatureCoverageConfig as C
from functok.chapters.feature_coverage.frequency import holm
from functok.chapters.feature_coverage.null import permutation_ranks
from functok.core.config import ParamError, validate

WORDS = (
    "the of and to a in is that for it as with was on be by this are from at or an have not they "
    "cat dog house river mountain city water music science history garden window paper light story "
    "runs jumps sings writes reads builds opens grows falls moves green quick old bright silent"
).split()


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_cache):
    monkeypatch.delenv("FUNCTOK_ONLINE", raising=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """40 documents of words drawn with Zipf-like weights, one .txt file each."""
    d = tmp_path_factory.mktemp("docs")
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    for i in range(40):
        words = rng.choice(WORDS, size=int(rng.integers(30, 60)), p=p)
        (d / f"doc{i:02d}.txt").write_text(" ".join(words).capitalize() + ".")
    return d


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    from functok.world.tokenizers import gpt2_tokenizer

    tok = gpt2_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llama") / "ckpt"
    LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_sae(folder, d_in, d_sae, layer, seed, context_size=16, apply_b_dec=True):
    """A random JumpReLU SAE in SAELens's format (thresholds spread so that some features never fire)."""
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    md = SAEMetadata(hook_name=f"blocks.{layer}.hook_resid_post", model_name="tiny", context_size=context_size)
    sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=apply_b_dec, metadata=md))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g) / d_sae**0.5)
        sae.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.3)
        sae.threshold.copy_(torch.rand(d_sae, generator=g) * 3.0)
    sae.save_model(str(folder))
    return folder


@pytest.fixture(scope="module")
def llama_saes(tmp_path_factory, tiny_llama):
    root = tmp_path_factory.mktemp("saes")
    for L in range(3):
        make_sae(root / f"layer_{L}", 32, 96, L, seed=L)
    return root


def cfg_for(model, saes_root, corpus, **kw):
    values = dict(
        model=str(model),
        sae=str(saes_root / "layer_{layer}"),
        corpus=str(corpus),
        layers=[0, 1, 2],
        top_k=5,
        batch_size=3,
        eval_windows=2,
        out_dir="/tmp",
    )
    values.update(kw)
    return validate(C, values)


# ---------------------------------------------------------------------------------------------
# The chapter against brute force


@pytest.fixture(scope="module")
def analyzed(tiny_llama, llama_saes, corpus, tmp_path_factory):

    mp = pytest.MonkeyPatch()
    mp.setenv("FUNCTOK_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.delenv("FUNCTOK_ONLINE", raising=False)
    try:
        cfg = cfg_for(tiny_llama, llama_saes, corpus)
        yield cfg, fc.analyze(cfg, progress=False)
    finally:
        mp.undo()


def brute_force(tiny_llama, llama_saes, windows_path, layer, is_function):
    """Edges, counts and firing counts from a full forward and SAELens's dense `sae.encode`."""
    import datasets
    from sae_lens import SAE

    from functok.sae.models import load_model

    model = load_model(tiny_llama)
    x = torch.tensor(np.stack(datasets.load_from_disk(str(windows_path))["input_ids"]), dtype=torch.long)
    sae = SAE.load_from_disk(str(llama_saes / f"layer_{layer}"))
    bos = model.tokenizer.bos_token_id
    hook = f"blocks.{layer}.hook_resid_post"
    with torch.no_grad():
        _, cache = model.run_with_cache(x, names_filter=[hook])  # the full forward, no stop
        acts = sae.encode(cache[hook].reshape(-1, 32)).numpy()
    toks = x.reshape(-1).numpy()
    edges, counts, fired = set(), {}, []  # fired: the features of every non-BOS position, in stream order
    fn, ct = np.zeros(96, np.int64), np.zeros(96, np.int64)
    for t, a in zip(toks, acts):
        if t == bos:
            continue
        counts[int(t)] = counts.get(int(t), 0) + 1
        on = np.flatnonzero(a > 0)
        fired.append(set(on.tolist()))
        edges.update((int(t), int(f)) for f in on)
        (fn if is_function[t] else ct)[on] += 1
    return edges, counts, fn, ct, toks, fired


def brute_force_null(fired: list[set], n_k: list[int], draws: int, seed: int) -> np.ndarray:
    """[draws, k]: coverage of d_sae by the explicit positions each draw samples (its first N_k)."""
    ranks = permutation_ranks(len(fired), draws, seed)
    out = np.zeros((draws, len(n_k)))
    for d in range(draws):
        order = np.argsort(ranks[d])
        for j, N in enumerate(n_k):
            out[d, j] = len(set().union(*(fired[p] for p in order[:N]))) / 96
    return out


def test_graph_results_match_brute_force(analyzed, tiny_llama, llama_saes):
    cfg, out = analyzed
    res = out.results
    win = Path(out.data["tokens"])
    win = win if win.is_absolute() else fc.__file__ and Path(fc.__file__).parent.parent / win
    assert res["layer_order"] == [0, 1, 2]
    for L in (0, 1, 2):
        isf = out.detail["is_function"]
        edges, counts, fn, ct, toks, fired = brute_force(tiny_llama, llama_saes, win, L, isf)
        v = res["layers"][L]
        assert v["hook_name"] == f"blocks.{L}.hook_resid_post" and v["d_sae"] == 96
        assert v["n_tokens"] == sum(counts.values()) == int((toks != 50256).sum()) < toks.size  # BOS dropped
        feats = {f for _, f in edges}
        assert v["connected_features"] == len(feats) and 0 < len(feats) < 96
        assert v["connected_share"] == pytest.approx(len(feats) / 96)
        one_type = [f for f in feats if len({t for t, g in edges if g == f}) == 1]
        assert v["single_token_feature_share"] == pytest.approx(len(one_type) / len(feats))
        deg = out.detail["per_layer"][L]["_degree"]
        for t in counts:
            assert deg[t] == sum(1 for (u, _) in edges if u == t)
        # top-k by occurrences in the sample (ties: lower id), cumulative share of d_sae
        ranked = sorted(counts, key=lambda t: (-counts[t], t))[: cfg.top_k]
        assert v["topk_token_ids"] == ranked
        covered, cov = set(), []
        for t in ranked:
            covered |= {f for (u, f) in edges if u == t}
            cov.append(len(covered) / 96)
        assert v["coverage_topk"] == pytest.approx(cov)
        assert v["coverage_topk_connected"] == pytest.approx([c * 96 / len(feats) for c in cov])
        assert np.array_equal(out.detail["per_layer"][L]["_fire_function"], fn)
        assert np.array_equal(out.detail["per_layer"][L]["_fire_content"], ct)
        assert v["features_only_function"] == int(((fn > 0) & (ct == 0)).sum())
        assert v["topk_tokens"] == [out.detail["tokenizer"].decode([t]) for t in ranked]
        # the null: as many random non-BOS positions as the top-k tokens' occurrences
        n_k = list(np.cumsum([counts[t] for t in ranked]))
        nl = v["null_coverage_topk"]
        assert nl["n_positions"] == n_k and nl["n_draws"] == cfg.null_draws == 200
        # the null curve's last point is Table 1's N_k, read off the same permutations
        curve = v["null_curves"]
        assert curve["n_positions"][-1] == n_k[-1] and curve["random"]["mean"][-1] == pytest.approx(nl["mean"][-1])
        assert curve["top"][-1] == pytest.approx(cov[-1])  # nothing thinned at N_k
        cov_null = brute_force_null(fired, n_k, cfg.null_draws, cfg.seed)
        assert nl["mean"] == pytest.approx(cov_null.mean(axis=0).tolist())
        assert nl["lo"] == pytest.approx(np.percentile(cov_null, 2.5, axis=0).tolist())
        assert nl["hi"] == pytest.approx(np.percentile(cov_null, 97.5, axis=0).tolist())
        occ_f = sum(c for t, c in counts.items() if isf[t])
        occ_c = sum(c for t, c in counts.items() if not isf[t])
        assert v["features_per_occurrence"] == pytest.approx(
            {"function": fn.sum() / occ_f, "content": ct.sum() / occ_c}
        )
        assert v["density"] == pytest.approx((fn.sum() + ct.sum()) / sum(counts.values()) / 96)
        # the frequency control: every function token seen is matched or unmatched, with brute-force counts
        m = v["frequency_control"]["matched"]
        seen_f = {t for t in counts if isf[t]}
        rows = m["matched"] + m["unmatched"]
        assert sorted(r["token_id"] for r in rows) == sorted(seen_f) and m["n_function_seen"] == len(seen_f)
        assert m["n_matched"] + m["n_unmatched"] == len(seen_f) and m["n_function_unseen"] == isf.sum() - len(seen_f)
        for r in rows:
            assert r["count"] == counts[r["token_id"]] and r["degree"] == sum(
                1 for (u, _) in edges if u == r["token_id"]
            )
        for r in m["matched"]:
            peers = [u for u in counts if not isf[u] and r["count"] / 1.25 <= counts[u] <= r["count"] * 1.25]
            assert r["n_peers"] == len(peers)
        for r in m["unmatched"]:
            assert not [u for u in counts if not isf[u] and r["count"] / 1.25 <= counts[u] <= r["count"] * 1.25]
        reg = v["frequency_control"]["regression"]
        assert reg["n_function"] == len(seen_f) and reg["n_content"] == len(counts) - len(seen_f)
        q = v["quality"]
        assert 0 < q["l0"] < 96 and np.isfinite(q["explained_variance"]) and np.isfinite(q["ce_reconstruction_score"])


def test_results_file_provenance_and_claims(analyzed, tmp_path):
    from functok.core.config import ROOT
    from functok.core.results import Run, load_results
    from functok.sae.graph import TokenFeatureGraph

    cfg, out = analyzed
    art = out.artifacts
    for key in ("model_checkpoint", "function_tokens", "sae[0]", "sae[1]", "sae[2]", "graph[1]"):
        p = Path(art[key])
        assert (p if p.is_absolute() else ROOT / p).exists(), key
    g = TokenFeatureGraph.load(Path(art["graph[1]"]) if Path(art["graph[1]"]).is_absolute() else ROOT / art["graph[1]"])
    assert g.connected_features() == out.results["layers"][1]["connected_features"]
    cfg.out_dir = str(tmp_path)
    doc = load_results(Run(cfg).write(out))
    lay = doc["results"]["layers"]["1"]
    assert {"hook_name", "sae", "d_sae", "connected_features", "coverage_topk", "topk_tokens", "n_tokens"} <= set(lay)
    assert {"null_coverage_topk", "features_per_occurrence", "density"} <= set(lay)
    assert set(lay["null_coverage_topk"]) == {"mean", "lo", "hi", "n_draws", "n_positions"}
    assert len(lay["null_coverage_topk"]["mean"]) == len(lay["coverage_topk"]) == cfg.top_k
    assert set(lay["features_per_occurrence"]) == {"function", "content"}
    ids = {c["id"]: c for c in doc["claims"]}
    assert set(ids) >= {
        "top10_coverage_middle",
        "middle_layer_highest",
        "frequency_matched",
        "topk_beats_null_curve",
    }
    assert "connected_share" not in ids  # a precondition now
    assert "connected_share" in {p["id"] for p in doc["preconditions"]}
    v = {L: out.results["layers"][L] for L in (0, 1, 2)}
    cov = {L: v[L]["coverage_topk"][-1] for L in (0, 1, 2)}
    dense = any(fclaims.quality_bar(v[L]) for L in (0, 1, 2))
    expect = "holds" if cov[1] > max(cov[0], cov[2]) else "fails"
    assert ids["middle_layer_highest"]["verdict"] == ("inconclusive" if dense else expect)
    matched = v[1]["matched_scale"]["coverage"]
    expect = "holds" if matched >= 0.7 else "fails"
    assert ids["top10_coverage_middle"]["verdict"] == ("inconclusive" if fclaims.quality_bar(v[1]) else expect)
    assert ids["top10_coverage_middle"]["ours"] == round(matched, 4)
    c = v[1]["null_curves"]
    j = fclaims.comparison_point(c, v[1]["connected_share"])
    beats = ids["topk_beats_null_curve"]["verdict"]
    if j is None:
        assert beats == "inconclusive"
    else:
        top, nulls = c["top"][j], [c["random"], c["token_identity"]]
        above, below = all(top > n["hi"][j] for n in nulls), any(top < n["lo"][j] for n in nulls)
        assert beats == ("holds" if above else "fails" if below else "inconclusive")
    assert doc["provenance"]["data"]["tokens"] == out.data["tokens"]
    # the frequency control in the results file: per layer, both controls with Holm-corrected p-values
    for L in ("0", "1", "2"):
        fc_ = doc["results"]["layers"][L]["frequency_control"]
        r, m = fc_["regression"], fc_["matched"]
        assert {"g", "lo", "hi", "p", "p_holm", "alpha", "n_tests", "n_bootstrap", "knots", "model"} <= set(r)
        assert {"mean_diff", "p_holm", "matched", "unmatched", "n_matched", "n_unmatched", "window"} <= set(m)
        assert r["n_bootstrap"] == cfg.n_bootstrap == 1000 and r["alpha"] == cfg.alpha and m["window"] == 1.25
        assert all("reason" in u and "token" in u for u in m["unmatched"])
    ps = [out.results["layers"][L]["frequency_control"]["regression"]["p"] for L in (0, 1, 2)]
    adj = [out.results["layers"][L]["frequency_control"]["regression"]["p_holm"] for L in (0, 1, 2)]
    assert np.allclose(adj, holm(ps), equal_nan=True)  # corrected across the three layers
    assert "baseline: content tokens of the same frequency" in ids["frequency_matched"]["note"]
    assert [p.split(":")[0] for p in ids["frequency_explains_degree"]["ours"].split(", ")] == ["L0", "L1", "L2"]


def test_warm_rerun_reads_the_pass_from_the_cache(analyzed, tiny_llama, llama_saes, corpus, monkeypatch):
    """Graphs and null min ranks come from the cache: no second stream, the same results; another seed
    (or null_draws) is another null entry, so that run streams."""
    cfg, out = analyzed
    monkeypatch.setenv("FUNCTOK_CACHE", str(Path(out.artifacts["graph[1]"]).parents[2]))
    calls = []

    def counted(*a, **k):
        calls.append(k.get("null").seed)
        return streaming.stream(*a, **k)

    monkeypatch.setattr(fc, "stream", counted)
    again = fc.analyze(cfg, progress=False)
    assert calls == [] and again.results["timing"]["pass_from_cache"] is True
    assert out.results["timing"]["pass_from_cache"] is False
    assert again.results["n_windows"] == out.results["n_windows"]
    for L in (0, 1, 2):
        a, b = again.results["layers"][L], out.results["layers"][L]
        for key in ("coverage_topk", "null_coverage_topk", "features_per_occurrence", "density", "n_edges", "graph"):
            assert a[key] == b[key], key
    other = fc.analyze(cfg_for(tiny_llama, llama_saes, corpus, seed=1, eval_windows=0), progress=False)
    assert calls == [1]
    assert other.results["layers"][1]["coverage_topk"] == out.results["layers"][1]["coverage_topk"]
    entries = sorted(Path(out.artifacts["graph[1]"]).parents[2].glob("feature_coverage_null/*/min_rank.npy"))
    assert len(entries) == 6  # three layers, two seeds
    assert sorted(json.loads((e.parent / "params.json").read_text())["seed"] for e in entries) == [0, 0, 0, 1, 1, 1]
    # another function-token threshold re-labels the cached graphs: no stream, the same graph, another set
    thr = fc.analyze(cfg_for(tiny_llama, llama_saes, corpus, coverage_threshold=0.25), progress=False)
    assert calls == [1] and thr.results["timing"]["pass_from_cache"] is True
    assert thr.results["n_function_tokens"] < out.results["n_function_tokens"]
    assert thr.results["layers"][1]["n_edges"] == out.results["layers"][1]["n_edges"]


def test_plots_render(analyzed):
    import matplotlib

    matplotlib.use("Agg")
    from functok.chapters.feature_coverage import plots as P

    _, out = analyzed
    for f in (P.fig5, P.matched_figure, P.degree_occurrence_figure):
        assert f(out).axes
    ct = P.control_table(out)
    assert len(ct) == 3 and {"Holm p", "matched / unmatched", "exp(g)"} <= set(ct.columns)
    m = out.results["layers"][1]["frequency_control"]["matched"]
    assert len(P.unmatched_table(out)) == m["n_unmatched"] and len(P.matched_table(out)) == min(15, m["n_matched"])
    prose = P.frequency_prose(out)
    assert f"{m['n_matched']} of {m['n_function_seen']} function tokens" in prose and "Verdict: **" in prose
    t1 = P.table1(out)
    assert len(t1) == 5 and "paper L20" in t1.columns
    assert {"positions", "ours L1", "null L1"} <= set(t1.columns) and t1["null L1"].str.match(r"[\d.]+% \[").all()
    assert len(P.density_table(out)) == 3
    assert len(P.connected_table(out)) == 3 and len(P.quality_table(out)) == 3
    assert len(P.top_tokens_table(out)) == 5 and len(P.firing_table(out)) == 3


# ---------------------------------------------------------------------------------------------
# Statistics on hand-made arrays


def test_default_layers_are_the_papers_relative_depths():
    assert fc.default_layers(42) == [9, 20, 31]
    assert fc.default_layers(8) == [2, 4, 6]
    assert fc.default_layers(2) == [0, 1]
    assert fc.default_layers(1) == [0]


def test_degree_fit_recovers_a_power_law():
    counts = np.arange(1, 400)
    degree = np.round(3 * counts**0.5).astype(int)
    isf = np.zeros(counts.size, bool)
    isf[-5:] = True
    degree[-5:] *= 4  # function tokens: four times what frequency predicts
    fit = stats.degree_vs_occurrences(degree, counts, isf)
    assert fit["slope"] == pytest.approx(0.5, abs=0.02) and fit["r2_content"] > 0.99
    assert fit["function_factor"] == pytest.approx(4.0, rel=0.05)


# ---------------------------------------------------------------------------------------------
# Validation (no weights loaded)


def test_refusals(tiny_llama, llama_saes, corpus, tmp_path):
    ok = dict(model=str(tiny_llama), sae=str(llama_saes / "layer_{layer}"), corpus=str(corpus))
    with pytest.raises(ParamError, match=r"^layers: layer 3 requested; the model has 3 layers"):
        fc.plan(validate(C, {**ok, "layers": [1, 3]}))
    with pytest.raises(ParamError, match=r"^sae: .* placeholder \{width\}"):
        validate(C, {**ok, "sae": "x/layer_{width}"})
    with pytest.raises(ParamError, match=r"^sae: .*would be downloaded from the Hugging Face hub .*offline"):
        fc.plan(validate(C, {**ok, "layers": [1], "sae": "gemma-scope-9b-pt-res-canonical/layer_9/width_1m/canonical"}))
    with pytest.raises(ParamError, match=r"did you mean 'gemma-scope-9b-pt-res-canonical'"):
        fc.plan(validate(C, {**ok, "layers": [1], "sae": "gemma-scope-9b-pt-res-canonicl/layer_1/width_1m/canonical"}))
    make_sae(tmp_path / "wide", 64, 96, 1, seed=0)
    with pytest.raises(ParamError, match=r"^sae: .* reads d_in=64; the model has d_model=32"):
        fc.plan(validate(C, {**ok, "layers": [1], "sae": str(tmp_path / "wide")}))
    with pytest.raises(ParamError, match=r"reads blocks.0.hook_resid_post; expected blocks.2.hook_resid_post"):
        fc.plan(validate(C, {**ok, "layers": [2], "sae": str(llama_saes / "layer_0")}))
    with pytest.raises(
        ParamError, match=r"^sae: 'train' trains SAEs on the embedded models and the models that ship in wheels only"
    ):
        fc.plan(validate(C, {**ok, "sae": "train"}))
    with pytest.raises(ParamError, match=r"^average_l0: .* one value per layer"):
        fc.plan(
            validate(C, {**ok, "layers": [1], "sae": "x/layer_{layer}/average_l0_{average_l0}", "average_l0": [1, 2]})
        )
    with pytest.raises(ParamError, match=r"^gpu_memory_gb: this configuration needs about"):
        fc.plan(validate(C, {**ok, "device": "cuda", "gpu_memory_gb": 1.0}))
    with pytest.raises(ParamError, match=r"^model: '.*' is no local path"):
        validate(C, {**ok, "model": "google/gemma-2-9b"})
    with pytest.raises(ParamError, match=r"^top_k: got 0"):
        validate(C, {**ok, "top_k": 0})


def test_paper_preset_validates_online_without_downloading_and_fits_80_gb(monkeypatch):
    """With FUNCTOK_ONLINE=1 the gemma-2-9b preset passes validation from SAELens's bundled registry
    alone (no network), and its memory plan fits one 80 GB GPU; fp32 encoders do not."""
    from functok.chapters.registry import resolve

    monkeypatch.setenv("FUNCTOK_ONLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    import huggingface_hub

    def no_network(*a, **k):
        raise AssertionError("validation touched the network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    cfg = resolve("feature_coverage", "gemma-2-9b")
    p = fc.plan(cfg)
    assert p.layers == [9, 20, 31] and p.context_size == 1024 and cfg.max_documents == 10_000
    assert [s.sae_id for s in p.saes] == [f"layer_{L}/width_1m/canonical" for L in (9, 20, 31)]
    assert all(s.d_sae == 2**20 and s.d_in == 3584 for s in p.saes)
    assert 40e9 < sum(p.memory.values()) <= 80e9
    with pytest.raises(ParamError, match=r"^gpu_memory_gb: .* needs about"):
        fc.plan(resolve("feature_coverage", "gemma-2-9b", {"encoder_dtype": "float32"}))
    # any average_l0 of the non-canonical release, by parameter
    p2 = fc.plan(
        resolve(
            "feature_coverage",
            "gemma-2-9b",
            {
                "sae": "gemma-scope-9b-pt-res/layer_{layer}/width_1m/average_l0_{average_l0}",
                "layers": [20],
                "average_l0": [57],
            },
        )
    )
    assert p2.saes[0].sae_id == "layer_20/width_1m/average_l0_57"
    with pytest.raises(ParamError, match=r"is not an SAE id .*did you mean"):
        fc.plan(
            resolve(
                "feature_coverage",
                "gemma-2-9b",
                {
                    "sae": "gemma-scope-9b-pt-res/layer_{layer}/width_1m/average_l0_{average_l0}",
                    "layers": [20],
                    "average_l0": [58],
                },
            )
        )


# ---------------------------------------------------------------------------------------------
# The paper's path (Gemma-2 architecture, bf16 encoders, Gemma Scope's SAE format) on a tiny model


def test_paper_path_on_a_tiny_gemma2(tmp_path, corpus):
    from functok.sae.activations import save_tiny_gemma2

    ckpt = save_tiny_gemma2(tmp_path / "gemma", n_layers=5, d_model=64)
    for L in fc.default_layers(5):
        make_sae(tmp_path / "scope" / f"layer_{L}", 64, 128, L, seed=L, context_size=32, apply_b_dec=False)
    cfg = validate(
        C,
        dict(
            model=str(ckpt),
            sae=str(tmp_path / "scope" / "layer_{layer}"),
            corpus=str(corpus),
            max_documents=30,
            max_tokens=200,
            model_dtype="bfloat16",
            encoder_dtype="bfloat16",
            eval_windows=0,
            batch_size=2,
            out_dir=str(tmp_path),
        ),
    )
    out = fc.analyze(cfg, progress=False)
    res = out.results
    assert res["layer_order"] == [1, 2, 4] == fc.default_layers(5)
    assert res["context_size"] == 32 and res["n_windows"] == 7  # ceil(200 / 32)
    assert res["encoder_dtype"] == "bfloat16"
    for L in res["layer_order"]:
        v = res["layers"][L]
        assert v["d_sae"] == 128 and 0 < v["connected_features"] <= 128
        assert len(v["coverage_topk"]) == 10 and np.all(np.diff(v["coverage_topk"]) >= 0)
        assert v["n_tokens"] < 7 * 32  # BOS positions left out
    assert json.loads((Path(ckpt) / "config.json").read_text())["model_type"] == "gemma2"
