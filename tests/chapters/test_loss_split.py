"""The loss-split chapter on tiny models: grouped held-out losses through TransformerLens against a
plain Hugging Face recomputation, bootstrap and convergence rules, the hub checkpoint path (a tiny
random GPT-NeoX standing in for Pythia, 'downloaded' by copying a local folder), offline refusal."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import PRETRAIN, tiny_neox, tiny_preset

import functok.chapters.registry
import functok.core.cache
import functok.core.config
import functok.sae.models
import functok.world.embedded
from functok.chapters.loss_split import analysis as L
from functok.chapters.loss_split import evaluation, stats
from functok.chapters.loss_split.config import LossSplitConfig
from functok.core.config import ParamError
from functok.world import pretrain as P
from functok.world import runs, windows
from functok.world.loss_groups import GROUPS

TINY = PRETRAIN


@pytest.fixture(scope="module")
def env():
    """A temporary cache and a 'tiny' preset with both tiny models trained."""
    with tiny_preset() as d:
        yield {"dir": d, "runs": P.models("tiny")}


def tiny_cfg(**kw) -> LossSplitConfig:
    """A config without validation (hub names must pass here even offline)."""
    base = functok.core.config.defaults(LossSplitConfig) | {
        "preset": "tiny",
        "n_bootstrap": 200,
        "log_smoothing": 3,
        "next_tokens": [" the", ",", " xqzv"],
    }
    return LossSplitConfig(**(base | kw))


def hf_per_token(checkpoint, x):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint))
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=x).logits[:, :-1]
    per = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
    ).view(x.shape[0], -1)
    return per.double(), logits.argmax(-1)


@pytest.fixture(scope="module")
def analysis(env):
    return L.analyze(tiny_cfg(), progress=False)


def test_grouped_losses_equal_a_plain_hf_recomputation(env, analysis):
    """Every group mean, count and next-token mean equals a loop over HF per-token losses."""
    name = "llama-2L"
    run = env["runs"][name]
    ids = json.loads((run / "function_tokens.json").read_text())["ids"]
    fn = set(ids)
    x = windows.load_windows(windows.token_windows("tiny", "heldout"))
    from transformers import AutoTokenizer

    ck = runs.checkpoints(run)[-1]["checkpoint"]
    tok = AutoTokenizer.from_pretrained(ck)
    bos = tok.bos_token_id
    per, pred = hf_per_token(ck, x)
    vals = {g: [] for g in (*GROUPS, "all")}
    the = tok.encode(" the", add_special_tokens=False)[0]
    the_vals = []
    for b in range(x.shape[0]):
        for t in range(x.shape[1] - 1):
            cur, nxt = int(x[b, t]), int(x[b, t + 1])
            v = per[b, t].item()
            vals["all"].append(v)
            if nxt == the:
                the_vals.append(v)
            if bos in (cur, nxt):
                continue
            vals[GROUPS[2 * (cur not in fn) + (nxt not in fn)]].append(v)
    got = analysis.results["models"][name]["checkpoints"][-1]
    assert got["checkpoint"] == functok.core.cache.relpath(ck)
    for g, v in vals.items():
        assert got["counts"][g] == len(v) and len(v) > 0, g
        assert abs(got["groups"][g] - sum(v) / len(v)) < 1e-4, g
        lo, hi = got["ci"][g]
        assert lo <= got["groups"][g] <= hi
    assert sum(got["counts"][g] for g in GROUPS) < got["counts"]["all"]  # BOS pairs are in "all" only
    assert got["next_counts"][" the"] == len(the_vals) and abs(got["next_tokens"][" the"] - np.mean(the_vals)) < 1e-4
    assert " xqzv" not in got["next_tokens"]  # not a single token: left out, not crashed
    share = np.isin(pred.numpy(), list(fn)).mean()
    assert abs(got["greedy_function_share"] - share) < 1e-9
    assert abs(got["greedy_accuracy"] - (pred == x[:, 1:]).double().mean().item()) < 1e-9
    assert analysis.results["function_token_ids"][name] == ids


def test_another_threshold_regroups_the_cached_forward_pass(env, analysis):
    """At coverage_threshold 0.3 the chapter runs no model (every forward pass is read back) and the groups are
    those of the 0.3 set: each mean equals HF's per-token losses grouped by that set; the training log, grouped
    by the run's own 0.4 set during training, is not used and its claim says why."""
    a = L.analyze(tiny_cfg(coverage_threshold=0.3), progress=False)
    assert a.detail["timings"]["cached"].all()
    name = "llama-2L"
    fn = set(a.results["function_token_ids"][name])
    assert fn != set(analysis.results["function_token_ids"][name])
    x = windows.load_windows(windows.token_windows("tiny", "heldout"))
    ck = runs.checkpoints(env["runs"][name])[-1]["checkpoint"]
    per, _ = hf_per_token(ck, x)
    bos = int(x[0, 0])
    vals = {g: [] for g in GROUPS}
    for b in range(x.shape[0]):
        for t in range(x.shape[1] - 1):
            cur, nxt = int(x[b, t]), int(x[b, t + 1])
            if bos not in (cur, nxt):
                vals[GROUPS[2 * (cur not in fn) + (nxt not in fn)]].append(per[b, t].item())
    got = a.results["models"][name]["checkpoints"][-1]
    for g, v in vals.items():
        assert got["counts"][g] == len(v) and abs(got["groups"][g] - sum(v) / len(v)) < 1e-4, g
    m = a.results["models"][name]
    assert m["coverage_threshold"] == 0.3 and m["training_log"].startswith("not used")
    assert analysis.results["models"][name]["training_log"] == "used"
    c = next(c for c in a.claims if c["id"] == f"function_next_groups_converge_first[{name}]")
    assert c["verdict"] == "inconclusive" and "cannot be regrouped" in c["note"]


def test_results_layout_and_cache(env, analysis):
    res = analysis.results
    assert set(res["models"]) == {"llama-1L", "llama-2L"}
    for name, m in res["models"].items():
        steps = [c["step"] for c in m["checkpoints"]]
        assert steps == [c["step"] for c in runs.checkpoints(env["runs"][name])]
        for c in m["checkpoints"]:
            assert set(c["groups"]) == set(c["counts"]) == {*GROUPS, "all"}
            assert c["tokens_seen"] == c["step"] * TINY["batch_size"] * TINY["context_size"]
        init = m["checkpoints"][0]["groups"]["all"]
        assert abs(init - math.log(TINY["vocab_size"])) < 0.3  # an untrained model is near uniform
        assert m["checkpoints"][-1]["groups"]["all"] < init - 0.5
    assert {r["group"] for r in res["scaling"]} == {*GROUPS, "all"}
    assert res["scaling_models"] == {
        "shallow": "llama-1L",
        "deep": "llama-2L",
        "shallow_layers": 1,
        "deep_layers": 2,
        "paired": True,
    }
    ids = {c["id"].split("[")[0] for c in analysis.claims}
    assert {"function_content_highest", "function_tokens_converge_first", "deeper_gain_on_content_next"} <= ids
    assert all(c["verdict"] in ("holds", "fails", "inconclusive") for c in analysis.claims)
    assert (functok.core.config.ROOT / analysis.data["tokens"]).exists() or Path(analysis.data["tokens"]).exists()
    assert analysis.artifacts["checkpoints[llama-1L]"] == [
        c["checkpoint"] for c in res["models"]["llama-1L"]["checkpoints"]
    ]
    # a second run reads every evaluation back from the cache, with the same numbers
    again = L.analyze(tiny_cfg(), progress=False)
    assert again.detail["timings"]["cached"].all()
    assert again.results["models"] == res["models"]
    # a changed next-token list is a different evaluation
    other = L.analyze(tiny_cfg(next_tokens=[" of"]), progress=False)
    assert not other.detail["timings"]["cached"].any()


def test_bridge_loss_equals_hf_loss_on_tiny_gpt_neox(tmp_path):
    """The TransformerLens path (functok.sae.models.load_model) on a GPT-NeoX (Pythia's architecture)
    checkpoint folder with GPT-2's tokenizer: per-token losses equal HF's."""
    from functok.sae.models import load_model

    folder = tiny_neox(tmp_path / "neox")
    x = torch.randint(0, 50257, (2, 12))
    per, _ = hf_per_token(folder, x)
    bridge = load_model(folder)
    out = evaluation.evaluate_model(bridge, x, function_ids=[11, 13, 262], special_ids=[50256], next_ids=[262])
    assert abs(out["sums"][:, 4].sum() / out["counts"][:, 4].sum() - per.mean().item()) < 1e-4
    tl = bridge(x, return_type="loss", loss_per_token=True)
    assert (tl.double() - per).abs().max().item() < 1e-4


def test_sums_are_per_document_where_documents_cross_windows(tmp_path):
    """With a document index, every array is summed per document: the "all" sums equal HF's per-token
    losses summed by document, the group counts add up to the per-window evaluation's, and a document
    that runs over two windows gets the predictions of both."""
    from functok.sae.models import load_model

    folder = tiny_neox(tmp_path / "neox")
    x = torch.randint(0, 50000, (3, 10))
    x[0, 0], x[1, 6] = 50256, 50256  # BOS: document 0 runs from window 0 into window 1, document 1 to the end
    per, _ = hf_per_token(folder, x)
    bridge = load_model(folder)
    units = windows.document_index(x.numpy(), 50256)
    assert units.max() == 1 and (units[1, :6] == 0).all() and (units[1, 6:] == 1).all()
    kw = dict(function_ids=[11, 13, 262], special_ids=[50256], next_ids=[262, 11])
    by_doc = evaluation.evaluate_model(bridge, x, units=units, **kw)
    by_win = evaluation.evaluate_model(bridge, x, **kw)
    assert by_doc["sums"].shape == (2, 5) and by_win["sums"].shape == (3, 5)
    want = np.bincount(units.reshape(-1), per.double().numpy().reshape(-1))
    assert np.allclose(by_doc["sums"][:, 4], want, atol=1e-4)
    assert by_doc["counts"][:, 4].tolist() == [9 + 6, 3 + 9]
    for k in ("counts", "next_counts", "n_pred", "correct", "pred_function"):
        assert np.array_equal(by_doc[k].sum(0), by_win[k].sum(0)), k
    assert np.allclose(by_doc["sums"].sum(0), by_win["sums"].sum(0))
    with pytest.raises(ValueError, match="^units: got shape"):
        evaluation.evaluate_model(bridge, x, units=units[:, 1:], **kw)


def test_hub_checkpoints_download_evaluate_delete(env, tmp_path, monkeypatch):
    """A hub model by Pythia steps: each revision 'downloaded' (here: copied from a tiny local GPT-NeoX),
    evaluated through the local-folder path, deleted afterwards unless keep_checkpoints."""
    src = {0: tiny_neox(tmp_path / "s0", seed=0), 4: tiny_neox(tmp_path / "s4", seed=1)}
    calls = []

    def fake_download(name, revision, dest, what):
        calls.append((name, revision, what))
        shutil.copytree(src[int(revision.removeprefix("step"))], dest)
        return dest

    monkeypatch.setattr(functok.sae.models, "DOWNLOAD", fake_download)
    cfg = tiny_cfg(
        models=["EleutherAI/pythia-tiny-test"],
        checkpoint_steps=[4],
        checkpoint_index=[0],
        context_size=16,
        max_windows=6,
    )
    a = L.analyze(cfg, progress=False)
    m = a.results["models"]["pythia-tiny-test"]
    assert [c["step"] for c in m["checkpoints"]] == [0, 4]
    assert [c["checkpoint"] for c in m["checkpoints"]] == [
        "EleutherAI/pythia-tiny-test@step0",
        "EleutherAI/pythia-tiny-test@step4",
    ]
    assert m["checkpoints"][1]["tokens_seen"] == 4 * 1024 * 2048
    assert ("EleutherAI/pythia-tiny-test", "step0", "model") in calls and (
        "EleutherAI/pythia-tiny-test",
        "step4",
        "model",
    ) in calls
    hub = functok.core.cache.cache_dir() / "hub"
    assert not list(hub.glob("*")) if hub.exists() else True  # deleted after use
    assert m["n_windows"] == 6 and m["context_size"] == 16
    # the two revisions differ, so their losses do
    assert m["checkpoints"][0]["groups"]["all"] != m["checkpoints"][1]["groups"]["all"]
    # function tokens come from the GPT-2 tokenizer's counts on the tiny preset's training documents
    ft = (
        json.loads((functok.core.config.ROOT / m["function_token_file"]).read_text())
        if not Path(m["function_token_file"]).is_absolute()
        else json.loads(Path(m["function_token_file"]).read_text())
    )
    assert (
        ft["vocab_size"] == 50257
        and [r["id"] for r in ft["function_tokens"]] == a.results["function_token_ids"]["pythia-tiny-test"]
    )
    # keep_checkpoints keeps them (new evaluations: another window count)
    kept = L.analyze(dataclasses.replace(cfg, keep_checkpoints=True, max_windows=5), progress=False)
    assert sorted(p.name for p in hub.iterdir()) == [
        "EleutherAI--pythia-tiny-test@step0",
        "EleutherAI--pythia-tiny-test@step4",
    ]
    assert kept.results["models"]["pythia-tiny-test"]["n_windows"] == 5


def test_hub_models_refused_offline_in_one_line(monkeypatch):
    monkeypatch.delenv("FUNCTOK_ONLINE", raising=False)
    monkeypatch.delenv("FUNCTOK_PRESETS", raising=False)  # the env fixture may have swapped it
    with pytest.raises(ParamError) as e:
        functok.chapters.registry.resolve("loss_split", "pythia")
    msg = str(e.value)
    assert msg.startswith("models: 'EleutherAI/pythia-160m-deduped'") and "offline" in msg and "\n" not in msg
    from functok.book.cli import main

    assert main(["run", "loss_split", "--preset", "pythia"]) == 2
    for bad, frag in [
        ({"models": []}, "at least one value"),
        ({"models": ["./nope"]}, "does not exist"),
        ({"checkpoint_steps": [-1]}, "non-negative"),
        ({"device": "tpu"}, "expected one of"),
    ]:
        with pytest.raises(ParamError, match=f"^{next(iter(bad))}:.*{frag}"):
            functok.core.config.validate(LossSplitConfig, bad)


def test_convergence_rule():
    steps = [0, 1, 2, 4, 8, 16]
    # drop 10 -> 0; within 10% of the drop (<= 1.0) from step 8 on, after a bump at 4
    assert stats.convergence_step(steps, [10, 5, 0.9, 1.5, 0.5, 0.0], 0.1) == 8
    assert stats.convergence_step(steps, [10, 0.5, 0.4, 0.3, 0.2, 0.0], 0.1) == 1
    assert stats.convergence_step(steps, [1, 1, 1, 1, 1, 1], 0.1) is None  # no decrease
    assert (
        stats.convergence_step(steps, [10, 9, 8, 7, 6, 5], 0.5) == 4
    )  # 7 - 5 = 2 <= 2.5 at step 4, 8 - 5 = 3 > 2.5 at 2
    assert (
        stats.convergence_step(steps, [10, 9, 8, 7, 6, 5], 0.3) == 8
    )  # 6 - 5 = 1 <= 1.5 at step 8, 7 - 5 = 2 > 1.5 at 4


def test_bootstrap_is_paired_and_covers_the_mean():
    rng = np.random.default_rng(0)
    sums = rng.normal(5.0, 1.0, (400, 2)) * 10
    counts = np.full((400, 2), 10.0)
    idx = L.bootstrap_index(400, 500, seed=3)
    assert (idx == L.bootstrap_index(400, 500, seed=3)).all() and idx.shape == (500, 400)
    bs = L.ratio_means(sums, counts, idx)
    lo, hi = L.interval(bs, 0.95)
    mean = L.ratio_means(sums, counts)
    assert (lo < mean).all() and (mean < hi).all()
    se = sums.std(0) / 10 / math.sqrt(400)  # per-window means have sd 1
    assert np.allclose(hi - lo, 2 * 1.96 * se, rtol=0.2)


def test_unigram_milestone_on_the_tiny_models(env, analysis):
    """The unigram model is scored on the same predictions as the checkpoints; its loss equals a loop over
    the held-out targets with p(v) = (count(v) + 1) / (N + V) from the training stream's counts; the
    milestone flags agree with the losses; every claim's note names its rule, baseline and sample."""
    from functok.chapters.loss_split import plots as lp
    from functok.chapters.loss_split import unigram

    pcfg = functok.world.config.pretrain_config("tiny")
    counts, _ = unigram.stream_counts(pcfg, TINY["vocab_size"])
    N, V = counts.sum(), TINY["vocab_size"]
    x = windows.load_windows(windows.token_windows("tiny", "heldout"))
    losses = [-math.log((counts[int(t)] + 1) / (N + V)) for row in x for t in row[1:]]
    for name, m in analysis.results["models"].items():
        # the bootstrap resamples held-out documents: one per BOS of the stream the windows were cut from
        assert m["n_documents"] == int((x == x[0, 0]).sum()) == analysis.detail["models"][name]["idx"].shape[1]
        u = m["unigram"]
        assert u["counts"] == m["checkpoints"][-1]["counts"], name
        assert abs(m["unigram_loss"] - sum(losses) / len(losses)) < 1e-9
        assert u["counts_from"]["source"] == "training stream" and u["vocab_size"] == V
        for c in m["checkpoints"]:
            assert c["past_milestone"] == (c["groups"]["all"] < m["unigram_loss"])
            assert abs(c["minus_unigram"] - (c["groups"]["all"] - m["unigram_loss"])) < 1e-12
        assert not m["checkpoints"][0]["past_milestone"]  # an untrained model is near uniform
        assert m["milestone"]["n_past"] == sum(c["past_milestone"] for c in m["checkpoints"])
        phase = next(c for c in analysis.claims if c["id"] == f"greedy_function_phase[{name}]")
        highest = next(c for c in analysis.claims if c["id"] == f"function_content_highest[{name}]")
        if m["milestone"]["n_past"] < 3:
            assert phase["verdict"] == highest["verdict"] == "inconclusive"
    for c in analysis.claims:
        assert all(w in c["note"] for w in ("rule", "baseline", "sample")), c["id"]
    fig = lp.group_curves(analysis)
    ys = {round(float(line.get_ydata()[0]), 9) for ax in fig.axes for line in ax.get_lines() if line.get_ls() == ":"}
    assert {round(m["unigram_loss"], 9) for m in analysis.results["models"].values()} <= ys
    assert "unigram model" in lp.checkpoint_table(analysis, "llama-2L").to_html()
    assert "does not help" not in lp.depth_summary(analysis)
