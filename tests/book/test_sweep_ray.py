"""Sweeps on Ray: two real runs of chapter 1 (a four-document corpus, one tokenizer) on a local cluster with
one logical GPU, then a resume that runs nothing; a run's own process, its log, and failures."""

from __future__ import annotations

import json
import os
import time

import pytest
from fresh import write_fresh_results

from functok.book import cli, sweep, sweep_ray


def _logs(p: sweep.Plan) -> str:
    return "\n".join(f"--- {r.key}\n{r.log.read_text()[-3000:]}" for r in p.runs if r.log.exists())


def test_two_runs_on_a_local_ray_cluster_then_a_resume_that_runs_nothing(tmp_path, tmp_cache, text_folder):
    fixed = {"corpus": str(text_folder), "tokenizers": ["gpt2"]}
    p = sweep.plan("function_tokens", "embedded", fixed, {"coverage_threshold": [0.3, 0.5]}, tmp_path / "sweep")
    # one logical GPU on this CPU machine, half of it per run: both runs share "GPU 0", at the same time
    opts = sweep.options(cpus_per_run=1, gpus_per_run=0.5)
    outcomes = sweep_ray.execute(p, opts, resources={"num_gpus": 1}, progress=False)
    assert sorted(outcomes) == sorted(r.key for r in p.runs)
    assert sweep_ray.failures(p, outcomes) == [], _logs(p)
    for r in p.runs:
        doc = json.loads(r.results.read_text())
        assert doc["params"]["coverage_threshold"] == r.values["coverage_threshold"]
        assert doc["params"]["out_dir"].endswith(r.key)
        runtime = doc["provenance"]["runtime"]
        assert runtime["cuda_visible_devices"] == "0", "Ray's GPU reaches the kernel"
        assert runtime["threads"] == "1", "torch threads capped at the run's CPU share"
        assert r.notebook.exists() and "wrote" in r.log.read_text()
        assert not [d for d in (r.folder / ".staging").iterdir() if d.is_dir()], "nothing half-written left"
    index = sweep.read_index(p.out)
    assert [row["status"] for row in index["runs"]] == ["finished", "finished"]
    assert all(row["returncode"] == 0 for row in index["runs"])

    t0 = time.time()
    assert sweep_ray.execute(p, opts, progress=False) == {}, "a re-run skips finished runs"
    assert time.time() - t0 < 3, "and starts no Ray cluster"


def test_a_run_gets_its_own_process_log_threads_and_no_gpu(tmp_path, tmp_cache, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # a GPU machine: a run that asked for none sees none
    [run] = sweep.plan("function_tokens", "smoke", {}, {"seed": [1]}, tmp_path).runs
    task = sweep_ray.spec(run, sweep.options(cpus_per_run=2.5, gpus_per_run=0))
    task["params"]["n_bins"] = 1  # invalid in the run's own process: it exits 2 before any kernel starts
    outcome = sweep_ray.run_one(task)
    assert outcome["returncode"] == 2 and outcome["key"] == run.key
    assert "n_bins: got 1" in run.log.read_text()
    assert task["threads"] == 2
    [line] = sweep_ray.failures(sweep.plan("function_tokens", "smoke", {}, {"seed": [1]}, tmp_path), {run.key: outcome})
    assert line.startswith(f"{run.key}: exit 2; log ") and line.endswith("log.txt")


def test_failed_runs_make_the_exit_status_non_zero_and_are_listed_with_their_logs(tmp_path, monkeypatch, capsys):
    def execute(plan, opts):
        a, b = plan.runs
        write_fresh_results(a.cfg, monkeypatch)
        return {a.key: {"returncode": 0}, b.key: {"returncode": 1}}

    monkeypatch.setattr(sweep_ray, "execute", execute)
    argv = ["sweep", "function_tokens", "--preset", "smoke", "--grid", "seed", "1,2", "--out", str(tmp_path)]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "1 of 2 runs finished" in captured.out
    assert "1 run(s) failed" in captured.err and "seed-2-" in captured.err and "log.txt" in captured.err


def test_a_run_asking_for_more_than_the_cluster_has_is_refused():
    from functok.core.config import ParamError

    with pytest.raises(ParamError, match="gpus_per_run: 1 per run, but the Ray cluster has 0 GPUs"):
        sweep_ray.check_resources({"CPU": 2.0}, sweep.options(gpus_per_run=1))


def test_a_local_cluster_keeps_token_auth_with_a_token_in_the_environment(monkeypatch):
    env = {k: v for k, v in os.environ.items() if k not in sweep_ray.AUTH_VARS}
    monkeypatch.setattr(os, "environ", env)  # a copy: the token of this process's clusters stays as it is
    sweep_ray._local_auth()
    assert env["RAY_AUTH_MODE"] == "token" and len(env["RAY_AUTH_TOKEN"]) == 32, "not a file under ~/.ray"
    token = env["RAY_AUTH_TOKEN"]
    sweep_ray._local_auth()
    assert env["RAY_AUTH_TOKEN"] == token, "every cluster of one process presents the same token"
