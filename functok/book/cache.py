"""Artifacts built once and cached under a key of every parameter that shapes them.

`cached_dir(kind, params, build)` returns `data/cache/<kind>/<key>/`; `build(tmp)` fills a temporary
folder that is renamed into place only when complete, so a killed build is never taken for a
finished one. The parameters are stored beside the artifact in `params.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from functok.book.config import ROOT


def cache_dir() -> Path:
    """Where artifacts are cached: FUNCTOK_CACHE (read at every call, so tests, sweeps and kernels
    started with another value each get theirs), else data/cache/ of the checkout."""
    return Path(os.environ.get("FUNCTOK_CACHE") or ROOT / "data" / "cache")


def key_of(params: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cache_path(kind: str, params: dict[str, Any]) -> Path:
    return cache_dir() / kind / key_of(params)


def cached_dir(kind: str, params: dict[str, Any], build: Callable[[Path], None]) -> Path:
    final = cache_path(kind, params)
    if (final / "params.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        build(tmp)
        write_json_atomic(tmp / "params.json", params)
        if final.exists():  # a stale, incomplete folder (no params.json)
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=str)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def relpath(p: str | Path) -> str:
    """Paths inside the repo are recorded relative to it; others stay absolute."""
    p = Path(p).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)
