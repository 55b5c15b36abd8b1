"""Running one chapter with papermill.

A chapter runs as `chapters/<NN>_<chapter>.ipynb` -> `<out>/<chapter>.ipynb` + `<out>/<chapter>.json`.
Both are written into a private staging folder `<out>/.staging/<chapter>-XXXX/` (the kernel's results
file goes there through FUNCTOK_STAGING_DIR, while the notebook's `out_dir` parameter stays the user's
folder) and moved into `<out>` together, only once papermill succeeded: a killed or failed run never
leaves a results file of one run beside the notebook of another. A failed run's notebook is kept under
`_build/failed/` and its error re-raised; a ParamError raised inside the kernel is re-raised as the
same one-line ParamError. Staging folders of killed runs are removed by the next successful run.

A run is up to date (`staleness(cfg) == []`) while its parameters, package versions and the content of
its inputs (functok.core.freshness) match; `functok book` and sweeps skip such runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from functok.chapters.registry import chapter
from functok.core.cache import relpath
from functok.core.config import CHAPTERS_DIR, ROOT, ChapterConfig, ParamError, overrides_of
from functok.core.freshness import NOTEBOOK_ENV, changed
from functok.core.results import STAGING_ENV, versions

STAGING = ".staging"  # under <out>: the same file system, so the final moves are atomic renames
LOCK = ".lock"  # held (flock) by the run a staging folder belongs to while it runs
STALE_UNLOCKED_S = 600  # a staging folder without a lock file this old belongs to no live run
FAILED_DIR = ROOT / "_build" / "failed"  # where a failed run's executed notebook is kept
# the kernel's own log (not the cells' output, which papermill logs) only from errors on: its warnings, such
# as ipykernel's about unencrypted TCP on every start, would bury the one line a ParamError is reported in
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def chapter_source(name: str) -> Path:
    """The chapter's source notebook, as its registry entry names it."""
    path = CHAPTERS_DIR / chapter(name).notebook
    if not path.exists():
        raise FileNotFoundError(f"no notebook {path.relative_to(ROOT)} (named by the registry entry of '{name}')")
    return path


def _out_dir(cfg: ChapterConfig) -> Path:
    out = Path(cfg.out_dir)
    return out if out.is_absolute() else ROOT / out


@contextlib.contextmanager
def _locked(path: Path, blocking: bool = True):
    """An exclusive flock on `path` (created if missing), released when the block ends or the process dies;
    yields False when `blocking` is off and another process holds it."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value  # the kernel papermill starts inherits it
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def remove_stale_staging(staging: Path) -> list[Path]:
    """Remove the staging folders of runs that no longer live (their lock is free); returns them."""
    removed = []
    for d in sorted(p for p in staging.glob("*") if p.is_dir()):
        lock = d / LOCK
        if not lock.exists():
            if time.time() - d.stat().st_mtime < STALE_UNLOCKED_S:
                continue  # a run that has just created its folder and not yet locked it
        else:
            with _locked(lock, blocking=False) as free:
                if not free:
                    continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def keep_failed(executed: Path, name: str, failed_dir: Path | None = None) -> Path | None:
    """Move a failed run's notebook to `failed_dir` (default _build/failed/; shutil.move: also across file
    systems). A failure to keep it is reported, never raised: the chapter's own error is the one that matters."""
    if not executed.exists():
        return None
    failed = Path(failed_dir or FAILED_DIR)
    try:
        failed.mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(str(executed), str(failed / name)))
    except OSError as e:
        print(f"functok: could not keep the failed notebook in {failed}: {e}", file=sys.stderr)
        return None


def notebook_parameters(cfg: ChapterConfig) -> dict:
    """What `functok run` injects into the notebook: the preset and the fields that differ from it (out_dir
    relative: no machine paths in the published notebook). The kernel resolves them as the CLI did."""
    overrides = overrides_of(cfg)
    if "out_dir" in overrides:
        overrides["out_dir"] = relpath(_out_dir(cfg))
    return {"preset": cfg.preset, "overrides": overrides}


def staleness(cfg: ChapterConfig) -> list[str]:
    """Why the chapter's results in cfg.out_dir would change if it ran again ([]: they would not, every result
    being seeded): a missing file, other parameters or package versions, or an input whose content changed
    (functok.core.freshness: the notebook, a functok module it imported, a data file it read)."""
    out = _out_dir(cfg)
    results, notebook = out / f"{cfg.chapter}.json", out / f"{cfg.chapter}.ipynb"
    if not (results.exists() and notebook.exists()):
        return ["no results"]
    try:
        doc = json.loads(results.read_text())
    except (OSError, ValueError):
        return ["unreadable results"]
    params = dataclasses.asdict(cfg) | {"out_dir": relpath(out)}  # as the kernel records them
    prov = doc.get("provenance", {})
    why = []
    if doc.get("params") != json.loads(json.dumps(params, default=str)):
        why.append("parameters")
    if prov.get("versions") != versions():
        why.append("package versions")
    return why + changed(prov.get("inputs"))


def up_to_date(cfg: ChapterConfig) -> bool:
    """Running the chapter again would write the same results: `functok book` and sweeps skip it."""
    return not staleness(cfg)


def run_chapter(cfg: ChapterConfig, failed_dir: Path | None = None) -> Path:
    """Execute one chapter notebook with papermill; returns the executed notebook's path in cfg.out_dir.
    A failed run's notebook goes to `failed_dir` (default _build/failed/; a sweep gives each run its own)."""
    import papermill as pm

    out_dir = _out_dir(cfg)
    staging = out_dir / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{cfg.chapter}-", dir=staging))
    final, results = out_dir / f"{cfg.chapter}.ipynb", out_dir / f"{cfg.chapter}.json"
    executed, produced = stage / final.name, stage / results.name
    source = chapter_source(cfg.chapter)
    try:
        with _locked(stage / LOCK), _env(STAGING_ENV, str(stage)), _env(NOTEBOOK_ENV, str(source)):
            try:
                pm.execute_notebook(
                    str(source),
                    str(executed),
                    parameters=notebook_parameters(cfg),
                    kernel_name="python3",
                    log_output=True,
                    progress_bar=False,
                    cwd=str(ROOT),
                    extra_arguments=KERNEL_ARGUMENTS,
                )
                if not produced.exists():
                    raise RuntimeError(f"chapter {cfg.chapter}: the notebook ran but wrote no {results.name}")
            except Exception as e:
                kept = keep_failed(executed, final.name, failed_dir)
                if getattr(e, "ename", None) == "ParamError":  # bad input found inside the kernel: one line
                    raise ParamError(str(e.evalue).replace("\n", " ").strip()) from None
                if kept:
                    print(f"functok: chapter {cfg.chapter} failed; executed notebook kept at {kept}", file=sys.stderr)
                raise
            with _locked(staging / f"{cfg.chapter}{LOCK}"):  # two runs of one chapter switch one after the other
                os.replace(executed, final)
                os.replace(produced, results)
        (out_dir / f".{cfg.chapter}.tmp.ipynb").unlink(missing_ok=True)  # left by killed runs of earlier versions
        remove_stale_staging(staging)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final
