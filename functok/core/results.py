"""Results files: `<chapter>.json` = params + results + claims + preconditions + provenance, written atomically.

Provenance records the git commit, the hashes of what produced the file (functok.core.freshness: the
notebook, every functok module it imported, the data files it read), package versions, seed, timing, the
exact data (corpus, tokenizer, documents, the token windows evaluated) and every artifact (checkpoints,
SAEs, function-token file) so that another program can recompute any number.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from functok.core.cache import relpath, write_json_atomic
from functok.core.config import ROOT, ChapterConfig, overrides_of
from functok.core.freshness import inputs

VERDICTS = ("holds", "fails", "inconclusive")
FRAGILE = "fragile"  # a claim scored on several SAE seeds whose verdicts disagree (over_seeds)
SCORED = (*VERDICTS, FRAGILE)  # what a results file's claims may say
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "datasets",
    "transformer-lens",
    "sae-lens",
    "numpy",
    "scipy",
    "seaborn",
    "papermill",
    "jupyter-book",
    "ray",
    "functok",
)


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class ChapterResult:
    """What every chapter's `analyze` returns. The first four fields go into the results file; `detail`
        holds what the chapter's figures and tables read beyond them (per model, per layer, ...); `preconditions`
    the checks the claims rest on (`precondition`), shown on the page and never counted on the scorecard."""

    results: dict
    claims: list[dict]
    data: dict
    artifacts: dict
    detail: dict = field(default_factory=dict)
    preconditions: list[dict] = field(default_factory=list)


def claim(id: str, statement: str, paper: Any, ours: Any, verdict: str, note: str = "") -> dict:
    """One row of the scorecard. `paper` and `ours` are numbers or short strings. A measured value that
    is undefined (None, nan, inf, also inside a list or formatted into a string) makes the claim
    inconclusive whatever `verdict` says, and the note says why."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict: got {verdict!r}; expected one of {', '.join(VERDICTS)}")
    bad = undefined(ours)
    if bad:
        verdict = "inconclusive"
        note = f"{note}; " if note else ""
        note += f"inconclusive: the measured value is undefined ({bad})"
    return {
        "id": id,
        "statement": statement,
        "paper": _clean(paper),
        "ours": _clean(ours),
        "verdict": verdict,
        "note": note,
    }


def over_seeds(by_seed: dict[int, list[dict]]) -> list[dict]:
    """Claims scored once per SAE seed ({seed: claims}, in seed order) as one list: each claim as the first seed
    scored it, with `per_seed` ({seed: verdict}); its verdict is the seeds' common verdict, or 'fragile' when
    they disagree (a result: which verdict one SAE gives depends on its seed). A claim missing from a seed's
    list counts as inconclusive there."""
    seeds = list(by_seed)
    scored = {s: {c["id"]: c for c in by_seed[s]} for s in seeds}
    missing = {"verdict": "inconclusive", "ours": None}
    out = []
    for c in by_seed[seeds[0]]:
        per = {s: scored[s].get(c["id"], missing) for s in seeds}
        out.append(with_seeds(c, {s: (x["verdict"], x["ours"]) for s, x in per.items()}))
    return out


def with_seeds(c: dict, per_seed: dict[int, tuple[str, Any]]) -> dict:
    """One claim with its verdict per SAE seed ({seed: (verdict, what that seed measured)}): `per_seed`
    ({seed: verdict}) added, the verdict the seeds' common one or 'fragile' when they disagree, and the note
    saying each seed's verdict (with two seeds or more)."""
    per = {str(s): v for s, (v, _) in per_seed.items()}
    common = set(per.values())
    verdict = common.pop() if len(common) == 1 else FRAGILE
    note = c["note"]
    if len(per) > 1:
        words = ", ".join(f"seed {s}: {v} ({ours})" for s, (v, ours) in per_seed.items())
        note += f"; scored per SAE seed ({words})" + (
            ": fragile, the seeds disagree" if verdict == FRAGILE else ": the seeds agree"
        )
    return {**c, "verdict": verdict, "note": note, "per_seed": per}


def precondition(id: str, statement: str, value: Any, met: bool, rule: str) -> dict:
    """One row of a page's preconditions table: a check a claim rests on (a quality bar, a search that
    found what it looked for, enough data), not a result. It is shown and never scored; a claim whose
    precondition is not met is inconclusive and its note names the precondition."""
    return {"id": id, "statement": statement, "value": _clean(value), "met": bool(met), "rule": rule}


UNDEFINED_WORD = re.compile(r"(?<![A-Za-z])(nan|inf)(?![A-Za-z])")  # how Python formats nan and inf


def undefined(x: Any) -> str:
    """What makes a measured value undefined ('' if nothing): None, a non-finite number, or the words nan
    or inf in a string (a statistic formatted before it reached `claim`)."""
    if hasattr(x, "item") and not isinstance(x, (list, dict, str)):
        x = x.item()
    if x is None:
        return "None"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, str):
        m = UNDEFINED_WORD.search(x)
        return m.group(1) if m else ""
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        return next((b for b in map(undefined, x) if b), "")
    return ""


def _clean(x: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to None."""
    if hasattr(x, "item") and not isinstance(x, (list, dict, str)):
        x = x.item()
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, Path):
        return relpath(x)
    return x


def reproduce_command(cfg: ChapterConfig) -> str:
    """The `functok run` command that re-creates this run: preset plus every parameter that differs."""
    parts = ["functok", "run", cfg.chapter, "--preset", cfg.preset]
    for name, value in overrides_of(cfg, skip=("preset", "out_dir")).items():
        parts += ["-p", name, json.dumps(value) if not isinstance(value, str) else value]
    return " ".join(shlex.quote(p) for p in parts)


STAGING_ENV = "FUNCTOK_STAGING_DIR"  # set by functok.book.run.run_chapter for the kernel it starts


def results_dir(cfg: ChapterConfig) -> Path:
    """Where `Run.write` puts the results file: cfg.out_dir, or the private staging folder of the
    `functok run` executing this notebook (moved into cfg.out_dir with the notebook once it succeeded)."""
    staging = os.environ.get(STAGING_ENV)
    path = Path(staging or cfg.out_dir)
    return path if path.is_absolute() else ROOT / path


class Run:
    """Timing and seeding of one chapter run; `write()` produces the results file."""

    def __init__(self, cfg: ChapterConfig):
        self.cfg = cfg
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.time()
        seed_everything(cfg.seed)

    def write(self, result: ChapterResult) -> Path:
        results, claims, data, artifacts = result.results, result.claims, result.data, result.artifacts
        doc = {
            "chapter": self.cfg.chapter,
            "params": dataclasses.asdict(self.cfg),
            "results": _clean(results),
            "claims": _clean(claims),
            "preconditions": _clean(result.preconditions),
            "provenance": {
                "git_commit": git_commit(),  # a record: freshness follows `inputs`, not the commit
                "inputs": inputs(),
                "versions": versions(),
                "seed": self.cfg.seed,
                "started": self.started,
                "seconds": round(time.time() - self._t0, 2),
                "command": reproduce_command(self.cfg),
                "runtime": runtime(),
                "data": _clean(data),
                "artifacts": _clean(artifacts),
            },
        }
        for c in claims:
            if c.get("verdict") not in SCORED:
                raise ValueError(f"claim {c.get('id')}: verdict must be one of {SCORED}")
        path = results_dir(self.cfg) / f"{self.cfg.chapter}.json"
        write_json_atomic(path, doc)
        return path


def runtime() -> dict:
    """Where the run ran: the host, its thread cap and the GPUs it saw (a sweep sets both per run)."""
    return {
        "host": platform.node(),
        "threads": os.environ.get("FUNCTOK_THREADS"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def load_results(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
