"""Building the book: every chapter on one preset (functok.book.run), the scorecard generated from
the results files, the table of contents generated from the chapter registry, and the Jupyter Book 1
site (offline, warnings are errors, MathJax served from the site).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from functok.book.cards import write_cards
from functok.book.pages import copy_downloads, prepare_pages
from functok.book.profile import PROFILE, write_profile
from functok.book.profile import markdown as profile_markdown
from functok.book.profile import table as profile_table
from functok.book.robustness import robustness_markdown
from functok.book.run import run_chapter, staleness
from functok.book.sweep import options, robustness_plans
from functok.book.sweep_ray import execute, failures
from functok.chapters.registry import ModelRun, chapters, entries, model_runs, resolve, resolve_model_run
from functok.core.cache import relpath
from functok.core.config import ROOT

MATHJAX_DIR = ROOT / "vendor" / "node_modules" / "mathjax" / "es5"


# ---------------------------------------------------------------------------------------------
# Scorecard


def results_files(results_dir: Path) -> list[tuple[str, str, Path]]:
    """(chapter, label, results file) of a book tree, in book order: the preset's own run ("embedded",
    `<chapter>.json`) first, then each model run (`<label>/<chapter>.json`, registry.model_runs)."""
    results_dir = Path(results_dir)
    out = []
    for chapter in chapters():
        if (results_dir / f"{chapter}.json").exists():
            out.append((chapter, "embedded", results_dir / f"{chapter}.json"))
        for path in sorted(results_dir.glob(f"*/{chapter}.json")):
            if not path.parent.name.startswith("."):
                out.append((chapter, path.parent.name, path))
    return out


def split_claim_id(claim_id: str, label: str) -> tuple[str, str]:
    """'function_content_highest[llama-2L]' -> ('function_content_highest', 'llama-2L'): a claim made per
    model inside one run goes in that model's column; other claims in the run's own column."""
    base, bracket, rest = claim_id.partition("[")
    return (base, rest.rstrip("]")) if bracket and rest.endswith("]") else (claim_id, label)


def _title(chapter: str) -> str:
    return chapter.replace("_", " ").capitalize()


def _page(chapter: str, label: str) -> str:
    return f"chapters/{chapter}.ipynb" if label == "embedded" else f"chapters/{label}/{chapter}.ipynb"


def scorecard_markdown(results_dir: Path) -> str:
    """The reproduction scorecard: per chapter, each claim side by side across models (one column per
    model), then every claim of every results file with its note and a link to its page."""
    icon = {v: verdict_html(v) for v in VERDICT_STYLE}
    lines = [
        "# Reproduction scorecard",
        "",
        "Every claim the chapters test, generated from their results files (`<chapter>.json`). "
        "*Paper* is the number the paper reports, *ours* what this build measured, on the data and "
        "models named in each chapter. How the verdicts change when a parameter changes: "
        "[robustness](robustness.md).",
        "",
    ]
    files = results_files(results_dir)
    lines += summary_markdown(files)
    n = 0
    for chapter in chapters():
        runs = [(label, json.loads(path.read_text())) for ch, label, path in files if ch == chapter]
        if not runs:
            continue
        lines += [f"## [{_title(chapter)}]({_page(chapter, 'embedded')})", ""]
        # side by side: rows are claims, columns the models they were measured on
        columns: list[str] = []
        rows: dict[str, dict] = {}
        for label, doc in runs:
            for c in doc["claims"]:
                base, column = split_claim_id(c.get("id", c["statement"]), label)
                if column not in columns:
                    columns.append(column)
                row = rows.setdefault(base, {"statement": c["statement"], "paper": c["paper"], "cells": {}})
                row["cells"][column] = f"{_md(_fmt(c['ours']))}: {icon[c['verdict']]}"
        if len(columns) > 1:
            lines += [
                "| claim | paper | " + " | ".join(columns) + " |",
                "|---|---|" + "---|" * len(columns),
            ]
            for row in rows.values():
                cells = " | ".join(row["cells"].get(col, "") for col in columns)
                lines.append(f"| {_md(row['statement'])} | {_md(_fmt(row['paper']))} | {cells} |")
            lines.append("")
        for label, doc in runs:
            model = "" if label == "embedded" else f" on [{label}]({_page(chapter, label)})"
            pre = doc.get("preconditions", [])
            unmet = [p["statement"] for p in pre if not p["met"]]
            lines += [
                f"Run{model}: preset `{doc['params'].get('preset')}`, commit "
                f"`{doc['provenance']['git_commit'][:12]}`, {doc['provenance']['seconds']:.0f} s. Preconditions "
                f"(shown on the chapter's page, not counted here): {len(pre) - len(unmet)} of {len(pre)} met"
                + (f"; not met: {_md('; '.join(unmet))}." if unmet else "."),
                "",
                "| claim | paper | ours | verdict | note |",
                "|---|---|---|---|---|",
            ]
            for c in doc["claims"]:
                lines.append(
                    f"| {_md(c['statement'])} | {_md(_fmt(c['paper']))} | {_md(_fmt(c['ours']))} | "
                    f"{icon[c['verdict']]} | {_md(c.get('note', ''))} |"
                )
                n += 1
            lines.append("")
    if n == 0:
        lines += ["No results yet: run `functok book`.", ""]
    return "\n".join(lines)


# colour and a symbol and the word: a verdict reads the same in grey scale, to colour-blind readers and in text
VERDICT_STYLE = {
    "holds": ("\u2714", "#1a7f37"),
    "fails": ("\u2718", "#cf222e"),
    "inconclusive": ("?", "#9a6700"),
    "fragile": ("\u2248", "#8250df"),  # SAE seeds disagree (functok.core.results.over_seeds)
}


def verdict_html(verdict: str, text: str | None = None) -> str:
    symbol, colour = VERDICT_STYLE[verdict]
    return (
        f'<span class="functok-verdict functok-{verdict}" style="color:{colour};font-weight:bold">'
        f"{symbol} {verdict if text is None else text}</span>"
    )


def verdict_counts(files: list[tuple[str, str, Path]]) -> dict[tuple[str, str], dict[str, int]]:
    """{(chapter, model): {verdict: claims}} over results files, a model being the column the claim goes in
    side by side (split_claim_id: per-model claims of one run in their model's column)."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for chapter, label, path in files:
        for c in json.loads(Path(path).read_text())["claims"]:
            _, model = split_claim_id(c.get("id", c["statement"]), label)
            counts = out.setdefault((chapter, model), dict.fromkeys(VERDICT_STYLE, 0))
            counts[c["verdict"]] += 1
    return out


def summary_markdown(files: list[tuple[str, str, Path]]) -> list[str]:
    """The scorecard's opening table: per chapter and model, how many claims hold, fail, are inconclusive, or are
    fragile (scored on several SAE seeds that disagree)."""
    counts = verdict_counts(files)
    if not counts:
        return []
    lines = [
        "## Summary",
        "",
        "| chapter | measured on | " + " | ".join(verdict_html(v) for v in VERDICT_STYLE) + " |",
        "|---|---|" + "---:|" * len(VERDICT_STYLE),
    ]
    for (chapter, model), c in counts.items():
        cells = " | ".join(verdict_html(v, str(c[v])) if c[v] else "0" for v in VERDICT_STYLE)
        lines.append(f"| [{_title(chapter)}]({_page(chapter, 'embedded')}) | {_md(model)} | {cells} |")
    return lines + [""]


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _md(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------
# The world the book ran in (intro page)


def world_markdown(results_dir: Path) -> str:
    """The corpus composition and model table of the intro page, from chapter 1's results file
    (`results.world`, written when chapter 1 runs on the embedded corpus with the embedded tokenizer)."""
    path = results_dir / "function_tokens.json"
    world = json.loads(path.read_text())["results"].get("world") if path.exists() else None
    if not world:
        return "*The composition table appears once chapter 1 has run on the embedded corpus.*\n"
    lines = [
        "The corpus as this build used it, counted in the embedded tokenizer's tokens "
        f"(vocabulary {world['tokenizer_vocab_size']:,}):",
        "",
        "| split | source | documents | tokens | share of the split's tokens |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['split']} | {r['source']} | {r['documents']:,} | {r['tokens']:,} | {r['share']:.1%} |"
        for r in world["composition"]
    ]
    big = world["largest_source"]
    lines += [
        "",
        f"The largest source, {big['source']}, is {big['share']:.1%} of the training tokens.",
        "",
        "| model | parameters | d_model | heads | d_mlp | context | batch | steps | training tokens | passes | "
        "checkpoints |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| Llama, {m['n_layers']} layers | {m['parameters']:,} | {m['d_model']} | {m['n_heads']} | {m['d_mlp']} | "
        f"{m['context_size']} | {m['batch_size']} | {m['steps']:,} | {m['train_tokens']:,} | {m['passes']:.2f} | "
        f"{m['n_checkpoints']} |"
        for m in world["models"]
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Site


BOOK_SOURCES = ("_config.yml", "book/intro.md")
ROBUSTNESS = Path("book") / "robustness"  # under a book root: the preset's robustness sweeps, one folder each


def toc_yaml(runs: list[ModelRun] = (), cards: list[str] = ()) -> str:
    """`_toc.yml`, generated from the chapter registry (the book's one list of chapters) and the preset's
    model runs (a section under their chapter)."""
    lines = [
        "# Generated by functok.book.site.toc_yaml from the chapter registry: do not edit.",
        "format: jb-book",
        "root: book/intro",
        "parts:",
        "  - caption: Chapters",
        "    chapters:",
    ]
    for c in entries():
        lines.append(f"      - file: book/chapters/{c.name}\n        title: {json.dumps(c.title)}")
        labels = [r.label for r in runs if r.chapter == c.name]
        if labels:
            lines.append("        sections:")
            lines += [
                f"          - file: book/chapters/{label}/{c.name}\n            title: {json.dumps('On ' + label)}"
                for label in labels
            ]
    lines += [
        "  - caption: Results",
        "    chapters:",
        "      - file: book/scorecard",
        "      - file: book/robustness",
    ]
    if cards:  # chapter 5's feature cards, one page per model
        lines += ["  - caption: Feature cards", "    chapters:", *[f"      - file: {c}" for c in cards]]
    return "\n".join(lines + [""])


def build_site(root: Path = ROOT) -> Path:
    """Jupyter Book 1 from `root` (its book/chapters/ holds executed chapters), execution off, any
    warning fails the build; MathJax is served from the site. Returns root/_build/html."""
    root = Path(root)
    if root != ROOT:  # a separate book tree (tests, sweeps): same sources, its own chapters
        for name in BOOK_SOURCES:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, root / name)
    results_dir = root / "book" / "chapters"
    runs = [
        ModelRun(label, chapter, {})
        for chapter, label, _ in results_files(results_dir)
        if label != "embedded" and (results_dir / label / f"{chapter}.ipynb").exists()
    ]
    cards = write_cards(results_dir, root / "book")
    (root / "_toc.yml").write_text(toc_yaml(runs, cards))
    (root / "book" / "scorecard.md").write_text(scorecard_markdown(results_dir))
    world = world_markdown(results_dir) + profile_markdown(root / "book" / PROFILE)
    (root / "book" / "world.md").write_text(world)
    (root / "book" / "robustness.md").write_text(robustness_markdown(root / ROBUSTNESS, root / "book"))
    prepare_pages(results_dir)
    missing = [c for c in chapters() if not (results_dir / f"{c}.ipynb").exists()]
    if missing:
        raise FileNotFoundError(f"chapters not yet run into {results_dir}: {', '.join(missing)}")
    site = root / "_build" / "html"
    shutil.rmtree(site, ignore_errors=True)
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe), "build", str(root), "--builder", "html", "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-6000:])
        raise RuntimeError("jupyter-book build failed (warnings are errors); see the log above")
    if not MATHJAX_DIR.exists():
        raise FileNotFoundError("MathJax is not vendored: run `make install` (npm install in vendor/)")
    shutil.copytree(MATHJAX_DIR, site / "_static" / "mathjax", dirs_exist_ok=True)
    copy_downloads(results_dir, site / "book" / "chapters")  # each page links its results file and notebook
    return site


def build_book(preset: str = "embedded", run: bool = True, root: Path = ROOT, rerun: bool = False) -> Path:
    """Every chapter on one preset, then the preset's model runs, into root/book/chapters, then its
    robustness sweeps (on a local Ray cluster) into root/book/robustness (all validated before the first
    run), then the site into root/_build/html. A chapter whose results are up to date (functok.book.run's
    `staleness`: same parameters, versions and input contents) is not run again unless `rerun`."""
    out = Path(root) / "book" / "chapters"
    cfgs = [resolve(c, preset, {"out_dir": str(out)}) for c in chapters()]
    extra = [(r, resolve_model_run(r, preset, str(out))) for r in model_runs(preset)]
    sweeps = robustness_plans(preset, Path(root) / ROBUSTNESS, out)  # a grid point that is a run above reads it
    if run:
        since, timed = time.time(), []
        runs = [(cfg, "") for cfg in cfgs]
        for r, cfg in extra:
            params = " ".join(f"-p {k} {json.dumps(v)}" for k, v in r.overrides.items())
            runs.append((cfg, f" {params} (model run '{r.label}')"))
        ran = 0
        for cfg, what in runs:
            why = ["--rerun"] if rerun else staleness(cfg)
            if not why:
                print(f"== up to date: functok run {cfg.chapter} --preset {preset}{what}", flush=True)
                continue
            ran += 1
            print(f"== functok run {cfg.chapter} --preset {preset}{what} (changed: {', '.join(why[:3])})", flush=True)
            t0 = time.perf_counter()
            run_chapter(cfg)
            print(f"== {cfg.chapter}{what}: {time.perf_counter() - t0:.0f} s", flush=True)
            timed.append({"run": f"{cfg.chapter}{what}", "seconds": round(time.perf_counter() - t0, 1)})
        print(f"== {ran} of {len(runs)} chapter runs ran, {len(runs) - ran} up to date", flush=True)
        for p in sweeps:
            print(f"== {p.command()} (robustness)", flush=True)
            outcomes = execute(p, options(out=str(p.out)))
            print(f"== robustness {p.chapter}: {len(outcomes)} of {len(p.runs)} runs ran", flush=True)
            failed = failures(p, outcomes)
            if failed:
                raise RuntimeError(f"robustness sweep of {p.chapter}: {len(failed)} run(s) failed: {'; '.join(failed)}")
            seconds = sum(o.get("seconds", 0) for o in outcomes.values())  # the runs' own, summed (2 run at once)
            timed.append({"run": f"robustness {p.out.name}", "seconds": round(seconds, 1)})
        doc = write_profile(Path(root) / "book" / PROFILE, since, timed)
        print(f"== build profile ({relpath(Path(root) / 'book' / PROFILE)}):\n{profile_table(doc)}", flush=True)
    return build_site(root)
