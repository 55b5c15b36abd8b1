"""Pre-training on a tiny configuration: determinism, resume after a kill, atomic checkpoints, the
TransformerLens path, the checkpoint schedule, the per-step group log and the cache key."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import PRETRAIN, tiny_preset

import functok.chapters.registry
import functok.core.cache
import functok.core.config
import functok.world.embedded
from functok.core.config import ROOT
from functok.world import pretrain as P
from functok.world import runs, windows
from functok.world.config import PretrainConfig, pretrain_config
from functok.world.loss_groups import GROUPS, prediction_groups

TINY = PRETRAIN


@pytest.fixture(scope="module")
def env():
    """A temporary cache and a 'tiny' preset."""
    with tiny_preset() as d:
        yield d


@pytest.fixture(autouse=True)
def _fresh_document_cache():
    yield
    functok.world.embedded.documents.cache_clear()  # frees the loaded documents of a deleted temporary cache


def use_cache(d: Path, monkeypatch) -> None:
    monkeypatch.setenv("FUNCTOK_CACHE", str(d))
    functok.world.embedded.documents.cache_clear()


@pytest.fixture(scope="module")
def tiny_cfg(env) -> PretrainConfig:
    return pretrain_config("tiny")


@pytest.fixture(scope="module")
def reference_run(env, tiny_cfg) -> Path:
    """An uninterrupted run of the 1-layer model in the module's cache."""
    return P.train_run(tiny_cfg, 1, progress=False)


def state_dicts(run: Path) -> dict[int, dict]:
    from safetensors.torch import load_file

    return {c["step"]: load_file(str(Path(c["checkpoint"]) / "model.safetensors")) for c in runs.checkpoints(run)}


def assert_same_run(a: Path, b: Path) -> None:
    sa, sb = state_dicts(a), state_dicts(b)
    assert sorted(sa) == sorted(sb) and len(sa) == TINY["n_checkpoints"]
    for step in sa:
        assert sa[step].keys() == sb[step].keys()
        for k in sa[step]:
            assert torch.equal(sa[step][k], sb[step][k]), f"step {step}: {k} differs"
    la, lb = runs.train_log(a), runs.train_log(b)
    assert len(la) == len(lb) and la.equals(lb)


def test_complete_run_layout(reference_run, tiny_cfg):
    run = reference_run
    assert (run / "params.json").exists() and not (run / "resume.pt").exists()
    total = TINY["train_tokens"] // (TINY["batch_size"] * TINY["context_size"])
    listed = json.loads((run / "checkpoints.json").read_text())
    assert [c["step"] for c in listed] == [c["step"] for c in runs.checkpoints(run)]
    assert listed[0]["step"] == 0 and listed[-1]["step"] == total
    for c in runs.checkpoints(run):
        folder = Path(c["checkpoint"])
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
        assert folder.stat().st_mode & 0o055 == 0o055  # readable by others (not mkdtemp's private 0700)
        assert c["tokens_seen"] == c["step"] * TINY["batch_size"] * TINY["context_size"]
    # the model is a Llama with the configured shape and untied, bias-free weights
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(runs.checkpoints(run)[-1]["checkpoint"])
    assert conf.model_type == "llama" and conf.num_hidden_layers == 1 and conf.hidden_size == 16
    assert conf.tie_word_embeddings is False and conf.attention_bias is False and conf.mlp_bias is False


def test_same_seed_same_params_bit_identical(env, tiny_cfg, reference_run, monkeypatch, tmp_path):
    use_cache(tmp_path / "again", monkeypatch)
    again = P.train_run(tiny_cfg, 1, progress=False)
    assert again != reference_run
    assert_same_run(reference_run, again)
    # and a different seed gives different weights (the comparison can fail)
    use_cache(tmp_path / "other_seed", monkeypatch)
    other = P.train_run(dataclasses.replace(tiny_cfg, seed=1), 1, progress=False)
    w_ref, w_other = state_dicts(reference_run), state_dicts(other)
    last = max(w_ref)
    assert not torch.equal(w_ref[last]["lm_head.weight"], w_other[last]["lm_head.weight"])


def test_killed_run_resumes_bit_identical(env, tiny_cfg, reference_run, monkeypatch, tmp_path):
    use_cache(tmp_path / "killed", monkeypatch)
    schedule = P.checkpoint_schedule(30, 6)
    kill_at = schedule[-2] + 3  # between the last two checkpoints
    with pytest.raises(P._Stop):
        P.train_run(tiny_cfg, 1, stop_after=kill_at, progress=False)
    run = P.cache_path("models", P.run_params(tiny_cfg, 1))
    assert not (run / "params.json").exists()
    assert [c["step"] for c in runs.checkpoints(run)] == schedule[:-1]
    assert len(runs.train_log(run)) == kill_at  # lines written past the last checkpoint ...
    resumed = P.train_run(tiny_cfg, 1, progress=False)
    assert resumed == run and (run / "params.json").exists()
    assert json.loads((run / "summary.json").read_text())["resumed_from_step"] == schedule[-2]
    assert list(runs.train_log(run)["step"]) == list(range(1, 31))  # ... were truncated, not duplicated
    assert_same_run(reference_run, run)


def test_half_written_checkpoint_is_never_complete(env, tiny_cfg, reference_run, monkeypatch, tmp_path):
    use_cache(tmp_path / "half", monkeypatch)
    real_save = P._save_checkpoint
    calls = []

    class Killed(Exception):
        pass

    def dying_save(model, tok, folder):
        calls.append(folder.name)
        if len(calls) == 3:  # killed while writing the third checkpoint: the model file is there, no tokenizer
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
            model.save_pretrained(str(tmp))
            raise Killed()
        real_save(model, tok, folder)

    monkeypatch.setattr(P, "_save_checkpoint", dying_save)
    with pytest.raises(Killed):
        P.train_run(tiny_cfg, 1, progress=False)
    run = P.cache_path("models", P.run_params(tiny_cfg, 1))
    dying_step = int(calls[2].split("_")[1])
    assert list((run / "checkpoints").glob(f".{calls[2]}.tmp-*")), "the simulated half-written folder exists"
    assert not (run / "checkpoints" / calls[2]).exists()
    assert dying_step not in [c["step"] for c in runs.checkpoints(run)]
    assert not (run / "params.json").exists()
    # a stray folder with a checkpoint's name but not recorded as complete is not listed either
    (run / "checkpoints" / "step_000029").mkdir()
    assert 29 not in [c["step"] for c in runs.checkpoints(run)]

    monkeypatch.setattr(P, "_save_checkpoint", real_save)
    P.train_run(tiny_cfg, 1, progress=False)
    assert not list((run / "checkpoints").glob(".*.tmp-*"))
    assert_same_run(reference_run, run)


def test_bridge_per_token_loss_matches_hf(reference_run, tiny_cfg):
    from transformers import AutoModelForCausalLM

    from functok.sae.models import load_model

    ckpt = runs.checkpoints(reference_run)[-1]["checkpoint"]
    x = windows.load_windows(windows.token_windows("tiny", "heldout"))[:3]
    hf = AutoModelForCausalLM.from_pretrained(ckpt)
    hf.eval()
    with torch.no_grad():
        out = hf(input_ids=x, labels=x)
        logits = out.logits[:, :-1]
        hf_per = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
        ).view(3, -1)
        bridge = load_model(ckpt)
        tl_per = bridge(x, return_type="loss", loss_per_token=True)
        _, cache = bridge.run_with_cache(x, names_filter=lambda n: n.endswith("hook_resid_post"))
    assert tl_per.shape == hf_per.shape
    assert (tl_per - hf_per).abs().max().item() < 1e-4
    assert abs(tl_per.mean().item() - out.loss.item()) < 1e-4
    assert "blocks.0.hook_resid_post" in cache and cache["blocks.0.hook_resid_post"].shape == (3, 32, 16)


def test_fused_loss_equals_plain_cross_entropy(env, tiny_cfg):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(functok.world.embedded.tokenizer_dir(tiny_cfg)))
    x = windows.load_windows(windows.token_windows("tiny", "train"))[:4]

    def grads(fused: bool):
        model = P.build_model(tiny_cfg, 2, tok)
        if fused:
            loss, per = P.lm_loss(model, x, chunk=7)  # a chunk that does not divide the token count
        else:
            logits = model(input_ids=x).logits[:, :-1]
            per = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
            ).view(4, -1)
            loss = per.mean()
        (2.5 * loss).backward()
        return per.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    per_f, g_f = grads(True)
    per_p, g_p = grads(False)
    assert torch.allclose(per_f, per_p, atol=1e-5, rtol=0)
    for n in g_p:
        assert torch.allclose(g_f[n], g_p[n], atol=1e-6, rtol=1e-4), n


@pytest.mark.parametrize("total,n", [(30, 6), (366, 14), (100_000, 14), (5, 14), (13, 14)])
def test_checkpoint_schedule(total, n):
    s = P.checkpoint_schedule(total, n)
    assert s[0] == 0 and s[-1] == total
    assert all(a < b for a, b in zip(s, s[1:]))
    assert len(s) == min(n, total + 1)
    if total >= 300:
        assert sum(1 for x in s if 0 < x <= 0.05 * total) >= 3  # several in the first 5%
    if total >= 10_000:  # log-spaced: equal ratios between consecutive steps, away from rounding
        ratios = np.array(s[3:][1:]) / np.array(s[3:][:-1])
        assert ratios.max() / ratios.min() < 1.2
        assert abs(math.log(total) / (n - 2) - np.log(ratios).mean()) < 0.1


def test_batches_cover_each_epoch_once():
    seen = np.concatenate([P.batch_indices(3, step, 4, 10) for step in range(5)])  # 2 epochs of 10 windows
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert list(seen[:10]) != list(seen[10:20])  # each epoch in a new order
    assert list(P.batch_indices(3, 2, 4, 10)) == list(seen[8:12])  # a pure function of the step


def test_train_log_has_groups_each_step(reference_run, tiny_cfg):
    log = runs.train_log(reference_run)
    assert list(log["step"]) == list(range(1, 31))
    for col in ("loss", "lr", "tokens_seen", *GROUPS):
        assert col in log.columns
    assert log[list(GROUPS)].notna().all().all() and np.isfinite(log[list(GROUPS)].to_numpy()).all()
    # warm-up then cosine decay to min_lr
    lr = log["lr"].to_numpy()
    assert lr[0] < lr[2] and abs(lr.max() - TINY["lr"]) < 1e-12 and abs(lr[-1] - TINY["min_lr"]) < 1e-9
    assert log["loss"].iloc[-5:].mean() < log["loss"].iloc[:3].mean() - 0.5  # it learns

    # the logged group means of step 1 equal a recomputation from the step-0 checkpoint with HF logits
    from transformers import AutoModelForCausalLM

    from functok.world.function_tokens import (
        function_token_file,
        load_function_token_ids,
    )

    ids = load_function_token_ids(
        function_token_file("embedded", "embedded", "tiny", tiny_cfg.coverage_threshold, tiny_cfg.max_documents)
    )
    assert json.loads((reference_run / "function_tokens.json").read_text())["ids"] == ids
    train = windows.load_windows(windows.token_windows("tiny", "train"))
    x = train[torch.from_numpy(P.batch_indices(tiny_cfg.seed, 0, TINY["batch_size"], len(train)))]
    model = AutoModelForCausalLM.from_pretrained(runs.checkpoints(reference_run)[0]["checkpoint"])
    with torch.no_grad():
        logits = model(input_ids=x).logits[:, :-1]
    per = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
    ).view(x.shape[0], -1)
    fn = set(ids)
    bos = 0
    assert bos == model.config.bos_token_id
    row = log.iloc[0]
    assert abs(row["loss"] - per.mean().item()) < 1e-5
    for g, name in enumerate(GROUPS):
        vals = [
            per[b, t].item()
            for b in range(x.shape[0])
            for t in range(x.shape[1] - 1)
            if bos not in (int(x[b, t]), int(x[b, t + 1]))
            and 2 * (int(x[b, t]) not in fn) + (int(x[b, t + 1]) not in fn) == g
        ]
        assert vals, name
        assert abs(row[name] - sum(vals) / len(vals)) < 1e-5, name


def test_token_windows_prefix_documents_with_bos(env, tiny_cfg):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(functok.world.embedded.tokenizer_dir(tiny_cfg)))
    w = windows.load_windows(windows.token_windows("tiny", "heldout"))
    docs = functok.world.embedded.documents("tiny", "heldout")
    assert w.shape[1] == TINY["context_size"] and w.shape[0] >= 2
    assert int(w[0, 0]) == tok.bos_token_id
    first = tok(docs[0]["text"], add_special_tokens=False)["input_ids"]
    assert w[0, 1 : 1 + min(len(first), 31)].tolist() == first[:31]
    starts = np.cumsum([0] + [1 + len(tok(t, add_special_tokens=False)["input_ids"]) for t in docs["text"]])
    kept = w.numel()
    assert kept <= starts[-1] < kept + TINY["context_size"]  # only the last partial window is dropped
    flat = w.reshape(-1)
    assert (flat == tok.bos_token_id).nonzero().view(-1).tolist() == [int(s) for s in starts[:-1] if s < kept]


def test_changed_parameter_changes_cache_folder(tiny_cfg):
    base = P.cache_path("models", P.run_params(tiny_cfg, 1))
    changed = {
        "corpus": "/tmp",
        "max_documents": 41,
        "heldout_fraction": 0.21,
        "vocab_size": 301,
        "coverage_threshold": 0.41,
        "d_model": 32,
        "n_heads": 4,
        "d_mlp": 33,
        "context_size": 33,
        "batch_size": 5,
        "train_tokens": 4000,
        "lr": 2e-2,
        "min_lr": 2e-3,
        "warmup_fraction": 0.2,
        "weight_decay": 0.2,
        "n_checkpoints": 7,
        "seed": 5,
    }
    not_shaping = {"preset", "out_dir", "depths"}
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    assert set(changed) | not_shaping == fields, "a new PretrainConfig field: decide whether it shapes the run"
    for name, value in changed.items():
        other = P.cache_path("models", P.run_params(dataclasses.replace(tiny_cfg, **{name: value}), 1))
        assert other != base, name
    assert P.cache_path("models", P.run_params(tiny_cfg, 2)) != base  # the depth
    assert P.cache_path("models", P.run_params(dataclasses.replace(tiny_cfg, out_dir="x"), 1)) == base
    # the token windows are keyed by the data and the context only
    w = P.cache_path("windows", windows.windows_params(tiny_cfg, "train"))
    assert P.cache_path("windows", windows.windows_params(dataclasses.replace(tiny_cfg, d_model=32), "train")) == w
    assert P.cache_path("windows", windows.windows_params(dataclasses.replace(tiny_cfg, context_size=33), "train")) != w


def test_models_trains_both_depths(env, tiny_cfg):
    run_dirs = P.models("tiny")
    assert set(run_dirs) == {"llama-1L", "llama-2L"}
    assert run_dirs["llama-1L"] == P.cache_path("models", P.run_params(tiny_cfg, 1))
    conf = json.loads((Path(runs.checkpoints(run_dirs["llama-2L"])[-1]["checkpoint"]) / "config.json").read_text())
    assert conf["num_hidden_layers"] == 2 and conf["hidden_size"] == 16


def test_bad_head_count_is_refused(tiny_cfg):
    with pytest.raises(functok.core.config.ParamError, match="n_heads"):
        P.train_models(dataclasses.replace(tiny_cfg, n_heads=3))


def test_benchmark_evaluation_helpers(env, tiny_cfg):
    """benchmarks/checkpoint_eval.py (what benchmarks/embedded_models.py prints) on the tiny models."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("checkpoint_eval", ROOT / "benchmarks" / "checkpoint_eval.py")
    E = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(E)

    run_dirs = P.models("tiny")
    ck = runs.checkpoints(run_dirs["llama-2L"])
    rows = E.greedy_predictions(ck[-1]["checkpoint"], "The war of the nation")
    assert [r["token"] for r in rows] and "".join(r["token"] for r in rows) == "The war of the nation"
    assert rows[-1]["next"] is None and all(isinstance(r["prediction"], str) for r in rows)
    uni = E.unigram_loss("tiny")
    assert 2.0 < uni < math.log(TINY["vocab_size"])
    held = windows.token_windows("tiny", "heldout")
    final = E.heldout_losses(ck[-1]["checkpoint"], held)["loss"]
    init = E.heldout_losses(ck[0]["checkpoint"], held)["loss"]
    assert abs(init - math.log(TINY["vocab_size"])) < 0.3  # an untrained model is near uniform
    assert final < init


def test_prediction_groups_leave_out_special_pairs():
    from functok.world.function_tokens import function_mask

    is_fn = function_mask(6, [2, 3])
    is_special = function_mask(6, [0])
    x = torch.tensor([[0, 2, 4, 3, 3, 5, 0, 4]])
    # (BOS,f) f->c c->f f->f f->c (c,BOS) (BOS,c); GROUPS order: ff, fc, cf, cc; 4: left out
    assert prediction_groups(x, is_fn, is_special).tolist() == [[4, 1, 2, 0, 1, 4, 4]]
    assert GROUPS == ("function->function", "function->content", "content->function", "content->content")


KILL_SCRIPT = r"""
import dataclasses, json, os, signal, sys
from pathlib import Path
os.environ["FUNCTOK_PRESETS"], os.environ["FUNCTOK_CACHE"] = sys.argv[1], sys.argv[2]
from functok.world.config import PretrainConfig
from functok.world import pretrain as P
from functok.world import runs
real = P._save_checkpoint
n = []
def save_then_die(model, tok, folder):
    real(model, tok, folder)
    n.append(folder)
    if len(n) == int(sys.argv[4]):  # the folder is in place; checkpoints.json and resume.pt are not updated
        os.kill(os.getpid(), signal.SIGKILL)
P._save_checkpoint = save_then_die
P.train_run(PretrainConfig(**json.loads(sys.argv[3])), 1, progress=False)
"""


def test_sigkilled_run_resumes_bit_identical(env, tiny_cfg, reference_run, monkeypatch, tmp_path):
    import os
    import subprocess
    import sys

    cache = tmp_path / "sigkill"
    cfg_json = json.dumps(dataclasses.asdict(tiny_cfg))
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(env / "presets"), str(cache), cfg_json, "5"],
        env={**os.environ, "FUNCTOK_THREADS": "1"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    use_cache(cache, monkeypatch)
    run = P.cache_path("models", P.run_params(tiny_cfg, 1))
    schedule = P.checkpoint_schedule(30, 6)
    assert (run / "checkpoints" / f"step_{schedule[4]:06d}").is_dir()  # written just before the kill ...
    assert [c["step"] for c in runs.checkpoints(run)] == schedule[:4]  # ... but not recorded as complete
    assert not (run / "params.json").exists()
    P.train_run(tiny_cfg, 1, progress=False)
    assert json.loads((run / "summary.json").read_text())["resumed_from_step"] == schedule[3]
    assert_same_run(reference_run, run)


def test_compiled_training_resumes_bit_identical(env, tiny_cfg, monkeypatch, tmp_path):
    """torch.compile'd training (what long runs use) is as deterministic as eager training."""
    monkeypatch.setenv("FUNCTOK_COMPILE", "1")
    use_cache(tmp_path / "whole", monkeypatch)
    whole = P.train_run(tiny_cfg, 1, progress=False)
    summary = json.loads((whole / "summary.json").read_text())
    if not summary["compiled"]:
        pytest.skip("torch.compile is not available here (training fell back to eager)")
    use_cache(tmp_path / "killed", monkeypatch)
    with pytest.raises(P._Stop):
        P.train_run(tiny_cfg, 1, stop_after=20, progress=False)
    resumed = P.train_run(tiny_cfg, 1, progress=False)
    assert json.loads((resumed / "summary.json").read_text())["resumed_from_step"] == 13
    assert json.loads((resumed / "summary.json").read_text())["compiled"]
    assert_same_run(whole, resumed)


def test_residual_projections_get_scaled_init(tiny_cfg):
    """Weights writing into the residual stream start at std 0.02 / sqrt(2 x depth), the rest at 0.02."""
    cfg = dataclasses.replace(tiny_cfg, d_model=128, n_heads=4, d_mlp=352)

    class Tok:  # build_model needs only the vocabulary size and the special ids
        bos_token_id, eos_token_id, pad_token_id = 0, 1, 1

        def __len__(self):
            return 512

    model = P.build_model(cfg, 8, Tok())
    layer = model.model.layers[3]
    assert abs(layer.self_attn.o_proj.weight.std().item() - 0.02 / 4) < 0.0005
    assert abs(layer.mlp.down_proj.weight.std().item() - 0.02 / 4) < 0.0005
    assert abs(layer.self_attn.q_proj.weight.std().item() - 0.02) < 0.001
    assert abs(layer.mlp.up_proj.weight.std().item() - 0.02) < 0.001
