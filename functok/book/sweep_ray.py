"""Executing a planned sweep (functok.book.sweep) on Ray: one Ray task per unfinished run.

Without an address a local Ray cluster starts on this machine (every core, no dashboard) and stops at
the end; with one (`auto`, HOST:PORT) the sweep joins a running cluster. Each task asks for
`cpus_per_run` CPUs and `gpus_per_run` GPUs and runs its chapter in a process of its own
(`python -m functok.book.sweep_ray SPEC`, output to the run's log.txt): Ray's CPU counts are
bookkeeping, so the process gets FUNCTOK_THREADS (and OMP/MKL threads) equal to its CPU share, and
Ray's CUDA_VISIBLE_DEVICES names its GPUs (none when it asked for none). A run that fails does not stop
the others; `<out>/index.json` is rewritten as each run ends. Ray is imported only here, only when a
sweep has something to run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from functok.book.run import run_chapter
from functok.book.sweep import FAILED, LOG, Plan, PlannedRun, SweepOptions, write_index
from functok.chapters.registry import resolve
from functok.core.cache import relpath
from functok.core.config import ROOT, ParamError

# functok.world.runtime.n_threads reads FUNCTOK_THREADS (set_num_threads); torch's and BLAS's pools read the others
THREAD_VARS = ("FUNCTOK_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class SweepError(RuntimeError):
    """The sweep could not run at all (Ray did not start or answer): one line, exit status 1."""


def _local_auth() -> None:
    """A local cluster keeps Ray's token authentication (its ports listen on the node's address) with a
    token of this process in the environment, which its Ray processes inherit, instead of the token
    file Ray 2.60 would write to ~/.ray/auth_token. Set before Ray is imported (it reads them once) and
    kept for the process: a second sweep in it must present the same token."""
    if not any(os.environ.get(k) for k in AUTH_VARS):
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)


@contextlib.contextmanager
def cluster(opts: SweepOptions, resources: dict | None = None):
    """Ray, connected for the block: a running cluster at opts.address, or a local one (every core;
    `resources` adds ray.init arguments, e.g. {"num_gpus": 1} logical GPUs in tests). No usage stats.
    A running cluster uses whatever RAY_AUTH_* or ~/.ray/auth_token its `ray start` set up."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not opts.address:
        _local_auth()
        # Ray renices task workers by +15: on a shared machine runs would starve behind any other work
        os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    for attempt in (1, 2):  # a local start can time out inside Ray on a machine busy with other work: once more
        try:
            if opts.address:
                ray.init(address=opts.address, log_to_driver=False)
            else:
                ray.init(num_cpus=cpu_count(), include_dashboard=False, log_to_driver=False, **(resources or {}))
            break
        except Exception as e:  # noqa: BLE001  Ray raises several kinds (ConnectionError, timeouts): one line
            ray.shutdown()
            if attempt == 2 or opts.address:
                where = f"reach the Ray cluster at {opts.address}" if opts.address else "start a local Ray cluster"
                msg = f"sweep: could not {where} ({type(e).__name__}: {str(e).splitlines()[0]})"
                raise SweepError(msg) from None
    try:
        check_resources(ray.cluster_resources(), opts)
        yield ray
    finally:
        ray.shutdown()


def check_resources(have: dict, opts: SweepOptions) -> None:
    """A run asking for more than the whole cluster has would wait forever: refuse it in one line."""
    for name, want, what in (("cpus_per_run", opts.cpus_per_run, "CPU"), ("gpus_per_run", opts.gpus_per_run, "GPU")):
        if want > have.get(what, 0):
            raise ParamError(f"{name}: {want:g} per run, but the Ray cluster has {have.get(what, 0):g} {what}s in all")


def spec(run: PlannedRun, opts: SweepOptions) -> dict:
    """What a task needs to run one run (plain JSON: it crosses to the worker and to the run's process)."""
    return {
        "key": run.key,
        "chapter": run.cfg.chapter,
        "params": dataclasses.asdict(run.cfg),
        "threads": max(1, int(opts.cpus_per_run)),
        "gpus": opts.gpus_per_run,
    }


def run_one(task: dict) -> dict:
    """The Ray task: one run in a process of its own, its output in <run folder>/log.txt. Returns the
    outcome (returncode 0: the results file was written)."""
    folder = Path(task["params"]["out_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)  # on a GPU task Ray has set CUDA_VISIBLE_DEVICES to the GPUs it gave
    env.update({name: str(task["threads"]) for name in THREAD_VARS})
    if not task["gpus"]:
        env["CUDA_VISIBLE_DEVICES"] = ""  # asked for none: never take a GPU another run holds
    t0 = time.time()
    with open(folder / LOG, "w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "functok.book.sweep_ray", json.dumps(task)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    seconds = round(time.time() - t0, 1)
    return {"key": task["key"], "returncode": proc.returncode, "seconds": seconds, "node": socket.gethostname()}


def execute(plan: Plan, opts: SweepOptions, resources: dict | None = None, progress: bool = True) -> dict[str, dict]:
    """Run every unfinished run of the plan on Ray, a bar over finished runs; returns the outcomes of the
    runs that ran this time (key -> {returncode, seconds, node, error?}). Ray starts only if there is
    something to run."""
    from tqdm import tqdm

    todo = [r for r in plan.runs if not r.finished()]
    write_index(plan)
    if not todo:
        return {}
    outcomes: dict[str, dict] = {}
    with cluster(opts, resources) as ray:
        task = ray.remote(num_cpus=opts.cpus_per_run, num_gpus=opts.gpus_per_run, max_retries=1)(run_one)
        pending = {task.remote(spec(r, opts)): r for r in todo}
        bar = tqdm(
            total=len(plan.runs),
            initial=len(plan.runs) - len(todo),
            desc=f"sweep {plan.chapter}",
            unit="run",
            file=sys.stderr,
            disable=not progress,
        )
        with bar:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                r = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # noqa: BLE001  the worker or its node died: the run failed, the others go on
                    outcome = {"key": r.key, "returncode": -1, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
                if outcome["returncode"] == 0 and not r.finished():
                    outcome["error"] = (
                        "it succeeded, but its results are not here: --out must be on a shared file system"
                    )
                outcomes[r.key] = outcome
                write_index(plan, outcomes)
                bar.update(1)
    return outcomes


def failures(plan: Plan, outcomes: dict[str, dict]) -> list[str]:
    """One line per run that ran and has no results file: its key, exit status and log."""
    lines = []
    for r in plan.runs:
        if r.key in outcomes and not r.finished():
            o = outcomes[r.key]
            why = o.get("error") or f"exit {o['returncode']}"
            kept = r.folder / FAILED / r.notebook.name
            nb = f"; notebook {relpath(kept)}" if kept.exists() else ""
            lines.append(f"{r.key}: {why}; log {relpath(r.log)}{nb}")
    return lines


# ---------------------------------------------------------------------------------------------
# The run's own process


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its Ray worker dies (a stopped sweep stops its runs)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    import logging

    task = json.loads((argv or sys.argv[1:])[0])
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # papermill logs the cells here
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: papermill stops its kernel
    params = task["params"]
    try:
        cfg = resolve(task["chapter"], params["preset"], params)
        out = run_chapter(cfg, failed_dir=Path(cfg.out_dir) / FAILED)
    except ParamError as e:
        print(f"functok: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
