"""Running chapters with papermill and building the Jupyter Book 1 site.

A chapter runs as `chapters/<NN>_<chapter>.ipynb` -> `<out>/<chapter>.ipynb` (+ the notebook writes
`<out>/<chapter>.json`). The executed notebook is written to a temporary name and renamed only when
the run succeeded; a failed run leaves its notebook under `_build/failed/` for inspection.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .cache import relpath
from .config import CHAPTERS_DIR, ROOT, ChapterConfig, chapters, resolve

MATHJAX_DIR = ROOT / "vendor" / "node_modules" / "mathjax" / "es5"


def chapter_source(chapter: str) -> Path:
    found = sorted(CHAPTERS_DIR.glob(f"[0-9][0-9]_{chapter}.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebook chapters/NN_{chapter}.ipynb")
    return found[0]


def _out_dir(cfg: ChapterConfig) -> Path:
    out = Path(cfg.out_dir)
    return out if out.is_absolute() else ROOT / out


def run_chapter(cfg: ChapterConfig) -> Path:
    """Execute one chapter notebook with papermill; returns the executed notebook's path."""
    import papermill as pm

    out_dir = _out_dir(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{cfg.chapter}.ipynb"
    tmp = out_dir / f".{cfg.chapter}.tmp.ipynb"
    params = dataclasses.asdict(cfg)
    params["out_dir"] = relpath(out_dir)  # relative: no machine paths in the published notebook
    try:
        pm.execute_notebook(str(chapter_source(cfg.chapter)), str(tmp), parameters=params,
                            kernel_name="python3", log_output=True, progress_bar=False, cwd=str(ROOT))
    except Exception:
        failed = ROOT / "_build" / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            os.replace(tmp, failed / final.name)
            print(f"functok: chapter {cfg.chapter} failed; executed notebook kept at {failed / final.name}", file=sys.stderr)
        raise
    os.replace(tmp, final)
    return final


# ---------------------------------------------------------------------------------------------
# Scorecard


def scorecard_markdown(results_dir: Path) -> str:
    """The reproduction scorecard: every claim of every results file, with a link to its chapter."""
    icon = {"holds": "**holds**", "fails": "**fails**", "inconclusive": "*inconclusive*"}
    lines = ["# Reproduction scorecard", "",
             "Every claim the chapters test, generated from their results files (`<chapter>.json`). "
             "*Paper* is the number the paper reports, *ours* what this build measured, on the data and "
             "models named in each chapter.", ""]
    n = 0
    for chapter in chapters():
        path = results_dir / f"{chapter}.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        lines += [f"## [{chapter.replace('_', ' ').capitalize()}](chapters/{chapter}.ipynb)", "",
                  f"Preset `{doc['params'].get('preset')}`, commit `{doc['provenance']['git_commit'][:12]}`, "
                  f"{doc['provenance']['seconds']:.0f} s.", "",
                  "| claim | paper | ours | verdict | note |", "|---|---|---|---|---|"]
        for c in doc["claims"]:
            lines.append(f"| {_md(c['statement'])} | {_md(_fmt(c['paper']))} | {_md(_fmt(c['ours']))} | "
                         f"{icon[c['verdict']]} | {_md(c.get('note', ''))} |")
            n += 1
        lines.append("")
    if n == 0:
        lines += ["No results yet: run `functok book`.", ""]
    return "\n".join(lines)


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _md(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------
# Site


BOOK_SOURCES = ("_config.yml", "_toc.yml", "book/intro.md")


def build_site(root: Path = ROOT) -> Path:
    """Jupyter Book 1 from `root` (its book/chapters/ holds executed chapters), execution off, any
    warning fails the build; MathJax is served from the site. Returns root/_build/html."""
    root = Path(root)
    if root != ROOT:  # a separate book tree (tests, sweeps): same sources, its own chapters
        for name in BOOK_SOURCES:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, root / name)
    results_dir = root / "book" / "chapters"
    (root / "book" / "scorecard.md").write_text(scorecard_markdown(results_dir))
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
    return site


def build_book(preset: str = "embedded", run: bool = True, root: Path = ROOT) -> Path:
    """Every chapter on one preset (all validated before the first runs) into root/book/chapters,
    then the site into root/_build/html."""
    out = Path(root) / "book" / "chapters"
    cfgs = [resolve(c, preset, {"out_dir": str(out)}) for c in chapters()]
    if run:
        for cfg in cfgs:
            print(f"== functok run {cfg.chapter} --preset {preset}", flush=True)
            run_chapter(cfg)
    return build_site(root)
