"""SAE training and metrics on a tiny random Llama (and a tiny GPT-NeoX, Pythia's architecture):
SAELens format round trip, cache keys, both back ends, the reconstruction score against SAELens's own
evaluation code, explained variance / L0 / learned features against direct recomputations."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_causal_lm, tiny_neox

from functok.core.config import ParamError
from functok.sae import activations as sae_activations
from functok.sae import quality
from functok.sae import training as S
from functok.sae.loading import load_sae
from functok.sae.models import load_model
from functok.world.tokenizers import gpt2_tokenizer

HOOK = "blocks.1.hook_resid_post"
TEXTS = [
    "The cat sat on the mat, and the dog sat on the log.",
    "Tokyo is the capital of Japan. The city of Tokyo is large and old.",
    "In the beginning the model learns the most frequent tokens of the corpus.",
    "Of all the words, the and of and to are the most common ones in English text.",
    "A river runs through the valley; its water is cold in the spring and warm in the summer.",
    "State of the Union addresses are given by the president to the Congress each year.",
] * 6


def _save_windows(folder: Path, ids: list[list[int]], bos: int, ctx: int) -> Path:
    import datasets

    flat = np.concatenate([np.asarray([bos, *d], dtype=np.int32) for d in ids])
    n = flat.size // ctx
    feats = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    datasets.Dataset.from_dict({"input_ids": list(flat[: n * ctx].reshape(n, ctx))}, features=feats).save_to_disk(
        str(folder)
    )
    return folder


def tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer, 16-wide Llama with a 300-token BPE trained on TEXTS."""
    from transformers import AutoTokenizer

    from functok.world.embedded import train_bpe

    tok = AutoTokenizer.from_pretrained(str(train_bpe(TEXTS, 300, folder)))
    return tiny_causal_lm(folder, "llama", n_layers=2, tok=tok, d_model=16, seed=seed)


@pytest.fixture(scope="module")
def env():
    """A private cache, a tiny random Llama checkpoint and train / held-out windows of 32 tokens."""
    from transformers import AutoTokenizer

    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as d:
        d = Path(d)
        mp.setenv("FUNCTOK_CACHE", str(d / "cache"))
        ck = tiny_llama(d / "ckpt")
        tok = AutoTokenizer.from_pretrained(str(ck))
        ids = [tok.encode(t, add_special_tokens=False) for t in TEXTS]
        train = _save_windows(d / "train", ids, tok.bos_token_id, 32)
        held = _save_windows(d / "held", ids[:12], tok.bos_token_id, 32)
        sae_activations.clear_memory()
        yield {"dir": d, "ckpt": ck, "train": train, "held": held, "bos": tok.bos_token_id}
        sae_activations.clear_memory()


SPEC = S.SAESpec(sparsity_coefficient=0.3, training_tokens=2048, batch_size=128, expansion_factor=4)


def test_trained_sae_is_in_sae_lens_format_and_cached(env, monkeypatch):
    from sae_lens import SAE

    folder = S.train_sae(env["ckpt"], HOOK, SPEC, env["train"], progress=False)
    assert (folder / "cfg.json").exists() and (folder / "sae_weights.safetensors").exists()
    sae = SAE.load_from_disk(str(folder))
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and sae.cfg.d_in == 16 and sae.cfg.d_sae == 64
    assert sae.cfg.metadata.hook_name == HOOK and cfg["normalize_activations"] == "none"  # scaling folded in
    assert cfg["metadata"]["training_architecture_details"]["jumprelu_sparsity_loss_mode"] == "tanh"
    assert cfg["metadata"]["training_architecture_details"]["jumprelu_bandwidth"] == 0.02
    stats = S.training_stats(folder)
    assert stats["activations"] == 2048 and stats["steps"] == 16 and stats["activations_per_s"] > 0
    # cached: same parameters never retrain; any changed parameter is a new folder
    monkeypatch.setattr(S, "_fit_activations", lambda *a, **k: pytest.fail("retrained a cached SAE"))
    assert S.train_sae(env["ckpt"], HOOK, SPEC, env["train"], progress=False) == folder
    monkeypatch.undo()
    other = S.train_sae(env["ckpt"], HOOK, S.SAESpec(**{**SPEC.__dict__, "seed": 1}), env["train"], progress=False)
    assert other != folder
    w0 = SAE.load_from_disk(str(folder)).W_enc
    assert not torch.equal(w0, SAE.load_from_disk(str(other)).W_enc)


def test_metrics_against_sae_lens_and_direct_recomputation(env):
    """H_orig, H*, H0 equal SAELens's own `get_recons_loss` (ignore_tokens=[BOS]); explained variance
    and L0 equal a recomputation from activations taken by the HF model's hidden states."""
    from sae_lens.evals import get_recons_loss
    from sae_lens.training.activation_scaler import ActivationScaler

    folder = S.train_sae(env["ckpt"], HOOK, SPEC, env["train"], progress=False)
    m = quality.evaluate_sae(folder, env["ckpt"], env["held"])
    sae = load_sae(folder)
    model = load_model(env["ckpt"])
    x = S.load_windows(env["held"])
    with torch.no_grad():
        ref = get_recons_loss(
            sae,
            model,
            ActivationScaler(),
            x,
            compute_kl=False,
            compute_ce_loss=True,
            ignore_tokens=[env["bos"]],
            hook_name=HOOK,
        )
    for ours, theirs in [
        ("ce_loss_original", "ce_loss_without_sae"),
        ("ce_loss_with_sae", "ce_loss_with_sae"),
        ("ce_loss_zero_ablation", "ce_loss_with_ablation"),
    ]:
        assert abs(m[ours] - ref[theirs].double().mean().item()) < 1e-5, ours
    h, hs, h0 = (
        ref[k].double().mean().item() for k in ("ce_loss_without_sae", "ce_loss_with_sae", "ce_loss_with_ablation")
    )
    assert abs(m["ce_reconstruction_score"] - (h0 - hs) / (h0 - h)) < 1e-5
    assert abs(m["loss_increase_nats"] - (hs - h)) < 1e-5  # SAELens's losses: nats lost by splicing the SAE in
    # against mean ablation (the hook's activation replaced by its mean over non-BOS positions), computed apart
    hmean = quality.mean_ablation_loss(env["ckpt"], HOOK, env["held"])["ce_loss_mean_ablation"]
    assert abs(m["mean_ablation_score"] - (hmean - hs) / (hmean - h)) < 1e-5
    # The last block's resid_post is the HF hidden state before the final norm: HF's last hidden
    # state is normed, so take the pre-norm output via a forward hook on the last decoder layer.
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(env["ckpt"]))
    got = {}
    hf.model.layers[1].register_forward_hook(
        lambda mod, i, o: got.__setitem__("a", o[0] if isinstance(o, tuple) else o)
    )
    with torch.no_grad():
        hf(input_ids=x)
    a = got["a"][x != env["bos"]]
    with torch.no_grad():
        f = sae.encode(a)
        r = sae.decode(f)
    ev = 1 - ((r - a) ** 2).sum().item() / ((a - a.mean(0)) ** 2).sum().item()
    assert abs(m["explained_variance"] - ev) < 1e-4
    assert abs(m["l0"] - (f > 0).sum(-1).float().mean().item()) < 1e-6
    assert m["n_activations"] == int((x != env["bos"]).sum())


def test_activation_sample_and_learned_features(env):
    x = S.load_windows(env["held"])
    n_ok = int((x != env["bos"]).sum())
    folder = S.train_sae(env["ckpt"], HOOK, SPEC, env["train"], progress=False)
    s = sae_activations.activation_sample(env["ckpt"], HOOK, env["held"], 100, seed=3)
    pairs = set(zip(s.window_index.tolist(), s.position.tolist()))
    assert len(pairs) == 100 and (s.tokens != env["bos"]).all()
    assert (x.numpy()[s.window_index, s.position] == s.tokens).all()
    assert sae_activations.activation_sample(env["ckpt"], HOOK, env["held"], 100, seed=3) is s  # reused
    s2 = sae_activations.activation_sample(env["ckpt"], HOOK, env["held"], 100, seed=4)
    assert set(zip(s2.window_index.tolist(), s2.position.tolist())) != pairs
    # asking for more than there is: every non-BOS position once
    full = sae_activations.activation_sample(env["ckpt"], HOOK, env["held"], 10**6, seed=0)
    assert len(full.tokens) == n_ok
    # learned features = distinct features firing on the sample, recomputed with SAELens directly
    sae = load_sae(folder)
    model = load_model(env["ckpt"])
    with torch.no_grad():
        _, cache = model.run_with_cache(x, names_filter=[HOOK])
        acts = cache[HOOK][torch.as_tensor(s.window_index), torch.as_tensor(s.position)]
        expected = int(((sae.encode(acts) > 0).sum(0) > 0).sum())
    assert quality.learned_features(folder, env["ckpt"], env["held"], 100, seed=3) == expected
    assert expected > 0


def test_runner_backend_and_other_architectures(env):
    from sae_lens import SAE

    runner = S.train_sae(
        env["ckpt"], HOOK, S.SAESpec(**{**SPEC.__dict__, "backend": "runner"}), env["train"], progress=False
    )
    sae = SAE.load_from_disk(str(runner))
    assert sae.cfg.d_sae == 64 and sae.cfg.metadata.hook_name == HOOK
    assert S.training_stats(runner)["spec"]["backend"] == "runner"
    m = quality.evaluate_sae(runner, env["ckpt"], env["held"])
    assert np.isfinite(m["ce_reconstruction_score"]) and 0 <= m["l0"] <= 64
    for arch, coef, cls in [("standard", 1.0, "standard"), ("topk", 5, "topk")]:
        f = S.train_sae(
            env["ckpt"],
            "blocks.0.hook_resid_post",
            S.SAESpec(**{**SPEC.__dict__, "architecture": arch, "sparsity_coefficient": coef}),
            env["train"],
            progress=False,
        )
        assert json.loads((f / "cfg.json").read_text())["architecture"] == cls
        m = quality.evaluate_sae(f, env["ckpt"], env["held"])
        if arch == "topk":
            assert m["l0"] <= 5 + 1e-9


def test_bad_input_is_refused_in_one_line(env):
    for kwargs, fragment in [
        ({"architecture": "relu"}, "^architecture:"),
        ({"backend": "gpu"}, "^backend:"),
        ({"sparsity_coefficient": 0.0}, "^sparsity_coefficient:"),
        ({"training_tokens": 10}, "^training_tokens:"),
    ]:
        with pytest.raises(ParamError, match=fragment):
            S.train_sae(env["ckpt"], HOOK, S.SAESpec(**{**SPEC.__dict__, **kwargs}), env["train"], progress=False)
    with pytest.raises(ParamError, match="^hook_name:"):
        S.train_sae(env["ckpt"], "resid_post", SPEC, env["train"], progress=False)
    with pytest.raises(ParamError, match="^hook_name: 'blocks.5.hook_resid_post' names layer 5; the model has 2"):
        S.train_sae(env["ckpt"], "blocks.5.hook_resid_post", SPEC, env["train"], progress=False)
    with pytest.raises(ParamError, match="offline"):
        load_model("EleutherAI/pythia-70m@step1000")


def test_gpt_neox_checkpoint_trains_through_the_same_path(env, tmp_path):
    """Pythia's architecture (GPT-NeoX), random and tiny, through load_model / train / evaluate."""
    folder = tiny_neox(tmp_path / "neox")
    tok = gpt2_tokenizer()
    ids = [tok.encode(t, add_special_tokens=False) for t in TEXTS]
    win = _save_windows(tmp_path / "win", ids, tok.bos_token_id, 16)
    sae = S.train_sae(folder, HOOK, S.SAESpec(**{**SPEC.__dict__, "training_tokens": 512}), win, progress=False)
    m = quality.evaluate_sae(sae, folder, win, max_windows=8)
    assert m["hook_name"] == HOOK and np.isfinite(m["ce_reconstruction_score"]) and m["d_sae"] == 64
    assert m["n_activations"] == int((S.load_windows(win)[:8] != tok.bos_token_id).sum())
