"""Reading run folders: a complete run is whole (every listed checkpoint, the final one, a training
log up to the final step) or one line saying what is missing; a run still training may end in a cut
line. The run folders are built by hand: no training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from functok.core.cache import CacheError, relpath
from functok.core.config import ParamError
from functok.world import runs

STEPS, B, T = 5, 4, 8  # 5 optimizer steps of 4 windows of 8 tokens
SCHEDULE = [0, 2, 5]


def fake_run(folder: Path, complete: bool = True) -> Path:
    rows = []
    for step in SCHEDULE:
        ck = folder / "checkpoints" / runs.checkpoint_name(step)
        ck.mkdir(parents=True)
        (ck / "config.json").write_text("{}")
        rows.append({"step": step, "tokens_seen": step * B * T, "checkpoint": str(ck)})
    (folder / "checkpoints.json").write_text(json.dumps(rows))
    log = [{"step": s, "tokens_seen": s * B * T, "lr": 0.01, "loss": 5.0 - s / 10} for s in range(1, STEPS + 1)]
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    if complete:
        params = {"depth": 1, "train_tokens": STEPS * B * T, "batch_size": B, "context_size": T}
        (folder / "params.json").write_text(json.dumps(params))
    return folder


def test_a_whole_run_reads_as_before(tmp_path):
    run = fake_run(tmp_path / "run")
    assert [c["step"] for c in runs.checkpoints(run)] == SCHEDULE
    assert runs.checkpoints(run)[-1]["checkpoint"] == str(run / "checkpoints" / "step_000005")
    assert list(runs.train_log(run)["step"]) == [1, 2, 3, 4, 5]
    assert runs.final_step(run) == STEPS


def test_a_deleted_final_checkpoint_is_one_line(tmp_path):
    run = fake_run(tmp_path / "run")
    shutil.rmtree(run / "checkpoints" / "step_000005")
    with pytest.raises(ParamError) as e:
        runs.checkpoints(run)
    assert isinstance(e.value, CacheError) and "\n" not in str(e.value)
    assert str(e.value) == (
        f"run {relpath(run)}: checkpoint checkpoints/step_000005 (listed in checkpoints.json) is missing; "
        "delete the run folder to retrain"
    )
    # a middle one too, and in a run still training
    other = fake_run(tmp_path / "training", complete=False)
    shutil.rmtree(other / "checkpoints" / "step_000002")
    with pytest.raises(CacheError, match=r"checkpoints/step_000002 \(listed in checkpoints.json\) is missing"):
        runs.checkpoints(other)


def test_a_complete_run_must_list_its_final_checkpoint(tmp_path):
    run = fake_run(tmp_path / "run")
    rows = json.loads((run / "checkpoints.json").read_text())
    (run / "checkpoints.json").write_text(json.dumps(rows[:-1]))
    with pytest.raises(CacheError, match=r"^run .*: the run is marked complete but its final checkpoint step_000005 "):
        runs.checkpoints(run)
    (run / "params.json").unlink()  # still training: the checkpoints so far
    assert [c["step"] for c in runs.checkpoints(run)] == [0, 2]


def test_a_complete_runs_log_cut_mid_line_is_one_line(tmp_path):
    run = fake_run(tmp_path / "run")
    text = (run / "train_log.jsonl").read_text()
    (run / "train_log.jsonl").write_text(text[: text.rindex("{") + 12])  # the last line cut by a kill
    with pytest.raises(CacheError) as e:
        runs.train_log(run)
    assert "\n" not in str(e.value)
    assert str(e.value) == (
        f"run {relpath(run)}: train_log.jsonl is cut after 4 whole lines (step 4); delete the run folder to retrain"
    )
    # whole lines that stop short of the final step
    (run / "train_log.jsonl").write_text("".join(text.splitlines(keepends=True)[:3]))
    with pytest.raises(CacheError, match=r"train_log.jsonl ends at step 3 of 5 \(3 lines\)"):
        runs.read_log(run / "train_log.jsonl")
    # a run still training (no params.json) stops at the cut line, as resuming needs
    (run / "params.json").unlink()
    (run / "train_log.jsonl").write_text(text[: text.rindex("{") + 12])
    assert [r["step"] for r in runs.read_log(run / "train_log.jsonl")] == [1, 2, 3, 4]
