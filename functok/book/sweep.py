"""Sweeps: one chapter over a grid of parameter values, one run per parameter set.

A sweep is planned here, without Ray: every run of the grid is resolved and validated before any
starts (a bad value anywhere is the usual one-line ParamError), and each gets a run key, a readable
name plus a hash of its whole resolved config (`coverage_threshold-0.3-1a2b3c4d`). A run writes its
executed notebook and results file into `<out>/<run key>/` (functok.book.run, atomically) and its log
into `<out>/<run key>/log.txt`; `<out>/index.json` lists every run and its state, rewritten atomically
whenever a run ends. A run is finished when its results are up to date by the rule the chapters follow
(functok.book.run.up_to_date: same parameters, versions and input contents), so a re-run skips it, a run
a killed sweep left behind has no results file and runs again, and so does a run whose code changed.
functok.book.sweep_ray executes a plan.

A preset's `robustness:` section lists the sweeps the book runs for its robustness page.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from functok.book.run import up_to_date
from functok.chapters.registry import chapter as chapter_entry
from functok.chapters.registry import model_runs, resolve, resolve_model_run
from functok.core.cache import relpath, write_json_atomic
from functok.core.config import ROOT, ChapterConfig, ParamError, load_preset, param, validate

INDEX = "index.json"
LOG = "log.txt"
FAILED = "failed"  # <out>/<run key>/failed/: a failed run's executed notebook
NOT_SWEPT = ("preset", "out_dir")  # one sweep is one preset; the sweep sets each run's out_dir


@dataclass
class SweepOptions:
    """How a sweep runs (the `functok sweep` options beyond the chapter's own parameters)."""

    chapter: ClassVar[str] = "sweep"  # for the one-line refusal of an unknown name

    out: str = param("", "sweep folder: <out>/<run key>/ per run and <out>/index.json (default: _build/sweeps/CHAPTER)")
    address: str = param("", "Ray cluster to use: 'auto' or HOST:PORT of a running one; empty: a local cluster here")
    cpus_per_run: float = param(1.0, "CPUs each run asks Ray for; its torch threads are capped at this", lo=0.1)
    gpus_per_run: float = param(
        0.0, "GPUs each run asks Ray for (fractions share one); 0 hides every GPU from the run", lo=0.0, hi=64.0
    )


def options(**values: Any) -> SweepOptions:
    """Validated sweep options (ranges as for chapter parameters; one-line ParamError)."""
    return validate(SweepOptions, values)  # type: ignore[arg-type, return-value]


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its key, its grid values, and its validated config (out_dir <out>/<key>)."""

    key: str
    values: dict  # the grid's values for this run, in grid order
    cfg: ChapterConfig

    @property
    def folder(self) -> Path:
        return Path(self.cfg.out_dir)

    @property
    def results(self) -> Path:
        return self.folder / f"{self.cfg.chapter}.json"

    @property
    def notebook(self) -> Path:
        return self.folder / f"{self.cfg.chapter}.ipynb"

    @property
    def log(self) -> Path:
        return self.folder / LOG

    def finished(self) -> bool:
        """Its results are here and up to date (functok.book.run.up_to_date, the rule the chapters follow):
        a run whose code, data, parameters or versions changed runs again."""
        return up_to_date(self.cfg)


@dataclass(frozen=True)
class Plan:
    """A sweep: chapter, preset, fixed overrides, the grid (name -> values, in order) and every run."""

    chapter: str
    preset: str
    fixed: dict
    grid: dict
    out: Path
    runs: tuple[PlannedRun, ...]
    why: str = ""  # what the sweep asks (the robustness page shows it)
    model_run: str = ""  # the preset's model run whose overrides `fixed` starts from (the page links its page)

    @property
    def index(self) -> Path:
        return self.out / INDEX

    def command(self) -> str:
        """The `functok sweep` command that plans this sweep again."""
        parts = ["functok", "sweep", self.chapter, "--preset", self.preset]
        for name, value in self.fixed.items():
            parts += ["-p", name, _text(value)]
        for name, values in self.grid.items():
            parts += ["--grid", name, json.dumps(values)]
        return " ".join(shlex.quote(p) for p in parts)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def default_out(chapter: str) -> Path:
    return ROOT / "_build" / "sweeps" / chapter


def plan(
    chapter: str,
    preset: str,
    fixed: dict,
    grid: dict[str, list],
    out: str | Path | None = None,
    why: str = "",
    model_run: str = "",
    main: ChapterConfig | None = None,
) -> Plan:
    """Every run of the grid (the product of its values, in grid order), each validated like `functok
    run` before anything starts. ParamError (one line, naming the parameter) on any bad name or value.
    A grid point whose config is `main`'s in everything but out_dir is that run (its folder, its results):
    the book's run at the preset's own value is not run a second time for the robustness page."""
    chapter_entry(chapter)  # a chapter of the book ('pretrain' is no chapter to sweep)
    if not grid:
        raise ParamError("grid: nothing to sweep; expected at least one --grid NAME VALUES")
    for name in NOT_SWEPT:
        if name in grid or name in fixed:
            how = "one sweep runs one preset (--preset)" if name == "preset" else "the sweep sets it (--out)"
            raise ParamError(f"{name}: cannot be set per run of a sweep; {how}")
    for name, values in grid.items():
        if name in fixed:
            raise ParamError(f"{name}: both fixed (-p) and swept (--grid); expected one of the two")
        if not isinstance(values, list) or not values:
            raise ParamError(f"{name}: grid values {values!r}; expected a non-empty list like [0.3, 0.4]")
    out = Path(out).expanduser().resolve() if out else default_out(chapter)
    if out.is_file():
        raise ParamError(f"out: '{out}' is a file; expected a folder")
    runs, seen = [], {}
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        cfg = resolve(chapter, preset, {**fixed, **values})
        key = run_key(values, cfg)
        if key in seen:
            raise ParamError(f"grid: {values} and {seen[key]} are the same parameter set; expected distinct values")
        seen[key] = values
        own = main if main is not None and same_run(cfg, main) else dataclasses.replace(cfg, out_dir=str(out / key))
        runs.append(PlannedRun(key, values, own))
    return Plan(chapter, preset, dict(fixed), {k: list(v) for k, v in grid.items()}, out, tuple(runs), why, model_run)


def same_run(a: ChapterConfig, b: ChapterConfig) -> bool:
    """The two configs write the same results (every field but out_dir equal; results are seeded)."""
    return a.chapter == b.chapter and _without_out_dir(a) == _without_out_dir(b)


def _without_out_dir(cfg: ChapterConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "out_dir"}


def run_key(values: dict, cfg: ChapterConfig) -> str:
    """A folder name: the grid values, readable, then a hash of the whole resolved config (but out_dir),
    so that another preset or fixed parameter never reuses a run folder."""
    whole = _without_out_dir(cfg) | {"chapter": cfg.chapter}
    digest = hashlib.sha1(json.dumps(whole, sort_keys=True, default=str).encode()).hexdigest()[:8]
    readable = "__".join(f"{name}-{_slug(v)}" for name, v in values.items())
    return f"{readable[:80]}-{digest}"


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9.]+", "+", text).strip("+") or "x"


# ---------------------------------------------------------------------------------------------
# The index: every run of the sweep and its state, rewritten whole (atomically) when a run ends.


def write_index(p: Plan, outcomes: dict[str, dict] | None = None) -> Path:
    """`<out>/index.json`. A run is 'finished' (its results file exists), 'failed' (it ended without
    one: `returncode`, `log`) or 'pending'. Paths are relative to the sweep folder."""
    outcomes = outcomes or {}
    rows = []
    for r in p.runs:
        done = r.finished()
        row = {
            "key": r.key,
            "values": r.values,
            "status": "finished" if done else ("failed" if r.key in outcomes else "pending"),
            "results": _rel(r.results, p.out),
            "notebook": _rel(r.notebook, p.out),
            "log": _rel(r.log, p.out),
        }
        row.update({k: v for k, v in outcomes.get(r.key, {}).items() if k in ("returncode", "seconds", "node")})
        rows.append(row)
    doc = {
        "chapter": p.chapter,
        "preset": p.preset,
        "fixed": p.fixed,
        "grid": p.grid,
        "command": p.command(),
        "why": p.why,
        "model_run": p.model_run,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": rows,
    }
    write_json_atomic(p.index, doc)
    return p.index


def _rel(path: Path, out: Path) -> str:
    """A run's file relative to the sweep folder (a main run's folder lies outside it: '../../chapters/...')."""
    return Path(os.path.relpath(Path(path).resolve(), Path(out).resolve())).as_posix()


def read_index(out: str | Path) -> dict:
    return json.loads((Path(out) / INDEX).read_text())


def describe(p: Plan) -> str:
    """What --dry-run prints: one line per run, finished or to run."""
    todo = sum(not r.finished() for r in p.runs)
    lines = [f"sweep {p.chapter} on preset {p.preset}: {len(p.runs)} runs, {todo} to run, into {relpath(p.out)}"]
    for r in p.runs:
        state = "finished" if r.finished() else "to run"
        values = ", ".join(f"{k}={_text(v)}" for k, v in r.values.items())
        lines.append(f"  {r.key:<50} {state:<9} {values}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The preset's robustness sweeps (the book's robustness page)


@dataclass(frozen=True)
class RobustnessSweep:
    """One sweep of a preset's `robustness:` list: a chapter (on a model run's overrides when `model_run`
    names one), its grid, fixed parameters, and why."""

    chapter: str
    grid: dict
    params: dict
    why: str
    model_run: str = ""  # a label of the preset's model_runs: the sweep starts from that run's overrides

    @property
    def folder_name(self) -> str:
        return f"{self.chapter}.{self.model_run}" if self.model_run else self.chapter


KEYS = {"chapter", "grid", "params", "why", "model_run"}


def robustness_sweeps(preset: str) -> list[RobustnessSweep]:
    """The preset's `robustness:` list ([{chapter, grid, params?, model_run?, why}]), one sweep per chapter
    and model run."""
    section = load_preset(preset).get("robustness") or []
    if not isinstance(section, list):
        raise ParamError(f"robustness: got {section!r}; expected a list of {{chapter, grid, params, why}}")
    runs = {(r.label, r.chapter): r for r in model_runs(preset)}
    out: list[RobustnessSweep] = []
    for i, item in enumerate(section):
        if not isinstance(item, dict) or set(item) - KEYS or "grid" not in item:
            raise ParamError(f"robustness[{i}]: got {item!r}; expected a mapping with chapter, grid, params, why")
        name, label = str(item.get("chapter", "")), str(item.get("model_run") or "")
        chapter_entry(name)
        if label and (label, name) not in runs:
            known = sorted({lab for lab, c in runs if c == name}) or ["none"]
            raise ParamError(
                f"robustness[{i}]: model_run '{label}' has no {name} run; expected one of {', '.join(known)}"
            )
        if any((s.chapter, s.model_run) == (name, label) for s in out):
            raise ParamError(f"robustness[{i}]: chapter '{name}' twice; expected one sweep per chapter (one grid)")
        grid, params = item["grid"], item.get("params") or {}
        if not isinstance(grid, dict) or not isinstance(params, dict):
            raise ParamError(f"robustness[{i}]: grid and params must be mappings {{name: values}}")
        base = runs[(label, name)].overrides if label else {}
        out.append(RobustnessSweep(name, dict(grid), {**base, **params}, str(item.get("why", "")).strip(), label))
    return out


def robustness_plans(preset: str, folder: Path, book_dir: Path | None = None) -> list[Plan]:
    """The preset's robustness sweeps, planned (validated) into folder/<chapter>[.<model run>]/. With `book_dir`
    (the folder `functok book` runs the chapters into) a grid point that is the book's own run of the chapter
    (or of the model run) reads that run's results instead of running it again."""
    runs = {(r.label, r.chapter): r for r in model_runs(preset)}

    def main(s: RobustnessSweep) -> ChapterConfig | None:
        if book_dir is None:
            return None
        if s.model_run:
            return resolve_model_run(runs[(s.model_run, s.chapter)], preset, str(book_dir))
        return resolve(s.chapter, preset, {"out_dir": str(book_dir)})

    return [
        plan(s.chapter, preset, s.params, s.grid, Path(folder) / s.folder_name, s.why, s.model_run, main(s))
        for s in robustness_sweeps(preset)
    ]
