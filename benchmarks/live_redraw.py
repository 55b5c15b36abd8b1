"""How fast does a chapter's live form redraw? Per chapter, the time to measure (analyze, from the warm cache),
to build the form, and to redraw after each cheap field changes (the issue's bar: 2 s on the embedded preset).

Run:  FUNCTOK_THREADS=1 nice -n 10 .venv/bin/python benchmarks/live_redraw.py [--preset embedded] [CHAPTER ...]

Needs the preset's artifacts in the cache (`functok book --preset embedded` builds them); a cold cache
measures the chapter's whole run instead. Chapters without cheap fields (feature_growth) are listed as such.
Each change sets the widget from code, as a user's edit does, and times the callback (validation, the
chapter's re-derivation and every redrawn view, figures rendered to PNG): wall seconds, and the CPU seconds
of this process (on a machine shared with other jobs the wall time includes waiting for a core).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# a valid new value for every cheap field (each differs from the embedded preset's)
CHANGES = {
    "top_n": 25,
    "n_bins": 20,
    "sweep_thresholds": [0.25, 0.35, 0.45, 0.55],
    "match_window": 1.5,
    "count_knots": 2,
    "n_bootstrap": 2000,
    "alpha": 0.01,
    "min_checkpoints": 4,
    "converge_fraction": 0.2,
    "log_smoothing": 20,
    "min_precision": 0.3,
}


@contextlib.contextmanager
def timed(chapter: str, what: str, note: str = ""):
    """Print one row: wall and CPU seconds of the block, and the notes it appends."""
    notes = [note] if note else []
    wall, cpu = time.perf_counter(), time.process_time()
    yield notes
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{chapter:<18} {what:<18} {wall:>8.2f} {cpu:>8.2f}  {'; '.join(notes)}", flush=True)


def main() -> None:
    import matplotlib

    matplotlib.use("agg")
    from functok.book.live import form as live_form
    from functok.chapters.registry import chapters, resolve
    from functok.core.config import cheap_fields

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="*", default=chapters())
    ap.add_argument("--preset", default="embedded")
    args = ap.parse_args()

    print(f"{'chapter':<18} {'field':<18} {'wall s':>8} {'cpu s':>8}  views redrawn")
    for name in args.chapters:
        cfg = resolve(name, args.preset)
        cheap = cheap_fields(type(cfg))
        if not cheap:
            print(f"{name:<18} {'(no cheap fields: every change re-runs the chapter)'}")
            continue
        analyze = importlib.import_module(f"functok.chapters.{name}.analysis").analyze
        with timed(name, "(analyze)", "from the cache"):
            analysis = analyze(cfg)
        with timed(name, "(build the form)"):
            form = live_form(cfg, analysis)
        with timed(name, "(first draw, all)", "imports and every view once, as the notebook drew them"):
            form.redraw(all_views=True)
        for field in cheap:
            before = form.redraws
            with timed(name, field) as note:
                form.set(field, CHANGES[field])
                note.append(form.status.value.removeprefix("redrew "))
            if form.redraws == before:
                raise SystemExit(f"{name}.{field}: nothing was redrawn ({form.status.value})")
        with timed(name, "(back to the run's)") as note:  # every knob back: the run's own claims again
            for field in cheap:
                form.set(field, getattr(cfg, field))
            note.append(f"claims as the run's: {form.state.claims == analysis.claims}")


if __name__ == "__main__":
    main()
