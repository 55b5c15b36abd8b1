"""The artifact cache: one builder per key across real processes, entries checked against their
manifest on every hit, entries from before manifests adopted, dead builders' leftovers removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from functok.core import cache
from functok.core.config import ROOT, ParamError

RACE_SCRIPT = """
import os, sys, time
from pathlib import Path
from functok.core.cache import cached_dir

d, me = Path(sys.argv[1]), sys.argv[2]
(d / f"ready-{me}").touch()
while not (d / "go").exists():
    time.sleep(0.005)

def build(tmp):
    with open(d / "calls", "a") as f:
        f.write(f"{me}\\n")
    time.sleep(0.3)
    (tmp / "data.bin").write_bytes(b"x" * 4096)
    (tmp / "sub").mkdir()
    (tmp / "sub" / "a.txt").write_text("hello")

out = cached_dir("race", {"n": 1}, build)
assert (out / "data.bin").read_bytes() == b"x" * 4096 and (out / "sub" / "a.txt").read_text() == "hello"
print(out)
"""


def test_one_builder_per_key_across_processes(tmp_cache, tmp_path):
    """16 processes ask for the same new entry at the same moment: all get it, the builder runs once."""
    n = 16
    d = tmp_path / "race"
    d.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FUNCTOK_CACHE": str(tmp_cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, str(d), str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for i in range(n)
    ]
    deadline = time.time() + 120
    while len(list(d.glob("ready-*"))) < n and time.time() < deadline:
        time.sleep(0.02)
    (d / "go").touch()  # every process is waiting: release them together
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    failed = [err.decode()[-500:] for rc, out, err in results if rc != 0]
    assert not failed, f"{len(failed)} of {n} failed; first: {failed[0]}"
    assert len({out.decode().strip() for rc, out, err in results}) == 1
    assert len((d / "calls").read_text().split()) == 1  # the builder ran exactly once
    entry = cache.cache_path("race", {"n": 1})
    assert json.loads((entry / "params.json").read_text()) == {"n": 1}
    manifest = json.loads((entry / "manifest.json").read_text())["files"]
    assert {k: v["size"] for k, v in manifest.items()} == {"data.bin": 4096, "sub/a.txt": 5}
    assert not list(entry.parent.glob(".*.tmp-*"))


def _entry(calls: list) -> Path:
    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "big.bin").write_bytes(b"\1" * 4096)
        (tmp / "small.json").write_text('{"a": 1}')

    return cache.cached_dir("things", {"k": 1}, build)


def test_a_truncated_or_deleted_file_is_one_line_naming_folder_and_file(tmp_cache):
    calls: list = []
    entry = _entry(calls)
    assert _entry(calls) == entry and len(calls) == 1  # a hit: checked, not rebuilt
    with open(entry / "sub" / "big.bin", "r+b") as f:
        f.truncate(120)
    with pytest.raises(ParamError) as e:
        _entry(calls)
    msg = str(e.value)
    assert isinstance(e.value, cache.CacheError) and "\n" not in msg
    assert msg == (
        f"cache: {cache.relpath(entry)} is damaged (sub/big.bin: 120 bytes, expected 4,096); "
        "delete the folder to rebuild it"
    )
    assert entry.is_dir() and len(calls) == 1  # nothing deletes a complete entry
    (entry / "sub" / "big.bin").write_bytes(b"\1" * 4096)
    (entry / "small.json").unlink()
    with pytest.raises(cache.CacheError, match=r"^cache: .*things/[0-9a-f]{12} is damaged \(small.json: missing\); "):
        _entry(calls)
    # a same-size change is caught by the hashes the manifest holds for small files
    (entry / "small.json").write_text('{"a": 2}')
    assert _entry(calls) == entry
    with pytest.raises(cache.CacheError, match=r"small.json: sha256 differs"):
        cache.verify(entry, hashes=True)


def test_an_entry_from_before_manifests_is_adopted_not_rebuilt(tmp_cache):
    entry = cache.cache_path("things", {"k": 2})
    (entry / "sub").mkdir(parents=True)
    (entry / "sub" / "data.bin").write_bytes(b"\0" * 300)
    (entry / "params.json").write_text(json.dumps({"k": 2}))
    calls = []
    assert cache.cached_dir("things", {"k": 2}, calls.append) == entry
    assert calls == []
    files = json.loads((entry / "manifest.json").read_text())["files"]
    assert files == {"sub/data.bin": {"size": 300, "sha256": cache.sha256(entry / "sub" / "data.bin")}}
    (entry / "sub" / "data.bin").write_bytes(b"\0" * 200)  # from now on it is checked
    with pytest.raises(cache.CacheError, match=r"\(sub/data.bin: 200 bytes, expected 300\)"):
        cache.cached_dir("things", {"k": 2}, calls.append)


def test_a_dead_builders_leftovers_are_removed_by_the_next_build(tmp_cache):
    key = cache.key_of({"k": 3})
    kind = tmp_cache / "things"
    dead = kind / f".{key}.tmp-dead1234"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "half.bin").write_bytes(b"\0" * 10)
    other = kind / ".0123456789ab.tmp-alive"  # another key's builder: not ours to remove
    other.mkdir()
    incomplete = kind / key  # a folder at the entry's place without params.json
    incomplete.mkdir()
    (incomplete / "junk").write_text("x")

    entry = cache.cached_dir("things", {"k": 3}, lambda tmp: (tmp / "out.txt").write_text("done"))
    assert entry == incomplete and (entry / "out.txt").read_text() == "done" and not (entry / "junk").exists()
    assert not dead.exists() and other.exists()
    assert (kind / f".{key}.lock").exists()


def test_keys_name_cache_paths_the_same_wherever_the_cache_is(tmp_path, monkeypatch):
    """A cache shared by checkouts in other folders: an entry's path in another's parameters gives one key."""

    def key(cache_root: Path) -> str:
        monkeypatch.setenv("FUNCTOK_CACHE", str(cache_root))
        return cache.key_of({"sae": cache.relpath(cache_root / "saes" / "abc"), "n": 3})

    default = ROOT / "data" / "cache"
    want = key(default)
    assert cache.relpath(default / "saes" / "abc") == "data/cache/saes/abc"
    assert key(tmp_path / "shared") == key(tmp_path / "elsewhere" / "cache") == want
    monkeypatch.setenv("FUNCTOK_CACHE", str(tmp_path / "shared"))
    other = cache.key_of({"sae": str(tmp_path / "shared2" / "saes" / "abc"), "n": 3})  # not in the cache
    assert other != want
