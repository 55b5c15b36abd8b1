"""Read-only access to a pre-training run folder (what `functok.world.pretrain` writes): its complete
checkpoints and its per-step training log. Chapters that only read runs import this, not the trainer.
"""

from __future__ import annotations

import json
from pathlib import Path


def model_name(depth: int) -> str:
    return f"llama-{depth}L"


def checkpoints(run_dir: str | Path) -> list[dict]:
    """Complete checkpoints of a run: [{"step", "tokens_seen", "checkpoint"}] (checkpoint: folder path)."""
    run = Path(run_dir)
    rows = json.loads((run / "checkpoints.json").read_text()) if (run / "checkpoints.json").exists() else []
    out = []
    for r in rows:
        folder = run / "checkpoints" / checkpoint_name(r["step"])
        if folder.is_dir():
            out.append({**r, "checkpoint": str(folder)})
    return out


def train_log(run_dir: str | Path):
    """The per-step log as a DataFrame: step, tokens_seen, lr, loss and one column per group."""
    import pandas as pd

    return pd.DataFrame(read_log(Path(run_dir) / "train_log.jsonl"))


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def read_log(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                break
    return rows
