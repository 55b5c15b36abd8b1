"""The activation store on tiny random models of the real models' architectures (Llama: SmolLM2 and the
embedded models; Gemma-3: Gemma-3-270M): its values are TransformerLens's `blocks.L.hook_resid_post`, the
forward stops after the deepest layer, bfloat16's recorded error is the error of the stored values, SAEs
and the graph read the store instead of the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_causal_lm

from functok.core.config import ParamError
from functok.sae import activation_store as A
from functok.sae import activations as sae_activations
from functok.sae import training as S
from functok.sae.activations import resid_activations, training_activations
from functok.sae.models import load_model


def _windows(folder: Path, n: int, ctx: int, bos: int, seed: int = 0) -> Path:
    import datasets

    rng = np.random.default_rng(seed)
    x = rng.integers(300, 5000, size=(n, ctx))
    x[:, 0] = bos
    x[n // 2, ctx // 2] = bos  # a document starting mid-window
    datasets.Dataset.from_dict({"input_ids": x.tolist()}).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def world(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNCTOK_CACHE", str(d / "cache"))
        ck = tiny_causal_lm(d / "ckpt", request.param, n_layers=3, d_model=32)
        from transformers import AutoTokenizer

        bos = AutoTokenizer.from_pretrained(str(ck)).bos_token_id
        yield {"ckpt": ck, "windows": _windows(d / "win", 10, 16, bos), "bos": bos}
        sae_activations.clear_memory()


def test_float32_store_holds_the_bridges_resid_post_and_stops_after_the_deepest_layer(world, monkeypatch):
    ran = []
    orig = A.hf_resid

    def counting(model, tokens, layers):
        blocks = A.decoder_layers(model)
        h = blocks[2].register_forward_hook(lambda *a: ran.append(2))
        try:
            return orig(model, tokens, layers)
        finally:
            h.remove()

    monkeypatch.setattr(A, "hf_resid", counting)
    store = A.activation_store(world["ckpt"], world["windows"], [0, 1], "float32", batch_size=4, progress=False)
    assert ran == []  # layer 2 never ran: the forward stopped after layer 1
    bridge = load_model(world["ckpt"])
    x = torch.as_tensor(A.load_windows(world["windows"]))
    ref = resid_activations(bridge, x, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"])
    for L in (0, 1):
        got = A.read_activations(store, f"blocks.{L}.hook_resid_post")
        assert got.shape == (10, 16, 32)
        torch.testing.assert_close(got, ref[f"blocks.{L}.hook_resid_post"].float(), atol=1e-4, rtol=1e-4)
    rows = A.read_activations(store, "blocks.1.hook_resid_post", rows=[7, 2])
    torch.testing.assert_close(rows, ref["blocks.1.hook_resid_post"][[7, 2]].float(), atol=1e-4, rtol=1e-4)
    info = A.store_info(store)
    assert info["layers"] == [0, 1] and info["excluded_token_ids"] == [world["bos"]]
    assert info["check"]["blocks.1.hook_resid_post"]["relative_error"] < 1e-5  # float32 against float32


def test_bfloat16_store_records_the_error_of_what_it_stores(world):
    store = A.activation_store(world["ckpt"], world["windows"], [1, 2], "bfloat16", batch_size=4, progress=False)
    assert np.load(Path(store) / "blocks.2.hook_resid_post.npy", mmap_mode="r").dtype == np.uint16  # 2 bytes a value
    x = torch.as_tensor(A.load_windows(world["windows"]))
    ref = A.hf_resid(A.load_hf(world["ckpt"], "float32"), x[:4], [1, 2])
    keep = x[:4] != world["bos"]
    for L in (1, 2):
        got = A.read_activations(store, f"blocks.{L}.hook_resid_post", rows=range(4))[keep]
        r = ref[L][keep]
        err = float((got - r).norm() / r.norm())
        assert 0 < err < 0.05  # bfloat16 moves the values, a little
        rec = A.store_info(store)["check"][f"blocks.{L}.hook_resid_post"]
        assert rec["relative_error"] == pytest.approx(err, rel=1e-4)
        assert rec["max_abs"] == pytest.approx(float(r.abs().max()), rel=1e-5)
        per = (got - r).norm(dim=-1) / r.norm(dim=-1)  # per position, recomputed from the stored values
        assert rec["position_error_median"] == pytest.approx(float(per.median()), rel=1e-4)
        assert rec["position_error_max"] == pytest.approx(float(per.max()), rel=1e-4)
        assert rec["position_error_median"] <= rec["position_error_p99"] <= rec["position_error_max"]


def test_store_is_cached_and_refuses_what_it_does_not_hold(world, monkeypatch):
    a = A.activation_store(world["ckpt"], world["windows"], [1, 2], "bfloat16", progress=False)
    monkeypatch.setattr(A, "_build", lambda *a, **k: pytest.fail("rebuilt a cached store"))
    assert A.activation_store(world["ckpt"], world["windows"], [2, 1, 2], "bfloat16", progress=False) == a
    with pytest.raises(ParamError, match="hook_name: 'blocks.0.hook_resid_post' is not in the activation store"):
        A.read_activations(a, "blocks.0.hook_resid_post")
    with pytest.raises(ParamError, match="activation_store: got 'float16'"):
        A.activation_store(world["ckpt"], world["windows"], [1], "float16")
    with pytest.raises(ParamError, match="layers: layer 3 requested; the model has 3 layers"):
        A.hf_resid(A.load_hf(world["ckpt"], "float32"), torch.zeros(1, 4, dtype=torch.long), [3])


def test_sae_training_set_read_from_the_store_is_the_models(world, tmp_path):
    store = A.activation_store(world["ckpt"], world["windows"], [0, 1], "float32", progress=False)
    hook = "blocks.1.hook_resid_post"
    from_store = A.store_training_activations(store, world["windows"], hook, 100)
    from_model = training_activations(world["ckpt"], hook, world["windows"], 100)
    assert from_store.shape == (100, 32)
    torch.testing.assert_close(from_store, from_model, atol=1e-4, rtol=1e-4)
    other = _windows(tmp_path / "other", 10, 16, world["bos"], seed=1)
    with pytest.raises(ParamError, match="store: .* holds the windows"):
        A.store_training_activations(store, other, hook, 100)


def test_saes_trained_from_a_store_read_no_model_and_have_their_own_key(world, monkeypatch):
    spec = S.SAESpec(architecture="batchtopk", sparsity_coefficient=4, training_tokens=256, batch_size=64,
                     expansion_factor=2, autocast=True)  # fmt: skip
    store = A.activation_store(world["ckpt"], world["windows"], [0, 1], "bfloat16", progress=False)
    plain = S.train_sae(world["ckpt"], "blocks.1.hook_resid_post", spec, world["windows"], progress=False)
    monkeypatch.setattr(S, "model_for", lambda *a, **k: pytest.fail("ran the model with a store"))
    folders = [
        S.train_sae(world["ckpt"], f"blocks.{L}.hook_resid_post", spec, world["windows"], progress=False, store=store)
        for L in (0, 1)
    ]
    assert plain not in folders and folders[0] != folders[1]
    params = json.loads((Path(folders[1]) / "params.json").read_text())
    assert params["activations"] == "store:bfloat16" and params["autocast"] is True
    stats = S.training_stats(folders[1])
    assert stats["activation_source"] == "store"
    assert json.loads((Path(folders[1]) / "cfg.json").read_text())["metadata"]["exclude_special_tokens"] == [
        world["bos"]
    ]


def test_old_sae_keys_do_not_move():
    """autocast off and no store leave the key as it was before either existed (cached SAEs stay valid)."""
    p = S.sae_params("ck", "blocks.1.hook_resid_post", S.SAESpec(), np.zeros((2, 4), dtype=np.int64))
    assert "autocast" not in p and "activations" not in p
    assert S.sae_params("ck", "blocks.1.hook_resid_post", S.SAESpec(autocast=True), np.zeros((2, 4)))["autocast"]
