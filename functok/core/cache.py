"""Artifacts built once and cached under a key of every parameter that shapes them.

`cached_dir(kind, params, build)` returns `data/cache/<kind>/<key>/` (FUNCTOK_CACHE moves data/cache).
The rules:

- One builder per key. A builder takes the lock file `<cache>/<kind>/.<key>.lock` (`filelock`, an
  flock that holds across processes and across machines sharing the cache on a file system with
  locks; where flock is missing filelock falls back to a lock file), looks again whether the entry is
  complete (listing the folders, so that NFS shows what another machine built), removes the temporary
  folders `.<key>.tmp-*` that dead builders of that key left behind, builds into a fresh temporary
  folder and renames it into place. Other callers wait on the lock and then find the entry complete.
  Nothing deletes a complete entry; an incomplete folder at the entry's place (no params.json) is
  replaced under the lock.
- Complete means checked. `manifest.json` lists every file of the entry with its size (and its sha256
  when under 8 MiB); it is written before `params.json`, which marks the entry complete. Every hit
  checks that each listed file is there with its size (`verify(folder, hashes=True)` also checks the
  hashes); a missing or resized file raises `CacheError`, one line naming the folder and the file.
  Files added to an entry later (a library's own cache files) are not checked.
- Adoption. An entry completed before manifests existed (params.json, no manifest.json) is taken as
  it is: its manifest is written on the first hit, without a rebuild (in a read-only cache it stays
  unchecked).

Keys never change with these rules: `key_of` hashes the parameters only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout

from functok.core.config import ROOT, ParamError

MANIFEST = "manifest.json"
HASH_MAX_BYTES = 8 * 2**20  # files up to this size get a sha256 in the manifest


class CacheError(ParamError):
    """A damaged cache entry or run folder: one line naming the folder, the file and what to do."""


def cache_dir() -> Path:
    """Where artifacts are cached: FUNCTOK_CACHE (read at every call, so tests, sweeps and kernels
    started with another value each get theirs), else data/cache/ of the checkout."""
    return Path(os.environ.get("FUNCTOK_CACHE") or ROOT / "data" / "cache")


def key_of(params: dict[str, Any]) -> str:
    """12 hex digits of the parameters' sha1. Paths into the cache (other entries) count as
    data/cache/..., wherever FUNCTOK_CACHE puts it, so checkouts in other folders that share one cache
    (a cluster's) find each other's entries."""
    text = json.dumps(params, sort_keys=True, default=str)
    here = relpath(cache_dir())
    if here != "data/cache":
        text = text.replace(json.dumps(here + "/")[1:-1], "data/cache/")
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def cache_path(kind: str, params: dict[str, Any]) -> Path:
    return cache_dir() / kind / key_of(params)


def cached_dir(kind: str, params: dict[str, Any], build: Callable[[Path], None]) -> Path:
    final = cache_path(kind, params)
    if (final / "params.json").exists():
        return checked(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(final.parent / f".{final.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"cache: waiting for another process building {relpath(final)}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        if complete(final):  # built by the process we waited for (maybe on another machine)
            return checked(final)
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by a dead builder: we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            build(tmp)
            write_json_atomic(tmp / MANIFEST, manifest_of(tmp))
            write_json_atomic(tmp / "params.json", params)  # last: the entry is complete
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a shared cache is read by others
            if final.exists():  # an incomplete folder (no params.json), never a complete one
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock.release()
    return final


def cached_json(kind: str, params: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """compute(), kept as `<kind>/<key>/result.json` (built like any entry: locked, atomic)."""

    def build(tmp: Path) -> None:
        write_json_atomic(tmp / "result.json", compute())

    return json.loads((cached_dir(kind, params, build) / "result.json").read_text())


def complete(final: Path) -> bool:
    """The entry has its params.json. Read by listing the folders: on NFS, opening a folder revalidates the
    client's cached view of it (close-to-open), so an entry another machine completed while we waited for
    the lock is seen, not rebuilt over."""
    try:
        return final.name in os.listdir(final.parent) and "params.json" in os.listdir(final)
    except (FileNotFoundError, NotADirectoryError):
        return False


def manifest_of(folder: Path) -> dict:
    """{"files": {relative path: {"size", "sha256" (files up to HASH_MAX_BYTES)}}} of every file in
    `folder` but params.json and the manifest itself."""
    folder = Path(folder)
    files = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if rel in ("params.json", MANIFEST) or (name.startswith(".") and ".tmp-" in name):
                continue  # the markers, and files half-written by write_json_atomic (never part of an entry)
            size = p.stat().st_size
            files[rel] = {"size": size, **({"sha256": sha256(p)} if size <= HASH_MAX_BYTES else {})}
    return {"version": 1, "files": files}


def sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(folder: str | Path, hashes: bool = False) -> None:
    """Raise CacheError unless every file of the folder's manifest is there with its size (and, with
    `hashes`, its sha256)."""
    folder = Path(folder)

    def damaged(what: str) -> CacheError:
        return CacheError(f"cache: {relpath(folder)} is damaged ({what}); delete the folder to rebuild it")

    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise damaged(f"{MANIFEST}: unreadable, {type(e).__name__}") from None
    for rel, want in files.items():
        p = folder / rel
        try:
            size = p.stat().st_size
        except OSError:
            raise damaged(f"{rel}: missing") from None
        if size != want["size"]:
            raise damaged(f"{rel}: {size:,} bytes, expected {want['size']:,}")
        if hashes and "sha256" in want and sha256(p) != want["sha256"]:
            raise damaged(f"{rel}: sha256 differs from the manifest")


def checked(folder: Path) -> Path:
    """A complete entry, verified against its manifest; an entry without one is adopted (see above)."""
    if not (folder / MANIFEST).exists():
        try:
            write_json_atomic(folder / MANIFEST, manifest_of(folder))
        except OSError:  # a read-only cache: the entry stays as it is, unchecked
            return folder
    verify(folder)
    return folder


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
