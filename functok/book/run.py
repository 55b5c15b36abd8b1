"""Running one chapter with papermill.

A chapter runs as `chapters/<NN>_<chapter>.ipynb` -> `<out>/<chapter>.ipynb` (+ the notebook writes
`<out>/<chapter>.json`). The executed notebook is written to a temporary name and renamed only when
the run succeeded; a failed run leaves its notebook under `_build/failed/` for inspection.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from functok.book.cache import relpath
from functok.book.config import CHAPTERS_DIR, ROOT, ChapterConfig
from functok.book.registry import chapter


def chapter_source(name: str) -> Path:
    """The chapter's source notebook, as its registry entry names it."""
    path = CHAPTERS_DIR / chapter(name).notebook
    if not path.exists():
        raise FileNotFoundError(f"no notebook {path.relative_to(ROOT)} (named by the registry entry of '{name}')")
    return path


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
        pm.execute_notebook(
            str(chapter_source(cfg.chapter)),
            str(tmp),
            parameters=params,
            kernel_name="python3",
            log_output=True,
            progress_bar=False,
            cwd=str(ROOT),
        )
    except Exception:
        failed = ROOT / "_build" / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            os.replace(tmp, failed / final.name)
            print(
                f"functok: chapter {cfg.chapter} failed; executed notebook kept at {failed / final.name}",
                file=sys.stderr,
            )
        raise
    os.replace(tmp, final)
    return final
