"""Read-only access to a pre-training run folder (what `functok.world.pretrain` writes): its complete
checkpoints and its per-step training log. Chapters that only read runs import this, not the trainer.

A run marked complete (params.json) is whole or an error: every checkpoint listed in checkpoints.json
is there, the last one is the final step's, and train_log.jsonl has one whole line per step up to the
final step. Anything less raises `CacheError`, one line naming the run folder and what is missing. A
run still training (no params.json) may end its log in a line cut by a kill (resume truncates it).
"""

from __future__ import annotations

import json
from pathlib import Path

from functok.core.cache import CacheError, relpath


def model_name(depth: int) -> str:
    return f"llama-{depth}L"


def total_steps(train_tokens: int, batch_size: int, context_size: int) -> int:
    """Optimizer steps of a run: the training tokens in whole batches of windows, at least one."""
    return max(1, train_tokens // (batch_size * context_size))


def final_step(run_dir: str | Path) -> int | None:
    """The last step of a complete run (None for a run still training, or one whose params.json and
    summary.json do not tell)."""
    run = Path(run_dir)
    if not (run / "params.json").exists():
        return None
    p = json.loads((run / "params.json").read_text())
    if all(k in p for k in ("train_tokens", "batch_size", "context_size")):
        return total_steps(p["train_tokens"], p["batch_size"], p["context_size"])
    s = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    return s.get("steps")


def _broken(run: Path, what: str) -> CacheError:
    return CacheError(f"run {relpath(run)}: {what}; delete the run folder to retrain")


def checkpoints(run_dir: str | Path) -> list[dict]:
    """Complete checkpoints of a run: [{"step", "tokens_seen", "checkpoint"}] (checkpoint: folder path).
    A listed checkpoint that is missing, or a complete run without its final checkpoint, raises."""
    run = Path(run_dir)
    rows = json.loads((run / "checkpoints.json").read_text()) if (run / "checkpoints.json").exists() else []
    out = []
    for r in rows:
        folder = run / "checkpoints" / checkpoint_name(r["step"])
        if not folder.is_dir():
            raise _broken(run, f"checkpoint checkpoints/{folder.name} (listed in checkpoints.json) is missing")
        out.append({**r, "checkpoint": str(folder)})
    last = final_step(run)
    if last is not None and (not out or out[-1]["step"] != last):
        final = checkpoint_name(last)
        raise _broken(run, f"the run is marked complete but its final checkpoint {final} is not in checkpoints.json")
    return out


def train_log(run_dir: str | Path):
    """The per-step log as a DataFrame: step, tokens_seen, lr, loss and one column per group."""
    import pandas as pd

    return pd.DataFrame(read_log(Path(run_dir) / "train_log.jsonl"))


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def read_log(path: Path) -> list[dict]:
    """The rows of a run's train_log.jsonl. A run still training: up to a line cut by a kill. A
    complete run: every step up to the final one, or CacheError."""
    path = Path(path)
    last = final_step(path.parent)
    text = path.read_text() if path.exists() else ""
    rows, cut = [], False
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            cut = True
            break
    if last is None:
        return rows
    if not path.exists():
        raise _broken(path.parent, f"the run is marked complete but {path.name} is missing")
    if cut or (text and not text.endswith("\n")):
        raise _broken(path.parent, f"{path.name} is cut after {len(rows)} whole lines (step {_step(rows)})")
    if [r.get("step") for r in rows] != list(range(1, last + 1)):
        raise _broken(path.parent, f"{path.name} ends at step {_step(rows)} of {last} ({len(rows)} lines)")
    return rows


def _step(rows: list[dict]):
    return rows[-1].get("step") if rows else None
