"""The functok command line.

    functok run CHAPTER [--preset NAME] [-p NAME VALUE]... [--out DIR]
    functok params CHAPTER
    functok presets
    functok pretrain [--preset NAME] [-p NAME VALUE]...
    functok book [--preset NAME] [--no-run] [--rerun]
    functok sweep CHAPTER [--preset NAME] [-p NAME VALUE]... --grid NAME VALUES [--grid ...] [--out DIR]
                  [--address auto|HOST:PORT] [--cpus-per-run N] [--gpus-per-run X] [--dry-run]

Parameters are validated before any kernel starts or model loads; bad input exits with code 2 and
one line naming the parameter. `python -m functok ...` works the same. The CLI belongs to the book
layer: it runs chapters as notebooks and pre-training as `python -m functok.world.pretrain`, in
processes of their own, and never imports the layers above it.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from functok.book import sweep
from functok.chapters import registry
from functok.core import config
from functok.core.config import ParamError


def parse_value(text: str):
    """Like papermill's -p: ints, floats, booleans, None and YAML lists; anything else stays a string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("null", "None", "~", ""):
        return text
    if text.strip() == "None":
        return None
    return value if isinstance(value, (int, float, bool, list)) or value is None else text


def _overrides(pairs) -> dict:
    out = {}
    for name, value in pairs or []:
        out[name] = parse_value(value)
    return out


def grid_values(name: str, text: str) -> list:
    """A --grid's values: a YAML list ('[0.3, 0.4]', '[[gpt2], [llama3]]') or comma-separated ('0.3,0.4'),
    each value parsed like -p."""
    value = parse_value(text)
    if isinstance(value, list):
        return value
    pieces = [v.strip() for v in str(text).split(",")]
    if not all(pieces):
        raise ParamError(f"{name}: grid values {text!r}; expected a list like '[0.3, 0.4]' or 0.3,0.4")
    return [parse_value(v) for v in pieces]


def _grid(pairs) -> dict:
    grid: dict = {}
    for name, text in pairs or []:
        if name in grid:
            raise ParamError(f"{name}: --grid given twice; expected all its values in one --grid")
        grid[name] = grid_values(name, text)
    return grid


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="functok", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def with_params(p):
        p.add_argument("--preset", default="embedded", help="preset from data/presets/ (default: embedded)")
        p.add_argument(
            "-p",
            "--param",
            nargs=2,
            action="append",
            metavar=("NAME", "VALUE"),
            help="override one parameter (value parsed like papermill: 3, 0.4, '[1, 2]', text)",
        )

    run = sub.add_parser("run", help="validate parameters, execute one chapter, write <chapter>.json")
    run.add_argument("chapter")
    with_params(run)
    run.add_argument(
        "--out", default=None, help=f"output folder (default: {config.BOOK_CHAPTERS_DIR.relative_to(config.ROOT)})"
    )

    p = sub.add_parser("params", help="every parameter of a chapter: type, default, range, help")
    p.add_argument("chapter")

    sub.add_parser("presets", help="the presets, what each costs and needs")

    pre = sub.add_parser("pretrain", help="build the embedded corpus, tokenizer and models of a preset")
    with_params(pre)

    sw = sub.add_parser("sweep", help="run a chapter over a grid of parameter values on Ray, one run per set")
    sw.add_argument("chapter")
    with_params(sw)
    sw.add_argument(
        "--grid",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUES"),
        help="sweep one parameter over VALUES: '[0.3, 0.4, 0.5]' or 0.3,0.4,0.5 (several --grid: every combination)",
    )
    helps = {name: m["help"] for name, m in config.field_help(sweep.SweepOptions).items()}
    sw.add_argument("--out", default="", help=helps["out"])
    sw.add_argument("--address", default="", help=helps["address"])
    sw.add_argument("--cpus-per-run", type=float, default=1.0, help=helps["cpus_per_run"])
    sw.add_argument("--gpus-per-run", type=float, default=0.0, help=helps["gpus_per_run"])
    sw.add_argument("--dry-run", action="store_true", help="validate and list the runs (finished or to run); run none")

    book = sub.add_parser("book", help="run every chapter, then build the static site into _build/html")
    book.add_argument("--preset", default="embedded")
    book.add_argument("--no-run", action="store_true", help="only rebuild the site from existing results")
    book.add_argument("--rerun", action="store_true", help="run every chapter, also those whose results are up to date")
    return ap


def cmd_params(chapter: str) -> None:
    cfg = registry.resolve(chapter)  # validates the chapter name
    import dataclasses
    from typing import get_type_hints

    hints = get_type_hints(type(cfg))
    print(f"Parameters of '{chapter}' (defaults; presets may change them):")
    for f in dataclasses.fields(cfg):
        m = f.metadata
        rng = ""
        if m.get("choices"):
            rng = "one of " + ", ".join(map(str, m["choices"]))
        elif m.get("lo") is not None and m.get("hi") is not None:
            rng = f"[{m['lo']}, {m['hi']}]"
        elif m.get("lo") is not None:
            rng = f">= {m['lo']}"
        elif m.get("hi") is not None:
            rng = f"<= {m['hi']}"
        if m.get("min_items"):
            rng = "non-empty" if m["min_items"] == 1 else f">= {m['min_items']} values"
        default = config.defaults(type(cfg))[f.name]
        live = " [cheap: the live form redraws it]" if m.get("cost") == "cheap" else ""
        print(f"  {f.name:<20} {hints[f.name].__name__:<6} default={default!r:<24} {rng:<18} {m.get('help', '')}{live}")


def cmd_presets() -> None:
    for name, p in config.presets().items():
        cost = p.get("cost", {})
        print(f"{name}: {p.get('description', '')}")
        print(
            f"    time: {cost.get('time', '?')}; memory: {cost.get('memory', '?')}; downloads: "
            f"{cost.get('downloads', '?')}"
        )
        print(f"    needs: {p.get('needs', 'nothing')}")


def pretrain_process(cfg) -> int:
    """Pre-train a validated config in a process of its own (`python -m functok.world.pretrain`)."""
    import json
    import subprocess

    values = json.dumps({k: v for k, v in config.as_dict(cfg).items() if k != "out_dir"})
    return subprocess.run([sys.executable, "-m", "functok.world.pretrain", "--config-json", values]).returncode


def cmd_sweep(args) -> int:
    """Plan and validate every run, then run the unfinished ones on Ray; 1 if any failed."""
    opts = sweep.options(
        out=args.out, address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run
    )
    p = sweep.plan(args.chapter, args.preset, _overrides(args.param), _grid(args.grid), opts.out or None)
    if args.dry_run:
        print(sweep.describe(p))
        return 0
    from functok.book import sweep_ray  # with functok.book.run, like `functok run`: once the input is valid

    try:
        outcomes = sweep_ray.execute(p, opts)
    except sweep_ray.SweepError as e:
        print(f"functok: error: {e}", file=sys.stderr)
        return 1
    failed = sweep_ray.failures(p, outcomes)
    done = sum(r.finished() for r in p.runs)
    print(f"sweep {p.chapter}: {done} of {len(p.runs)} runs finished ({len(outcomes)} ran now); index {p.index}")
    if failed:
        print(f"functok: {len(failed)} run(s) failed:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "params":
            cmd_params(args.chapter)
        elif args.cmd == "presets":
            cmd_presets()
        elif args.cmd == "run":
            overrides = _overrides(args.param)
            if args.out is not None:  # --out '' is refused by validation, not taken for the default
                overrides["out_dir"] = args.out
            cfg = registry.resolve(args.chapter, args.preset, overrides)
            from functok.book.run import (
                run_chapter,  # papermill: imported once the input is valid
            )

            out = run_chapter(cfg)
            print(f"wrote {out} and {out.with_suffix('.json')}")
        elif args.cmd == "pretrain":
            cfg = registry.resolve("pretrain", args.preset, _overrides(args.param))
            return pretrain_process(cfg)
        elif args.cmd == "book":
            config.load_preset(args.preset)
            from functok.book.site import build_book

            site = build_book(args.preset, run=not args.no_run, rerun=args.rerun)
            print(f"open file://{site / 'index.html'}")
        elif args.cmd == "sweep":
            return cmd_sweep(args)
    except ParamError as e:
        print(f"functok: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
