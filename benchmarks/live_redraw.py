"""How fast does a chapter's live form redraw? Per chapter, the time to measure (analyze, from the warm cache),
to build the form, and to redraw after each cheap field changes (the issue's bar: 2 s on the embedded preset).

Run:  FUNCTOK_THREADS=1 nice -n 10 .venv/bin/python benchmarks/live_redraw.py [--preset embedded] [CHAPTER ...]

Needs the preset's artifacts in the cache (`functok book --preset embedded` builds them); a cold cache
measures the chapter's whole run instead. Chapters without cheap fields (feature_growth) are listed as such.
Each change sets the widget from code, as a user's edit does, and times the callback (validation, the
chapter's re-derivation and every redrawn view, figures rendered to PNG).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    import matplotlib

    matplotlib.use("agg")
    from functok.book.config import cheap_fields
    from functok.book.registry import chapters, resolve

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="*", default=chapters())
    ap.add_argument("--preset", default="embedded")
    args = ap.parse_args()

    print(f"{'chapter':<18} {'field':<18} {'seconds':>8}  views redrawn")
    for name in args.chapters:
        cfg = resolve(name, args.preset)
        cheap = cheap_fields(type(cfg))
        if not cheap:
            print(f"{name:<18} {'(no cheap fields: every change re-runs the chapter)'}")
            continue
        live = importlib.import_module(f"functok.chapters.{name}.live")
        analyze = importlib.import_module(f"functok.chapters.{name}.analysis").analyze
        t0 = time.perf_counter()
        analysis = analyze(cfg)
        t_measure = time.perf_counter() - t0
        t0 = time.perf_counter()
        form = live.form(cfg, analysis)
        t_form = time.perf_counter() - t0
        t0 = time.perf_counter()
        form.redraw(all_views=True)  # in the notebook the chapter has drawn its figures before the form opens
        t_first = time.perf_counter() - t0
        print(f"{name:<18} {'(analyze)':<18} {t_measure:>8.2f}")
        print(f"{name:<18} {'(build the form)':<18} {t_form:>8.2f}")
        print(f"{name:<18} {'(first draw, all)':<18} {t_first:>8.2f}  imports and every view once")
        for field in cheap:
            before = form.redraws
            t0 = time.perf_counter()
            form.set(field, CHANGES[field])
            seconds = time.perf_counter() - t0
            if form.redraws == before:
                raise SystemExit(f"{name}.{field}: nothing was redrawn ({form.status.value})")
            views = form.status.value.split(" in ")[0].removeprefix("redrew ")
            print(f"{name:<18} {field:<18} {seconds:>8.2f}  {views}")


if __name__ == "__main__":
    main()
