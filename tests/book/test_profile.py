"""The build profile on a private cache: the stages a build made (and only those), FLOPs from the stated
formulas and the stages' shapes, ratios to the matmul rate, slow stages named."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from tiny import tiny_causal_lm

from functok.book import profile as P
from functok.sae import activation_store as A
from functok.sae import training as S


def _windows(folder, n=6, ctx=16, bos=50256):
    import datasets

    x = np.random.default_rng(0).integers(300, 5000, size=(n, ctx))
    x[:, 0] = bos
    datasets.Dataset.from_dict({"input_ids": x.tolist()}).save_to_disk(str(folder))
    return folder


@pytest.fixture
def built(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCTOK_CACHE", str(tmp_path / "cache"))
    ck = tiny_causal_lm(tmp_path / "ckpt", "llama", n_layers=3, d_model=32)
    win = _windows(tmp_path / "win")
    old = S.train_sae(
        ck, "blocks.0.hook_resid_post", S.SAESpec(training_tokens=128, batch_size=64), win, progress=False
    )
    os.utime(old / "params.json", (time.time() - 3600,) * 2)  # built by an earlier build
    since = time.time() - 60
    store = A.activation_store(ck, win, [0, 1], "bfloat16", progress=False)
    spec = S.SAESpec(architecture="batchtopk", sparsity_coefficient=4, training_tokens=192, batch_size=64,
                     expansion_factor=2, autocast=True)  # fmt: skip
    sae = S.train_sae(ck, "blocks.1.hook_resid_post", spec, win, progress=False, store=store)
    return {"ckpt": ck, "since": since, "old": old, "sae": sae, "store": store}


def test_stages_are_what_the_build_made_with_flops_from_their_shapes(built):
    from transformers import AutoModelForCausalLM

    rows = P.stage_rows(built["since"])
    assert sorted(r["stage"] for r in rows) == ["SAE training", "activation store"]  # the earlier SAE is not here
    hf = AutoModelForCausalLM.from_pretrained(str(built["ckpt"]))
    blocks = [sum(p.numel() for p in b.parameters()) for b in hf.model.layers]
    assert P.forward_params(str(built["ckpt"]), 1) == blocks[0] + blocks[1]
    assert P.forward_params(str(built["ckpt"]), None) == sum(blocks) + hf.lm_head.weight.numel()
    store = next(r for r in rows if r["stage"] == "activation store")
    assert store["flops"] == 2 * (blocks[0] + blocks[1]) * 6 * 16 and store["dtype"] == "bfloat16"
    sae = next(r for r in rows if r["stage"] == "SAE training")
    assert sae["flops"] == 6 * 2 * 32 * 64 * 192 and sae["dtype"] == "bfloat16"  # autocast: bfloat16 matmuls
    assert len(P.stage_rows(0.0)) == 3  # the whole cache: the earlier SAE too


def test_sae_evaluations_keyed_without_their_checkpoint_find_it_in_their_sae(built):
    """Chapter 4 keys its evaluations by the SAE alone: the profile reads the checkpoint from the SAE's key."""
    from functok.core.cache import cached_json, relpath

    result = {"seconds": 2.0, "hook_name": "blocks.1.hook_resid_post", "n_tokens": 96, "passes": 3}
    cached_json("sae_evals", {"sae": relpath(built["sae"]), "windows": "w"}, lambda: result)
    (row,) = [r for r in P.stage_rows(built["since"]) if r["stage"] == "SAE quality"]
    assert row["flops"] == 2 * P.forward_params(str(built["ckpt"]), None) * 96 * 3


def test_ratios_and_slow_stages(tmp_path):
    rows = [
        P._row("SAE training", "a", 2.0, 4e11, "6 (2 d d_sae) T"),  # 200 GFLOP/s
        P._row("activation store", "b", 1.0, 5e10, "2 N T", "bfloat16"),  # 50 GFLOP/s
    ]
    out = P.with_rates(rows, {"float32": 250.0, "bfloat16": 500.0})
    assert out[0]["gflops"] == 200.0 and out[0]["ratio"] == 0.8 and out[0]["why_slow"] == ""
    assert out[1]["ratio"] == 0.1 and out[1]["why_slow"] == P.WHY["activation store"]
    runs = [{"run": "feature_coverage", "seconds": 12.0}]
    doc = {"matmul_gflops": {"float32": 250.0, "bfloat16": 500.0}, "threads": 2, "stages": out,
           "chapter_runs": runs, "slow_stages": ["activation store"]}  # fmt: skip
    text = P.table(doc)
    assert "SAE training" in text and "0.80" in text and "under 0.5 x matmul: activation store" in text
    import json

    (tmp_path / "profile.json").write_text(json.dumps(doc))
    md = P.markdown(tmp_path / "profile.json")
    assert (
        "| SAE training | 1 | 2 | 0.40 | 200 | 0.80 | float32 |" in md and "Under 0.5 x matmul, activation store" in md
    )
    assert P.markdown(tmp_path / "none.json") == ""


def test_matmul_rate_is_measured():
    assert P.matmul_rate("float32", seconds=0.05) > 1.0
