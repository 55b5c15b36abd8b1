"""Freshness by content: a results file records hashes of what produced it, and it is up to date while
those hashes still match, whatever the git commit says (the commit stays in provenance as a record).

What a chapter run hashes (`inputs()`, called when its results file is written):
- `notebook`: the source notebook's cells (cell type and source; outputs and metadata do not count),
  named by FUNCTOK_NOTEBOOK, which functok.book.run sets for the kernel it starts;
- `modules`: every functok module the kernel had imported by then (each file's bytes);
- `data`: every file under data/ the kernel opened after `track_reads()` (presets, paper numbers, model
  facts, word lists; the artifact cache is keyed by its own inputs and not hashed here).
Parameters and package versions are compared beside these (functok.book.run.up_to_date).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from functok.core.cache import cache_dir
from functok.core.config import ROOT

NOTEBOOK_ENV = "FUNCTOK_NOTEBOOK"  # the source notebook a kernel runs (set by functok.book.run.run_chapter)
DATA = ROOT / "data"
PACKAGE = ROOT / "functok"
_READS: set[str] = set()
_TRACKING: list[bool] = []


def _on_open(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], (str, Path)):
        path = os.path.abspath(args[0])
        if path.startswith(str(DATA) + os.sep):
            _READS.add(path)


def track_reads() -> None:
    """From now on, remember every file under data/ this process opens (an audit hook: it sees every open,
    whichever library reads the file). Installed once per process."""
    if not _TRACKING:
        sys.addaudithook(_on_open)
        _TRACKING.append(True)


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def notebook_hash(path: Path) -> str:
    """The hash of a notebook's cells (type and source): running it again with other outputs stays fresh."""
    cells = json.loads(Path(path).read_text())["cells"]
    text = json.dumps([(c["cell_type"], "".join(c["source"])) for c in cells])
    return hashlib.sha256(text.encode()).hexdigest()


def _rel(path: Path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def loaded_modules() -> list[Path]:
    """The files of every functok module this process has imported."""
    files = {getattr(m, "__file__", None) for name, m in list(sys.modules.items()) if name.split(".")[0] == "functok"}
    return sorted(Path(f) for f in files if f and Path(f).is_relative_to(PACKAGE))


def data_reads() -> list[Path]:
    """The files under data/ opened since `track_reads()`, the artifact cache left out."""
    cache = str(cache_dir().resolve())
    return sorted(Path(p) for p in _READS if not p.startswith(cache) and Path(p).is_file())


def inputs() -> dict[str, dict[str, str]]:
    """{"notebook": {path: hash}, "modules": {path: hash}, "data": {path: hash}} of this process now."""
    notebook = os.environ.get(NOTEBOOK_ENV)
    return {
        "notebook": {_rel(Path(notebook)): notebook_hash(Path(notebook))} if notebook else {},
        "modules": {_rel(p): file_hash(p) for p in loaded_modules()},
        "data": {_rel(p): file_hash(p) for p in data_reads()},
    }


def changed(recorded: dict) -> list[str]:
    """The recorded inputs whose content differs now (or that are gone); [] when all still match. A record
    without a notebook hash (a notebook run by hand in Jupyter) is never up to date."""
    if not isinstance(recorded, dict) or not recorded.get("notebook") or not recorded.get("modules"):
        return ["(no record of the inputs)"]
    out = []
    for kind in ("notebook", "modules", "data"):
        for rel, digest in (recorded.get(kind) or {}).items():
            path = ROOT / rel
            try:
                now = notebook_hash(path) if kind == "notebook" else file_hash(path)
            except (OSError, ValueError, KeyError):
                now = None
            if now != digest:
                out.append(rel)
    return out
