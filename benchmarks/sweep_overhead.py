"""Target (issue 16): a 4-run sweep of a cheap chapter takes at most 3 s per run more than the same four
runs one after the other with `functok run`.

Runs chapter 1 (default: smoke preset, one tokenizer) once to warm the cache (untimed), then the four
parameter sets one after the other (`functok run ... --out`), then the same four as one `functok sweep`
into a fresh folder, and prints both wall times and the per-run difference. By default the sweep asks for
every core per run, so Ray runs them one at a time too and the difference is Ray's start, dispatch and the
runs' own processes; `--cpus-per-run 1` lets runs go side by side (the sweep's default) instead.
Use a warm cache and a quiet machine: other work on the cores moves both times.

    FUNCTOK_THREADS=1 .venv/bin/python benchmarks/sweep_overhead.py [--preset smoke] [--chapter function_tokens]
        [--param tokenizers '[embedded]'] [--grid coverage_threshold 0.3,0.35,0.4,0.45] [--cpus-per-run N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def functok(*argv: str) -> float:
    """Wall seconds of one `python -m functok ...` (its output hidden unless it fails)."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "functok", *argv], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"functok {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.time() - t0


def main() -> None:
    from functok.book.cli import grid_values
    from functok.book.sweep_ray import cpu_count

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--chapter", default="function_tokens")
    ap.add_argument("--param", nargs=2, action="append", default=None, metavar=("NAME", "VALUE"))
    ap.add_argument("--grid", nargs=2, default=["coverage_threshold", "0.3,0.35,0.4,0.45"], metavar=("NAME", "VALUES"))
    ap.add_argument("--cpus-per-run", type=float, default=float(cpu_count()))
    args = ap.parse_args()
    params = args.param if args.param is not None else [["tokenizers", "[embedded]"]]
    fixed = [a for name, value in params for a in ("-p", name, value)]
    name, text = args.grid
    values = grid_values(name, text)
    print(f"{args.chapter} on preset {args.preset}, {' '.join(fixed)}; {len(values)} runs over {name} = {values}")
    print(
        f"cores: {cpu_count()}, FUNCTOK_THREADS={os.environ.get('FUNCTOK_THREADS', '(unset)')}, load {os.getloadavg()}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        warm = functok("run", args.chapter, "--preset", args.preset, *fixed, "-p", name, str(values[0]),
                       "--out", f"{tmp}/warm")  # fmt: skip
        print(f"warm-up run (untimed for the comparison): {warm:.1f} s")
        t_seq = sum(
            functok("run", args.chapter, "--preset", args.preset, *fixed, "-p", name, str(v), "--out", f"{tmp}/seq{i}")
            for i, v in enumerate(values)
        )
        t_sweep = functok(
            "sweep", args.chapter, "--preset", args.preset, *fixed, "--grid", name, text,
            "--out", f"{tmp}/sweep", "--cpus-per-run", str(args.cpus_per_run),
        )  # fmt: skip
    n = len(values)
    print(f"one after the other (functok run x {n}): {t_seq:.1f} s ({t_seq / n:.1f} s per run)")
    print(f"functok sweep (--cpus-per-run {args.cpus_per_run:g}):  {t_sweep:.1f} s ({t_sweep / n:.1f} s per run)")
    print(f"overhead per run: {(t_sweep - t_seq) / n:+.1f} s (target: at most +3 s)")


if __name__ == "__main__":
    main()
