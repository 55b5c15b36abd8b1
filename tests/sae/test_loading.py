"""SAE specs checked offline against SAELens's registry, small SAEs in SAELens's on-disk format, the
sparse encoder against `sae.encode`, the memory plan, and resid activations of a tiny random Gemma-2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from functok.core.config import ParamError
from functok.sae import encoding
from functok.sae import loading as saes
from functok.sae import memory as sae_memory
from functok.sae.graph import TokenFeatureGraph

CANONICAL = "gemma-scope-9b-pt-res-canonical"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_cache):
    """Offline as on this machine; a private cache, where the registry index is written on first use
    (then kept in memory for the session: it depends only on the installed SAELens)."""
    monkeypatch.delenv("FUNCTOK_ONLINE", raising=False)


def make_sae(
    folder,
    architecture="jumprelu",
    d_in=96,
    d_sae=640,
    seed=0,
    apply_b_dec=True,
    normalize="none",
    hook_name="blocks.1.hook_resid_post",
):
    """A random SAE in SAELens's format, saved with `save_model` like any trained SAE."""
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    md = SAEMetadata(hook_name=hook_name, model_name="tiny")
    common = dict(
        d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=apply_b_dec, normalize_activations=normalize, metadata=md
    )
    sae = {
        "jumprelu": lambda: JumpReLUSAE(JumpReLUSAEConfig(**common)),
        "standard": lambda: StandardSAE(StandardSAEConfig(**common)),
        "topk": lambda: TopKSAE(TopKSAEConfig(k=12, **common)),
    }[architecture]()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=g) / d_sae**0.5)
        sae.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.3)
        sae.b_dec.copy_(torch.randn(d_in, generator=g) * 0.5)
        if architecture == "jumprelu":  # some thresholds negative: relu(h) * (h > t) still needs h > 0
            sae.threshold.copy_(torch.rand(d_sae, generator=g) * 1.6 - 0.2)
    sae.save_model(folder)
    return folder


@pytest.fixture(scope="module")
def sae_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("saes")
    return {
        "jumprelu": make_sae(root / "jumprelu"),
        "jumprelu_gemma": make_sae(root / "jumprelu_gemma", apply_b_dec=False, seed=1),  # Gemma Scope's setting
        "jumprelu_ln": make_sae(root / "jumprelu_ln", normalize="layer_norm", seed=2),
        "standard": make_sae(root / "standard", architecture="standard", seed=3),
        "topk": make_sae(root / "topk", architecture="topk", seed=4),
    }


def inputs(n=300, d_in=96, seed=0):
    return torch.randn(n, d_in, generator=torch.Generator().manual_seed(seed)) * 1.5 + 0.2


# ---------------------------------------------------------------------------------------------
# Registry and specs


def test_registry_agrees_with_saelens():
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    ours = saes.registry()
    theirs = get_pretrained_saes_directory()
    assert set(ours) == set(theirs)
    for release in (CANONICAL, "gemma-scope-9b-pt-res", "gpt2-small-res-jb"):
        assert ours[release]["repo_id"] == theirs[release].repo_id
        assert ours[release]["saes"] == theirs[release].saes_map


@pytest.mark.parametrize("layer, l0", [(9, 122), (20, 101), (31, 77)])
def test_paper_saes_pass_validation(layer, l0):
    src = saes.validate_sae_spec(f"{CANONICAL}/layer_{layer}/width_1m/canonical", allow_download=True)
    assert src.kind == "hub" and src.repo_id == "google/gemma-scope-9b-pt-res"
    assert src.folder == f"layer_{layer}/width_1m/average_l0_{l0}"
    assert (src.d_in, src.d_sae, src.l0) == (3584, 2**20, l0)
    assert src.hook_name == f"blocks.{layer}.hook_resid_post"
    # the same SAE by its explicit L0, as a (release, id) pair
    same = saes.validate_sae_spec(("gemma-scope-9b-pt-res", src.folder), allow_download=True)
    assert same.folder == src.folder


def test_misspelled_id_and_release_suggest_the_closest():
    with pytest.raises(
        ParamError,
        match=r"^sae: 'layer_20/width_1m/canonicl' is not an SAE id .*did you mean 'layer_20/width_1m/canonical'",
    ):
        saes.validate_sae_spec(f"{CANONICAL}/layer_20/width_1m/canonicl", allow_download=True)
    with pytest.raises(ParamError, match=f"did you mean '{CANONICAL}'"):
        saes.validate_sae_spec("gemma-scope-9b-pt-res-canonicl/layer_20/width_1m/canonical", allow_download=True)
    with pytest.raises(ParamError, match="no SAE id"):
        saes.validate_sae_spec(CANONICAL, allow_download=True)
    with pytest.raises(ParamError, match="^my_sae: './missing/sae' does not exist"):
        saes.validate_sae_spec("./missing/sae", name="my_sae")


def test_offline_refuses_a_hub_sae_saying_what_would_be_downloaded(monkeypatch):
    import huggingface_hub

    def no_network(*a, **k):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    spec = f"{CANONICAL}/layer_20/width_1m/canonical"
    for call in (lambda: saes.validate_sae_spec(spec), lambda: saes.load_sae(spec)):
        with pytest.raises(ParamError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("sae: ")
        assert "google/gemma-scope-9b-pt-res" in msg and "layer_20/width_1m/average_l0_101" in msg and "offline" in msg
        assert "30.1 GB" in msg  # W_enc + W_dec in fp32: 2 x 3584 x 2^20 x 4 bytes


def test_local_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParamError, match="has no cfg.json or sae_weights.safetensors"):
        saes.validate_sae_spec(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# Loading and encoding


def test_load_sae_from_folder(sae_dirs):
    from safetensors.torch import load_file

    sae = saes.load_sae(sae_dirs["jumprelu"])
    assert type(sae).__name__ == "JumpReLUSAE"
    saved = load_file(str(sae_dirs["jumprelu"] / "sae_weights.safetensors"))
    assert torch.equal(sae.W_enc, saved["W_enc"]) and torch.equal(sae.threshold, saved["threshold"])
    assert sae.source.kind == "local" and sae.source.hook_name == "blocks.1.hook_resid_post"
    assert (sae.source.d_in, sae.source.d_sae) == (96, 640)


def pre_activations_fp64(sae, x):
    """SAELens's pre-activation, in float64, from the SAE's own fp32 weights and config."""
    x = x.double()
    if sae.cfg.normalize_activations == "layer_norm":
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.std(-1, keepdim=True) + 1e-5)
    if sae.cfg.apply_b_dec_to_input:
        x = x - sae.b_dec.double()
    return x, x @ sae.W_enc.double() + sae.b_enc.double()


@pytest.mark.parametrize("name", ["jumprelu", "jumprelu_gemma", "jumprelu_ln", "standard"])
@pytest.mark.parametrize(
    "weights, compute, u",
    [
        (torch.float32, None, 0.0),  # fp32 throughout: only accumulation order differs
        (torch.bfloat16, None, 2.0**-8),  # bf16 weights, fp32 matmul (the CPU default)
        (torch.bfloat16, torch.bfloat16, 2.0**-8),  # bf16 matmul with bf16 output (a GPU without out_dtype)
    ],
)
def test_sparse_encoder_matches_sae_encode(sae_dirs, name, weights, compute, u):
    sae = saes.load_sae(sae_dirs[name])
    enc = encoding.SparseEncoder.from_sae(
        sae, weight_dtype=weights, compute_dtype=compute, token_chunk=64, feature_chunk=96
    )  # chunks that do not divide n, d_sae
    assert isinstance(enc, encoding.SparseEncoder)
    x = inputs()
    ref = sae.encode(x).detach()
    codes = enc.encode(x)
    ours = codes.to_dense(enc.d_sae)
    assert codes.n_tokens == x.shape[0] and (codes.values > 0).all()
    key = codes.rows * enc.d_sae + codes.features
    assert (key[1:] > key[:-1]).all()  # sorted by (row, feature)

    xp, h = pre_activations_fp64(sae, x)
    thr = (
        sae.threshold.double().clamp(min=0)
        if hasattr(sae, "threshold")
        else torch.zeros(enc.d_sae, dtype=torch.float64)
    )
    # rounding of x and W (2u), of the output (u |h|), fp32 accumulation on both sides
    bound = (2 * u + u * u + 2 * 96 * 2.0**-24) * (xp.abs() @ sae.W_enc.double().abs()) + (u + 2.0**-23) * (h.abs() + 1)
    on_ref, on_ours = ref > 0, ours > 0
    flipped = on_ref != on_ours
    assert ((h - thr).abs()[flipped] <= bound[flipped]).all(), "a feature flipped far from its threshold"
    both = on_ref & on_ours
    assert ((ours - ref).abs()[both].double() <= bound[both]).all()
    assert on_ref.sum() > 1000 and flipped.sum() <= 0.01 * on_ref.sum()
    if u == 0.0:
        assert flipped.sum() == 0
    assert encoding.agreement(enc, sae, x)["n_outside_bound"] == 0


def test_agreement_catches_a_wrong_encoder(sae_dirs):
    sae = saes.load_sae(sae_dirs["jumprelu"])
    enc = encoding.SparseEncoder.from_sae(sae, weight_dtype=torch.bfloat16)
    enc.threshold += 0.05  # a bug: features just above the real threshold go missing
    report = encoding.agreement(enc, sae, inputs())
    assert report["n_outside_bound"] > 0


def test_encoder_keeps_no_decoder_and_chunking_does_not_matter(sae_dirs):
    sae = saes.load_sae(sae_dirs["jumprelu_gemma"])
    enc = encoding.SparseEncoder.from_sae(sae, weight_dtype=torch.bfloat16)
    # W_enc in bf16, b_enc and threshold in fp32, no b_dec (not applied to the input), no W_dec
    assert enc.memory_bytes() == 96 * 640 * 2 + 2 * 640 * 4
    assert enc.threshold.dtype == torch.float32 and enc.W_enc.dtype == torch.bfloat16
    x = inputs(n=130).reshape(13, 10, 96)  # [batch, pos, d_in]: rows are the flattened positions
    a = enc.encode(x)
    b = encoding.SparseEncoder.from_sae(sae, weight_dtype=torch.bfloat16, token_chunk=7, feature_chunk=33).encode(x)
    # Blocks of another shape may take another matmul kernel (another fp32 summation order, e.g. on AMD
    # CPUs): the codes agree to fp32 rounding, and a feature may flip only at its threshold.
    da, db = a.to_dense(640), b.to_dense(640)
    near = (enc.pre_activations(x) - enc.threshold).abs() <= 1e-4
    assert torch.equal((da > 0)[~near], (db > 0)[~near])
    assert torch.allclose(da[~near], db[~near], rtol=1e-5, atol=1e-5)
    assert (da > 0).sum() > 100 and near.sum() <= 0.001 * near.numel()


def test_topk_uses_the_exact_fallback(sae_dirs):
    sae = saes.load_sae(sae_dirs["topk"])
    enc = encoding.SparseEncoder.from_sae(sae, token_chunk=50)
    assert not isinstance(enc, encoding.SparseEncoder)
    x = inputs()
    codes = enc.encode(x)
    assert torch.equal(codes.to_dense(640), sae.encode(x).detach().float())
    assert (codes.to_dense(640) > 0).sum(1).max() <= 12


def test_load_encoder_end_to_end_into_the_graph(sae_dirs):
    enc = encoding.load_encoder(str(sae_dirs["jumprelu"]), weight_dtype=torch.float32)
    sae = saes.load_sae(sae_dirs["jumprelu"])
    x = inputs(n=200)
    tokens = torch.randint(0, 50, (200,), generator=torch.Generator().manual_seed(1))
    g_sparse, g_dense = TokenFeatureGraph(50, 640), TokenFeatureGraph(50, 640)
    codes = enc.encode(x)
    g_sparse.update_sparse(tokens, codes.rows, codes.features)
    g_dense.update(tokens, sae.encode(x).detach())
    assert [a.tolist() for a in g_sparse.edges()] == [a.tolist() for a in g_dense.edges()]


# ---------------------------------------------------------------------------------------------
# Memory plan


def test_paper_plan_fits_80_gb_and_impossible_plans_are_refused():
    plan = sae_memory.check_memory(80e9, **sae_memory.PAPER_SETUP)
    total = sum(plan.values())
    assert total == sae_memory.estimate_memory(**sae_memory.PAPER_SETUP) <= 80e9
    # three bf16 encoders: 3 x 3584 x 2^20 x 2 bytes, at least
    assert plan["SAE encoders (W_enc, b_enc, threshold, b_dec)"] >= 3 * 3584 * 2**20 * 2
    assert plan["model weights"] == 9_241_705_984 * 2
    # fp32 encoders and decoders, as SAELens loads them: 3 x 2 x 15 GB alone exceed the GPU
    with pytest.raises(ParamError, match=r"^memory plan: .* needs about 1\d\d\.\d GB .* SAE decoders"):
        sae_memory.check_memory(80e9, **{**sae_memory.PAPER_SETUP, "weight_bytes": 4, "keep_decoder": True})
    with pytest.raises(ParamError, match="batch_tokens: "):
        sae_memory.check_memory(80e9, name="batch_tokens", **{**sae_memory.PAPER_SETUP, "batch_tokens": 400_000})
    # more tokens per batch never costs less
    sizes = [sae_memory.estimate_memory(**{**sae_memory.PAPER_SETUP, "batch_tokens": b}) for b in (1024, 4096, 16384)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert sae_memory.host_memory_to_load(3584, 2**20) > 2 * 3584 * 2**20 * 4


# ---------------------------------------------------------------------------------------------
# Activations: one forward, several layers, stopping at the deepest (tiny random Gemma-2)


@pytest.fixture(scope="module")
def tiny_gemma2(tmp_path_factory):
    from functok.sae.activations import save_tiny_gemma2

    return save_tiny_gemma2(tmp_path_factory.mktemp("gemma2") / "ckpt", n_layers=4, d_model=64)


def test_resid_activations_match_hf_hidden_states(tiny_gemma2):
    from transformers import AutoModelForCausalLM

    from functok.sae.activations import resid_activations
    from functok.sae.models import load_model

    assert json.loads((tiny_gemma2 / "config.json").read_text())["model_type"] == "gemma2"
    model = load_model(tiny_gemma2)
    hf = AutoModelForCausalLM.from_pretrained(str(tiny_gemma2)).eval()
    tokens = torch.randint(
        0, 50257, (2, 40), generator=torch.Generator().manual_seed(0)
    )  # longer than the sliding window
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states
        last = []
        h = hf.model.layers[3].register_forward_hook(lambda m, i, o: last.append(o[0] if isinstance(o, tuple) else o))
        hf(tokens)
        h.remove()

    # the bridge's blocks: count which ones run
    ran = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o, k=k: ran.append(k))
        for k, layer in enumerate(model.original_model.model.layers)
    ]
    acts = resid_activations(model, tokens, ["blocks.2.hook_resid_post", "blocks.0.hook_resid_post"])
    assert sorted(set(ran)) == [0, 1, 2]  # one forward, stopped after block 2
    ran.clear()
    for L in (0, 2):
        assert acts[f"blocks.{L}.hook_resid_post"].shape == (2, 40, 64)
        torch.testing.assert_close(acts[f"blocks.{L}.hook_resid_post"], hidden[L + 1], rtol=1e-5, atol=1e-5)
    full = resid_activations(model, tokens, ["blocks.3.hook_resid_post"])  # the last block: no stop
    assert sorted(set(ran)) == [0, 1, 2, 3]
    torch.testing.assert_close(full["blocks.3.hook_resid_post"], last[0], rtol=1e-5, atol=1e-5)
    for h in hooks:
        h.remove()
    with pytest.raises(ValueError, match="did you mean 'blocks.1.hook_resid_post'"):
        resid_activations(model, tokens, ["blocks.1.hook_resid_pst"])


def test_resid_activations_on_a_hooked_transformer():
    import warnings

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from functok.sae.activations import resid_activations

    cfg = HookedTransformerConfig(
        n_layers=3,
        d_model=32,
        n_ctx=32,
        d_head=8,
        n_heads=4,
        d_mlp=64,
        d_vocab=100,
        act_fn="gelu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer(cfg).eval()
    tokens = torch.randint(0, 100, (3, 16), generator=torch.Generator().manual_seed(0))
    acts = resid_activations(model, tokens, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"])
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    for L in (0, 1):
        torch.testing.assert_close(acts[f"blocks.{L}.hook_resid_post"], cache[f"blocks.{L}.hook_resid_post"])


def test_tiny_paper_path_forward_encode_graph(tiny_gemma2, tmp_path):
    """The paper preset's code path on a tiny model: one forward for two layers, the SAE files of
    each layer loaded from disk, sparse encoding, graphs; equal to the dense SAELens path."""
    from functok.sae.activations import resid_activations
    from functok.sae.models import load_model

    model = load_model(tiny_gemma2)
    hooks = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
    dirs = {
        h: make_sae(tmp_path / h, d_in=64, d_sae=300, seed=i, apply_b_dec=False, hook_name=h)
        for i, h in enumerate(hooks)
    }
    encoders = {h: encoding.load_encoder(str(d), weight_dtype=torch.float32) for h, d in dirs.items()}
    assert {h: e.hook_name for h, e in encoders.items()} == {h: h for h in hooks}
    vocab = 50257
    graphs = {h: TokenFeatureGraph(vocab, 300) for h in hooks}
    dense = {h: TokenFeatureGraph(vocab, 300) for h in hooks}
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        tokens = torch.randint(0, vocab, (2, 24), generator=g)
        acts = resid_activations(model, tokens, hooks)
        for h in hooks:
            codes = encoders[h].encode(acts[h])
            graphs[h].update_sparse(tokens.reshape(-1), codes.rows, codes.features)
            dense[h].update(tokens, saes.load_sae(dirs[h]).encode(acts[h]).detach())
    for h in hooks:
        assert graphs[h].n_edges > 0
        assert [a.tolist() for a in graphs[h].edges()] == [a.tolist() for a in dense[h].edges()]
        assert np.array_equal(graphs[h].degree(), dense[h].degree())
